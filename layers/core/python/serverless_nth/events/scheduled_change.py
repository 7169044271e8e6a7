"""AWS Health scheduled change for EC2: maintenance or retirement of one or more instances, at a
window whose start the event gives (usually about two weeks ahead). One event can name several
instances in ``affectedEntities``; each becomes its own InterruptionEvent and its own unit of work.

    {"version": "0", "id": "...", "detail-type": "AWS Health Event", "source": "aws.health",
     "account": "123456789012", "time": "2026-11-27T10:00:00Z", "region": "us-east-1",
     "resources": ["i-0123456789abcdef0"],
     "detail": {"eventArn": "arn:aws:health:us-east-1::event/EC2/...", "service": "EC2",
                "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
                "eventTypeCategory": "scheduledChange", "eventScopeCode": "ACCOUNT_SPECIFIC",
                "statusCode": "upcoming",
                "communicationId": "...-1", "startTime": "Fri, 11 Dec 2026 06:00:00 GMT",
                "endTime": "Fri, 11 Dec 2026 08:00:00 GMT", "eventRegion": "us-east-1",
                "eventDescription": [{"language": "en_US", "latestDescription": "..."}],
                "affectedEntities": [{"entityValue": "i-0123456789abcdef0"}]}}

(docs.aws.amazon.com/health/latest/ug/aws-health-events-eventbridge-schema.html; the same shape in
aws-node-termination-handler's pkg/monitor/sqsevent/scheduled-change-event.go, which also checks
service and category and takes ``affectedEntities[].entityValue``; Karpenter's
pkg/controllers/interruption/messages/scheduledchange reads the same fields.) Health writes
``startTime`` as an RFC 1123 date; an RFC 3339 one is accepted too, no later than
MAX_START_AHEAD after the event. Entities that are not instances (a Dedicated Host ``h-...``, an
entity without a value) are not this product's business: they are left out, one by one, and told
(``HealthChange.left_out``), never a reason to drop the instances the event does name.

Health sends the same ``eventArn`` again as ``statusCode`` moves from ``upcoming`` to ``open`` to
``closed`` and when the window moves (``HealthRef``; what each status does is the policy's and the
drain lease's). ``startTime``, ``eventTypeCode`` and ``statusCode`` may be missing (Karpenter's
fixtures have no ``startTime``): read the safe way, a gentle drain at once, never malformed.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, HealthRef, InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import INSTANCE_ID, RFC3339, parse_eventbridge, rfc3339_time

SOURCE = "aws.health"
DETAIL_TYPE = "AWS Health Event"
_INSTANCE = re.compile(INSTANCE_ID.strip("^$"), re.ASCII)
_RFC3339 = re.compile(RFC3339.strip("^$"), re.ASCII)
# Health pages an event whose entities exceed EventBridge's 256 KB; a page holds far fewer
MAX_ENTITIES = 10_000
# Health announces scheduled changes about two weeks ahead. A window further than this from the
# event could not be waited for inside the function's ExecutionTimeout (35 days, template.yaml),
# with room for the drain and a replay: it is not a date this product can act on.
MAX_START_AHEAD = datetime.timedelta(days=30)


class ScheduledChangeDetail(BaseModel):
    service: Literal["EC2"]
    category: Literal["scheduledChange"] = Field(alias="eventTypeCategory")
    # optional, as Karpenter's fixtures have neither: a missing field is read the safe way (no
    # start time: drain gently now; no status: open), never a reason to drop the event
    type_code: str = Field("", alias="eventTypeCode", pattern=r"^[A-Z0-9_]{0,100}$")
    start_time: str | None = Field(None, alias="startTime", min_length=1, max_length=64)
    status: Literal["upcoming", "open", "closed"] | None = Field(None, alias="statusCode")
    event_arn: str = Field("", alias="eventArn", pattern=r"^arn:[-a-z]+:health:[-a-z0-9]*::event/\S{1,1500}$|^$")
    # read one by one: an odd entity is left out and told, not a reason to drop the event
    affected_entities: list[Any] = Field(alias="affectedEntities", max_length=MAX_ENTITIES)


class ScheduledChangeEvent(EventBridgeModel):
    detail: ScheduledChangeDetail


@dataclass(frozen=True)
class HealthChange:
    events: list[InterruptionEvent]  # one per instance named, in the event's order, without repeats
    left_out: list[str]  # the other entities, as they were sent (shortened)


def start_time(text: str) -> datetime.datetime:
    """Health's RFC 1123 date (``Fri, 11 Dec 2026 06:00:00 GMT``) or an RFC 3339 one, in UTC."""
    if _RFC3339.fullmatch(text):
        return rfc3339_time(text, f"{DETAIL_TYPE}: startTime").astimezone(datetime.UTC)
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        raise MalformedEvent(f"invalid {DETAIL_TYPE}: startTime {text[:64]!r} is not a date") from None
    if parsed.tzinfo is None:
        raise MalformedEvent(f"invalid {DETAIL_TYPE}: startTime {text[:64]!r} has no time zone")
    return parsed.astimezone(datetime.UTC)


def normalise(event: Any) -> HealthChange:
    """One InterruptionEvent per instance the event names, and the entities left out."""
    parsed = parse_eventbridge(event, ScheduledChangeEvent, SOURCE, DETAIL_TYPE)
    detail = parsed.detail
    starts = start_time(detail.start_time) if detail.start_time is not None else None
    if starts is not None and starts > parsed.time + MAX_START_AHEAD:
        raise MalformedEvent(
            f"invalid {DETAIL_TYPE}: startTime {starts.isoformat()} is more than {MAX_START_AHEAD.days} days "
            "after the event"
        )
    instances: dict[str, None] = {}
    left_out: list[str] = []
    health = HealthRef(detail.event_arn, detail.status or "", detail.type_code)
    for entity in detail.affected_entities:
        value = entity.get("entityValue") if isinstance(entity, dict) else None
        if isinstance(value, str) and _INSTANCE.fullmatch(value):
            instances[value] = None
        else:
            left_out.append(json.dumps(entity)[:100])
    events = [
        InterruptionEvent(
            kind=EventKind.SCHEDULED_CHANGE,
            event_id=parsed.id,
            instance_id=instance_id,
            region=parsed.region,
            account=parsed.account,
            time=parsed.time,
            detail=detail.type_code,
            ends_at=starts,
            health=health,
        )
        for instance_id in instances
    ]
    return HealthChange(events, left_out)
