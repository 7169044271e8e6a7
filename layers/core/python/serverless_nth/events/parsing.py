"""Shared parsing: Powertools' EventBridge model, with the detail checked per event type."""

from __future__ import annotations

from typing import Any, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import ValidationError

from serverless_nth.events.model import MalformedEvent

M = TypeVar("M", bound=EventBridgeModel)
INSTANCE_ID = r"^i-[0-9a-f]{8}([0-9a-f]{9})?$"


def parse_eventbridge(event: Any, model: type[M], source: str, detail_type: str) -> M:
    """Validates ``event`` as ``model``; any mismatch is a MalformedEvent with a readable reason."""
    if not isinstance(event, dict):
        raise MalformedEvent(f"event is a {type(event).__name__}, not an EventBridge object")
    if event.get("source") != source or event.get("detail-type") != detail_type:
        raise MalformedEvent(
            f"expected {source} / {detail_type!r}, got {event.get('source')!r} / {event.get('detail-type')!r}"
        )
    try:
        parsed: M = parse(event=event, model=model)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise MalformedEvent(f"invalid {detail_type}: {fields}") from None
    if parsed.time.tzinfo is None:
        raise MalformedEvent("event time has no timezone")
    return parsed
