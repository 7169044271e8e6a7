"""EC2 Instance State-change Notification: pending, running, stopping, stopped, shutting-down, terminated."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.events.parsing import INSTANCE_ID, parse_eventbridge

SOURCE = "aws.ec2"
DETAIL_TYPE = "EC2 Instance State-change Notification"
State = Literal["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]
KIND_BY_STATE: dict[str, EventKind] = {
    "pending": EventKind.INSTANCE_PENDING,
    "running": EventKind.INSTANCE_RUNNING,
    "stopping": EventKind.INSTANCE_STOPPING,
    "stopped": EventKind.INSTANCE_STOPPED,
    "shutting-down": EventKind.INSTANCE_SHUTTING_DOWN,
    "terminated": EventKind.INSTANCE_TERMINATED,
}


class StateChangeDetail(BaseModel):
    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID)
    state: State


class StateChangeEvent(EventBridgeModel):
    detail: StateChangeDetail


def normalise(event: Any) -> InterruptionEvent:
    parsed = parse_eventbridge(event, StateChangeEvent, SOURCE, DETAIL_TYPE)
    return InterruptionEvent(
        kind=KIND_BY_STATE[parsed.detail.state],
        event_id=parsed.id,
        instance_id=parsed.detail.instance_id,
        region=parsed.region,
        account=parsed.account,
        time=parsed.time,
        detail=parsed.detail.state,
    )
