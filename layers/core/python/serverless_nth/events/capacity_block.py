"""EC2 Capacity Block expiration warning: 40 minutes before a Capacity Block reservation ends, EC2
says "that any instances running in the reservation will begin to terminate in 10 minutes". The
event names the reservation, not its instances: the durable workflow lists them with
DescribeInstances (filter ``capacity-reservation-id``) and makes each its own InterruptionEvent.

    {"version": "0", "id": "...", "detail-type": "Capacity Block Expiration Warning",
     "source": "aws.ec2", "account": "123456789012", "time": "2026-12-03T10:50:00Z",
     "region": "us-east-1",
     "resources": ["arn:aws:ec2:us-east-1:123456789012:capacity-reservation/cr-0123456789abcdef0"],
     "detail": {"capacity-reservation-id": "cr-0123456789abcdef0", "end-date": "2026-12-03T11:30:00Z"}}

(docs.aws.amazon.com/AWSEC2/latest/UserGuide/capacity-blocks-monitor.html: its example shows the
fields as placeholders, ``[ODCR ARN]``, ``[ODCR ID]``, ``[ODCR End Date]``.) The detail-type is
spelled two ways in AWS's own pages: "Capacity Block Expiration Warning" (the English user guide
at docs.aws.amazon.com in one copy, and the EventBridge events reference's list of EC2 events)
and "Capacity Block Reservation Expiration Warning" (other copies of the same page, e.g. the
docs.amazonaws.cn one). No primary source says which one EC2 sends, so both are accepted, by
the rule and here; nothing else about the two differs.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import RFC3339, parse_eventbridge

SOURCE = "aws.ec2"
DETAIL_TYPES = ("Capacity Block Expiration Warning", "Capacity Block Reservation Expiration Warning")
RESERVATION_ID = r"^cr-[0-9a-f]{8}([0-9a-f]{9})?$"
_ARN = re.compile(r"arn:aws[a-z-]*:ec2:([a-z0-9-]+):([0-9]{12}):capacity-reservation/(cr-[0-9a-f]+)", re.ASCII)
# The warning comes 40 minutes before the end; an end further ahead than this is not that warning.
MAX_LEAD = datetime.timedelta(days=1)


class CapacityBlockDetail(BaseModel):
    reservation_id: str = Field(alias="capacity-reservation-id", pattern=RESERVATION_ID)
    end_date: str = Field(alias="end-date", pattern=RFC3339)


class CapacityBlockEvent(EventBridgeModel):
    detail: CapacityBlockDetail


@dataclass(frozen=True)
class CapacityBlockExpiry:
    """The reservation-scoped warning; ``instance`` makes the unit of work of one instance."""

    event_id: str
    region: str
    account: str
    time: datetime.datetime
    reservation_id: str
    end_date: datetime.datetime

    def instance(self, instance_id: str) -> InterruptionEvent:
        return InterruptionEvent(
            kind=EventKind.CAPACITY_BLOCK_EXPIRY,
            event_id=self.event_id,
            instance_id=instance_id,
            region=self.region,
            account=self.account,
            time=self.time,
            detail=self.reservation_id,
            ends_at=self.end_date,
        )


def parse(event: Any) -> CapacityBlockExpiry:
    detail_type = event.get("detail-type") if isinstance(event, dict) else None
    expected = detail_type if detail_type in DETAIL_TYPES else DETAIL_TYPES[0]
    parsed = parse_eventbridge(event, CapacityBlockEvent, SOURCE, str(expected))
    reservation = parsed.detail.reservation_id
    for resource in parsed.resources:
        named = _ARN.fullmatch(resource)
        if named and named.groups() != (parsed.region, parsed.account, reservation):
            raise MalformedEvent(f"invalid {expected}: resource {resource[:120]!r} is not {reservation}")
    end = datetime.datetime.fromisoformat(parsed.detail.end_date.replace("Z", "+00:00")).astimezone(datetime.UTC)
    if not parsed.time < end <= parsed.time + MAX_LEAD:
        raise MalformedEvent(f"invalid {expected}: end-date {end.isoformat()} is not within a day after the event")
    return CapacityBlockExpiry(parsed.id, parsed.region, parsed.account, parsed.time, reservation, end)


def normalise(event: Any) -> CapacityBlockExpiry:
    """What the long-drain starter checks before it starts anything (the same parser)."""
    return parse(event)
