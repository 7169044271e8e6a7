"""EC2 Capacity Reservation Instance Interruption Warning: an instance in an interruptible Capacity
Reservation is terminated at ``instance-termination-time`` (two minutes after the notice, AWS says),
when the reservation's owner reclaims the capacity.

    {"version": "0", "id": "...", "detail-type": "EC2 Capacity Reservation Instance Interruption Warning",
     "source": "aws.ec2", "account": "123456789012", "time": "2026-11-25T10:00:00Z",
     "region": "us-east-1", "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-..."],
     "detail": {"instance-id": "i-...", "instance-action": "terminate",
                "instance-termination-time": "2026-11-25T10:02:00Z", "azId": "use1-az4"}}

(docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitor-interruptible-cr.html)
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import INSTANCE_ID, RFC3339, parse_eventbridge, rfc3339_time

SOURCE = "aws.ec2"
DETAIL_TYPE = "EC2 Capacity Reservation Instance Interruption Warning"


class CapacityReservationDetail(BaseModel):
    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID)
    instance_action: Literal["terminate"] = Field(alias="instance-action")
    termination_time: str = Field(alias="instance-termination-time", pattern=RFC3339)


class CapacityReservationEvent(EventBridgeModel):
    detail: CapacityReservationDetail


def normalise(event: Any) -> InterruptionEvent:
    parsed = parse_eventbridge(event, CapacityReservationEvent, SOURCE, DETAIL_TYPE)
    ends_at = rfc3339_time(parsed.detail.termination_time, f"{DETAIL_TYPE}: instance-termination-time")
    if ends_at < parsed.time:
        raise MalformedEvent(f"invalid {DETAIL_TYPE}: instance-termination-time is before the event's time")
    return InterruptionEvent(
        kind=EventKind.CAPACITY_RESERVATION_INTERRUPTION,
        event_id=parsed.id,
        instance_id=parsed.detail.instance_id,
        region=parsed.region,
        account=parsed.account,
        time=parsed.time,
        detail=parsed.detail.instance_action,
        ends_at=ends_at,
    )
