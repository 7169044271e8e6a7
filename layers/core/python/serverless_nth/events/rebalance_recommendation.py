"""EC2 Instance Rebalance Recommendation: a Spot instance is at elevated risk; not certain to go."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.events.parsing import INSTANCE_ID, parse_eventbridge

SOURCE = "aws.ec2"
DETAIL_TYPE = "EC2 Instance Rebalance Recommendation"


class RebalanceDetail(BaseModel):
    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID)


class RebalanceRecommendationEvent(EventBridgeModel):
    detail: RebalanceDetail


def normalise(event: Any) -> InterruptionEvent:
    parsed = parse_eventbridge(event, RebalanceRecommendationEvent, SOURCE, DETAIL_TYPE)
    return InterruptionEvent(
        kind=EventKind.REBALANCE_RECOMMENDATION,
        event_id=parsed.id,
        instance_id=parsed.detail.instance_id,
        region=parsed.region,
        account=parsed.account,
        time=parsed.time,
    )
