"""The AWS Health scheduled change's workflow (a durable execution, ``durable.py``), over the steps
of ``long_drain.LongDrains``: every instance named cordoned at once, a durable wait until the lead
time before the window, then each node drained in rounds until it is empty or the window starts."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext, StepError
from aws_durable_execution_sdk_python.config import Duration

from serverless_nth.errors import TemporaryError
from serverless_nth.events import scheduled_change
from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.long_drain import PAUSE, LongDrains, lease_holder
from serverless_nth.policy import drain_starts_at
from serverless_nth.report import Outcome


def scheduled(drains: LongDrains, raw: Any, ctx: DurableContext, account: str | None) -> dict[str, Any]:
    """Every instance of the event cordoned at once, then drained from its lead time until the
    window starts. One instance's failure neither stops nor repeats the others; the execution
    fails at the end if any did, so that the event is kept for a replay (which is safe)."""
    change, kind = scheduled_change.normalise(raw), EventKind.SCHEDULED_CHANGE
    events = change.events
    if change.left_out:
        drains.step(ctx, "left-out", kind, drains.tell_left_out, change.left_out)
    if not events:
        return {"outcomes": {}, "rounds": 0}
    holder = lease_holder(ctx, events[0])  # one event id for all its instances
    if drains.step(ctx, "event-time", kind, drains.too_old, events[0], kind.value):
        return {"outcomes": {e.instance_id: Outcome.MALFORMED for e in events}, "rounds": 0}
    outcomes: dict[str, str] = {}
    draining: dict[str, tuple[InterruptionEvent, str]] = {}
    for event in events:
        try:
            prepared = drains.step(ctx, f"cordon-{event.instance_id}", kind, drains.prepare, event, holder, account)
        except StepError as exc:
            outcomes[event.instance_id] = f"{Outcome.ERROR}: {exc}"
            continue
        outcomes[event.instance_id] = prepared["outcome"]
        if prepared["drain_due"]:
            draining[event.instance_id] = (event, prepared["node"])
    if draining:
        first = next(iter(draining.values()))[0]
        wait = drains.step(ctx, "lead", kind, lambda: drains.seconds_until(drain_starts_at(first, drains.settings)))
        if wait >= 1:
            ctx.wait(Duration.from_seconds(wait), name="until-lead-time")
    last: dict[str, dict[str, Any]] = {}
    rounds = 0
    while draining:
        for instance_id, (event, node) in list(draining.items()):
            starts = event.ends_at.timestamp() if event.ends_at else 0.0
            try:
                last[instance_id] = drains.step(
                    ctx, f"drain-{instance_id}-{rounds}", kind, drains.drain_round, event, node, holder, None
                )
            except StepError as exc:
                outcomes[instance_id] = f"{Outcome.ERROR}: {exc}"
                del draining[instance_id]
                continue
            if last[instance_id]["completed"] or last[instance_id]["at"] >= starts:
                finished = {**last[instance_id], "rounds": rounds + 1}
                outcomes[instance_id] = drains.step(
                    ctx, f"drained-{instance_id}", kind, drains.finish, event, node, holder, finished
                )
                del draining[instance_id]
        rounds += 1
        if draining:
            ctx.wait(PAUSE, name=f"pause-{rounds}")
    failed = sorted(i for i, o in outcomes.items() if o.startswith(Outcome.ERROR))
    if failed:
        raise ScheduledChangeFailed(f"instances not handled: {', '.join(failed)}; the others were: {outcomes}")
    return {"outcomes": outcomes, "rounds": rounds}


class ScheduledChangeFailed(TemporaryError):
    """Some instances of a scheduled change could not be handled: the execution fails so that the
    event is kept (dead-letter queue) for a replay, which redoes nothing that was done."""
