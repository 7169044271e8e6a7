"""EC2 Spot Instance Interruption Warning: the instance goes away two minutes after ``time``."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.events.parsing import INSTANCE_ID, parse_eventbridge

SOURCE = "aws.ec2"
DETAIL_TYPE = "EC2 Spot Instance Interruption Warning"


class SpotInterruptionDetail(BaseModel):
    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID)
    instance_action: Literal["terminate", "stop", "hibernate"] = Field(alias="instance-action")


class SpotInterruptionEvent(EventBridgeModel):
    detail: SpotInterruptionDetail


def normalise(event: Any) -> InterruptionEvent:
    parsed = parse_eventbridge(event, SpotInterruptionEvent, SOURCE, DETAIL_TYPE)
    return InterruptionEvent(
        kind=EventKind.SPOT_INTERRUPTION,
        event_id=parsed.id,
        instance_id=parsed.detail.instance_id,
        region=parsed.region,
        account=parsed.account,
        time=parsed.time,
        detail=parsed.detail.instance_action,
    )
