"""Shared parsing: EventBridge's envelope checked exactly, then Powertools' EventBridge model with
the detail checked per event type.

EventBridge writes the envelope itself, so it is exact: ``id`` a non-empty identifier, ``account``
12 digits, ``region`` a region name, ``time`` an RFC 3339 string in UTC. Pydantic's lax mode would
read a JSON number as a Unix time (``"time": 0`` is 1970) and take any year from 1 to 9999; such an
event did not come from EventBridge, so it is a MalformedEvent, never an action.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import ValidationError

from serverless_nth.events.model import InterruptionEvent, MalformedEvent

M = TypeVar("M", bound=EventBridgeModel)
INSTANCE_ID = r"^i-[0-9a-f]{8}([0-9a-f]{9})?$"
# Whole-string matches of ASCII only: `$` alone would also match before a final newline, and `\d`
# would match any script's digits; EventBridge sends neither.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}", re.ASCII)
_ACCOUNT = re.compile(r"[0-9]{12}", re.ASCII)
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}", re.ASCII)
# also a pydantic pattern (Rust regex, anchored there by ^ and $, which match only at the ends)
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
_TIME = re.compile(RFC3339.strip("^$"), re.ASCII)
# How old an event may be: the on-failure queue keeps a message 14 days, and an operator may
# replay it at the end of that; a day more for the replay itself. Older is not a replay.
MAX_EVENT_AGE = datetime.timedelta(days=15)
# How far ahead of this function's clock an event may be stamped: EventBridge stamps events when
# they happen, so more than clock skew means the event was not made by EventBridge.
MAX_EVENT_LEAD = datetime.timedelta(minutes=5)


def parse_eventbridge(event: Any, model: type[M], source: str, detail_type: str) -> M:
    """Validates ``event`` as ``model``; any mismatch is a MalformedEvent with a readable reason."""
    if not isinstance(event, dict):
        raise MalformedEvent(f"event is a {type(event).__name__}, not an EventBridge object")
    if event.get("source") != source or event.get("detail-type") != detail_type:
        raise MalformedEvent(
            f"expected {source} / {detail_type!r}, got {event.get('source')!r} / {event.get('detail-type')!r}"
        )
    for key, pattern in (("id", _ID), ("account", _ACCOUNT), ("region", _REGION), ("time", _TIME)):
        value = event.get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise MalformedEvent(f"invalid {detail_type}: {key} {str(value)[:80]!r} is not what EventBridge sends")
    try:
        parsed: M = parse(event=event, model=model)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise MalformedEvent(f"invalid {detail_type}: {fields}") from None
    if parsed.time.tzinfo is None:
        raise MalformedEvent("event time has no timezone")
    return parsed


def rfc3339_time(text: str, what: str) -> datetime.datetime:
    """``text``, already matched against RFC3339, as an aware time. A date of that shape that is no
    date (``2026-02-30T00:00:00Z``, hour 24) is a MalformedEvent, not a ValueError that escapes."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedEvent(f"invalid {what}: {text[:64]!r} is not a date") from None


def check_event_time(event: InterruptionEvent, now: datetime.datetime) -> None:
    """An event older than MAX_EVENT_AGE or stamped more than MAX_EVENT_LEAD ahead is rejected."""
    if event.time < now - MAX_EVENT_AGE:
        raise MalformedEvent(f"event time {event.time.isoformat()} is older than {MAX_EVENT_AGE.days} days")
    if event.time > now + MAX_EVENT_LEAD:
        raise MalformedEvent(f"event time {event.time.isoformat()} is in the future")
