"""AWS Health scheduled change for EC2: maintenance or retirement of one or more instances, at a
window whose start the event gives (usually about two weeks ahead). One event can name several
instances in ``affectedEntities``; each becomes its own InterruptionEvent and its own unit of work.

    {"version": "0", "id": "...", "detail-type": "AWS Health Event", "source": "aws.health",
     "account": "123456789012", "time": "2026-11-27T10:00:00Z", "region": "us-east-1",
     "resources": ["i-0123456789abcdef0"],
     "detail": {"eventArn": "arn:aws:health:us-east-1::event/EC2/...", "service": "EC2",
                "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
                "eventTypeCategory": "scheduledChange", "eventScopeCode": "ACCOUNT_SPECIFIC",
                "communicationId": "...-1", "startTime": "Fri, 11 Dec 2026 06:00:00 GMT",
                "endTime": "Fri, 11 Dec 2026 08:00:00 GMT", "eventRegion": "us-east-1",
                "eventDescription": [{"language": "en_US", "latestDescription": "..."}],
                "affectedEntities": [{"entityValue": "i-0123456789abcdef0"}]}}

(docs.aws.amazon.com/health/latest/ug/aws-health-events-eventbridge-schema.html; the same shape in
aws-node-termination-handler's pkg/monitor/sqsevent/scheduled-change-event.go, which also checks
service and category and takes ``affectedEntities[].entityValue``; Karpenter's
pkg/controllers/interruption/messages/scheduledchange reads the same fields.) Health writes
``startTime`` as an RFC 1123 date; an RFC 3339 one is accepted too. Entities that are not
instances (a Dedicated Host ``h-...``) are not this product's business and are left out.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import INSTANCE_ID, RFC3339, parse_eventbridge

SOURCE = "aws.health"
DETAIL_TYPE = "AWS Health Event"
_INSTANCE = re.compile(INSTANCE_ID.strip("^$"), re.ASCII)
_RFC3339 = re.compile(RFC3339.strip("^$"), re.ASCII)
# Health pages an event whose entities exceed EventBridge's 256 KB; a page holds far fewer
MAX_ENTITIES = 10_000


class AffectedEntity(BaseModel):
    entity_value: str = Field(alias="entityValue", min_length=1, max_length=1600)


class ScheduledChangeDetail(BaseModel):
    service: Literal["EC2"]
    category: Literal["scheduledChange"] = Field(alias="eventTypeCategory")
    type_code: str = Field(alias="eventTypeCode", pattern=r"^[A-Z0-9_]{1,100}$")
    start_time: str = Field(alias="startTime", min_length=1, max_length=64)
    affected_entities: list[AffectedEntity] = Field(alias="affectedEntities", max_length=MAX_ENTITIES)


class ScheduledChangeEvent(EventBridgeModel):
    detail: ScheduledChangeDetail


def start_time(text: str) -> datetime.datetime:
    """Health's RFC 1123 date (``Fri, 11 Dec 2026 06:00:00 GMT``) or an RFC 3339 one, in UTC."""
    if _RFC3339.fullmatch(text):
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(datetime.UTC)
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        raise MalformedEvent(f"invalid {DETAIL_TYPE}: startTime {text[:64]!r} is not a date") from None
    if parsed.tzinfo is None:
        raise MalformedEvent(f"invalid {DETAIL_TYPE}: startTime {text[:64]!r} has no time zone")
    return parsed.astimezone(datetime.UTC)


def normalise(event: Any) -> list[InterruptionEvent]:
    """One InterruptionEvent per instance the event names, in the event's order, without repeats."""
    parsed = parse_eventbridge(event, ScheduledChangeEvent, SOURCE, DETAIL_TYPE)
    starts = start_time(parsed.detail.start_time)
    instances = dict.fromkeys(
        e.entity_value for e in parsed.detail.affected_entities if _INSTANCE.fullmatch(e.entity_value)
    )
    return [
        InterruptionEvent(
            kind=EventKind.SCHEDULED_CHANGE,
            event_id=parsed.id,
            instance_id=instance_id,
            region=parsed.region,
            account=parsed.account,
            time=parsed.time,
            detail=parsed.detail.type_code,
            ends_at=starts,
        )
        for instance_id in instances
    ]
