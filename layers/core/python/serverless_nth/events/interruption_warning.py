"""The interruption function's events: both EC2 warnings that an instance ends at a known time,
two minutes ahead (a Spot interruption, an interruptible Capacity Reservation reclaimed). One
function takes both: the same action, deadline rules, timeout and retry settings; the metrics keep
them apart by ``event_kind``."""

from __future__ import annotations

from typing import Any

from serverless_nth.events import capacity_reservation, spot_interruption
from serverless_nth.events.model import InterruptionEvent, MalformedEvent

_BY_DETAIL_TYPE = {
    spot_interruption.DETAIL_TYPE: spot_interruption.normalise,
    capacity_reservation.DETAIL_TYPE: capacity_reservation.normalise,
}


def normalise(event: Any) -> InterruptionEvent:
    detail_type = event.get("detail-type") if isinstance(event, dict) else None
    parse = _BY_DETAIL_TYPE.get(str(detail_type))
    if parse is None:
        expected = " or ".join(repr(t) for t in _BY_DETAIL_TYPE)
        raise MalformedEvent(f"expected aws.ec2 / {expected}, got {detail_type!r}")
    return parse(event)
