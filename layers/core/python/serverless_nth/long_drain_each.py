"""Long drains of events that name several instances (an AWS Health scheduled change, a Capacity
Block expiration warning): each instance is its own unit of work, as a batch record is in
Powertools' batch utility. All are cordoned and tainted at once, then drained in rounds from the
event's drain start (``policy.drain_starts_at``) until the event's end. One instance's failure
neither stops nor repeats the others: its steps are retried on their own, and the execution fails
at the end if any failed for good, so that the event is kept for a replay (which is safe: every
step is idempotent).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from aws_durable_execution_sdk_python import DurableContext, StepError
from aws_durable_execution_sdk_python.config import Duration

from serverless_nth.errors import TemporaryError
from serverless_nth.events import capacity_block
from serverless_nth.events.model import EventKind, InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import check_event_time
from serverless_nth.observability import Metric, logger, metrics
from serverless_nth.policy import drain_starts_at
from serverless_nth.report import Outcome, count

if TYPE_CHECKING:
    from serverless_nth.long_drain import LongDrains

# Between rounds the execution waits (no compute is paid) and the next round is a new invocation,
# so no invocation comes near Lambda's 15 minutes however long the drain lasts.
PAUSE = Duration.from_seconds(1)


def lease_holder(ctx: DurableContext, event: InterruptionEvent) -> str:
    """Who holds a node's drain lease: the execution, and the event it handles (its last word)."""
    return f"{ctx.execution_context.durable_execution_arn} {event.event_id}"


def drain_each(
    drains: LongDrains,
    ctx: DurableContext,
    kind: EventKind,
    events: list[InterruptionEvent],
    account: str | None,
    failure: type[TemporaryError],
) -> tuple[dict[str, str], int]:
    """Cordon every instance (``cordon-<id>``), wait until the drain starts (``until-lead-time``),
    then a round per instance in turn (``drain-<id>-<n>``) until its node is empty or the event's
    end, its outcome told once (``drained-<id>``). Returns the outcome per instance and the rounds."""
    outcomes: dict[str, str] = {}
    if not events:
        return outcomes, 0
    holder = lease_holder(ctx, events[0])  # one event id for all its instances
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
            ends = event.ends_at.timestamp() if event.ends_at else 0.0
            try:
                last[instance_id] = drains.step(
                    ctx, f"drain-{instance_id}-{rounds}", kind, drains.drain_round, event, node, holder, None
                )
            except StepError as exc:
                outcomes[instance_id] = f"{Outcome.ERROR}: {exc}"
                del draining[instance_id]
                continue
            if last[instance_id]["completed"] or last[instance_id]["at"] >= ends:
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
        raise failure(f"instances not handled: {', '.join(failed)}; the others were: {outcomes}")
    return outcomes, rounds


def capacity_block_expiry(drains: LongDrains, raw: Any, ctx: DurableContext, account: str | None) -> dict[str, Any]:
    """The reservation's instances as EC2 lists them now (step ``instances``), then ``drain_each``
    at once until the block's end-date; ``policy`` says when grace periods become capped."""
    expiry = capacity_block.parse(raw)
    kind = EventKind.CAPACITY_BLOCK_EXPIRY
    listed = drains.step(ctx, "instances", kind, _instances, drains, expiry, account)
    result = {"reservation": expiry.reservation_id, "outcomes": {}, "rounds": 0}
    if listed["outcome"]:
        return {**result, "outcome": listed["outcome"]}
    events = [expiry.instance(instance_id) for instance_id in listed["instances"]]
    outcomes, rounds = drain_each(drains, ctx, kind, events, account, CapacityBlockFailed)
    return {**result, "outcomes": outcomes, "rounds": rounds}


def _instances(drains: LongDrains, expiry: capacity_block.CapacityBlockExpiry, account: str | None) -> dict[str, Any]:
    """Nothing is listed, and nothing changed, for an event too old or from the future (malformed,
    counted), or of another account or region."""
    probe = expiry.instance("i-00000000")
    try:
        check_event_time(probe, datetime.datetime.fromtimestamp(drains.clock(), datetime.UTC))
    except MalformedEvent as exc:
        metrics.add_dimension("outcome", Outcome.MALFORMED)
        count(Metric.MALFORMED_EVENTS)
        logger.error("malformed event: nothing was changed", extra={"outcome": Outcome.MALFORMED, "reason": str(exc)})
        return {"outcome": Outcome.MALFORMED, "instances": []}
    why = drains.service.foreign(probe, account)
    if why:
        metrics.add_dimension("outcome", Outcome.OTHER_ACCOUNT)
        count(Metric.EVENTS_FROM_OTHER_ACCOUNT)
        logger.info(f"nothing to do: {why}", extra={"outcome": Outcome.OTHER_ACCOUNT})
        return {"outcome": Outcome.OTHER_ACCOUNT, "instances": []}
    found = drains.service.instances.in_reservation(expiry.reservation_id)
    logger.info("the reservation's instances", extra={"reservation": expiry.reservation_id, "instances": found})
    if not found:
        metrics.add_dimension("outcome", Outcome.INSTANCE_NOT_FOUND)
        count(Metric.INSTANCE_NOT_FOUND)
    return {"outcome": "", "instances": found}


class CapacityBlockFailed(TemporaryError):
    """Some instances of the reservation could not be handled: the execution fails so that the
    event is kept (dead-letter queue) for a replay, which redoes nothing that was done."""
