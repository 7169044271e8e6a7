"""The AWS Health scheduled change's workflow (a durable execution, ``durable.py``), over the steps
of ``long_drain.LongDrains``: every instance named cordoned at once, a durable wait until the lead
time before the window, then each node drained in rounds until it is empty or the window starts
(``long_drain_each.drain_each``, shared with the Capacity Block expiry)."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext

from serverless_nth.errors import TemporaryError
from serverless_nth.events import instance_status, scheduled_change
from serverless_nth.events.model import EventKind
from serverless_nth.long_drain import LongDrains
from serverless_nth.long_drain_each import drain_each
from serverless_nth.report import Outcome


def scheduled(drains: LongDrains, raw: Any, ctx: DurableContext, account: str | None) -> dict[str, Any]:
    """Every instance of the event cordoned at once, then drained from its lead time until the
    window starts. One instance's failure neither stops nor repeats the others; the execution
    fails at the end if any did, so that the event is kept for a replay (which is safe)."""
    # a Health event, or a scheduled event the instance-status backstop found (the starter's ROUTES)
    ours = isinstance(raw, dict) and raw.get("source") == instance_status.SOURCE
    parse = instance_status.normalise if ours else scheduled_change.normalise
    change, kind = parse(raw), EventKind.SCHEDULED_CHANGE
    events = change.events
    if change.left_out:
        drains.step(ctx, "left-out", kind, drains.tell_left_out, change.left_out)
    if not events:
        return {"outcomes": {}, "rounds": 0}
    if drains.step(ctx, "event-time", kind, drains.too_old, events[0], kind.value):
        return {"outcomes": {e.instance_id: Outcome.MALFORMED for e in events}, "rounds": 0}
    outcomes, rounds = drain_each(drains, ctx, kind, events, account, ScheduledChangeFailed)
    return {"outcomes": outcomes, "rounds": rounds}


class ScheduledChangeFailed(TemporaryError):
    """Some instances of a scheduled change could not be handled: the execution fails so that the
    event is kept (dead-letter queue) for a replay, which redoes nothing that was done."""
