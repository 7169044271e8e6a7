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
from serverless_nth.kube.lease import LeaseClaim
from serverless_nth.observability import Metric, logger, metrics
from serverless_nth.policy import drain_starts_at, next_pause
from serverless_nth.report import Outcome, count

if TYPE_CHECKING:
    from serverless_nth.long_drain import LongDrains

# a round of a long drain lasts at most this long (long_drain.py)
ROUND_SECONDS = 60

# Between rounds the execution waits (no compute is paid) and the next round is a new invocation,
# so no invocation comes near its timeout however long the drain lasts or however many instances
# the event names: every round of every instance is followed by a wait, so one invocation runs one
# round (ROUND_SECONDS at most) and the steps around it.
PAUSE = Duration.from_seconds(1)
# The instances of one event share a minute: each round lasts ROUND_SECONDS / instances, at least
# this, so that a pass over many PDB-held nodes stays near a minute and a freed budget is seen soon.
MIN_ROUND_SECONDS = 10
# While no round of a pass changes anything on any node (budgets still refusing), the pause after
# the pass doubles (policy.next_pause), up to this and to a quarter of the time left before the
# event's end: a week-long lead time held by a PDB costs hundreds of operations, not tens of
# thousands (AWS's durable execution SDK documents 25,000 at most, docs/long-drains.md)
IDLE_CEILING_SECONDS = 900
# A drain without an end (a Health event without startTime: drained gently at once) stops trying
# this long after the event; its node stays cordoned and tainted, as after a drain that the window
# ended, and the outcome says drain-incomplete.
NO_END_DRAIN = datetime.timedelta(hours=24)


def lease_holder(ctx: DurableContext, event: InterruptionEvent) -> LeaseClaim:
    """The drain lease's claim of this execution for ``event`` (kube/lease.py)."""
    arn = ctx.execution_context.durable_execution_arn
    return LeaseClaim(arn, event.event_id, event.drain_key, event.time.astimezone(datetime.UTC).isoformat())


def drain_each(
    drains: LongDrains,
    ctx: DurableContext,
    kind: EventKind,
    events: list[InterruptionEvent],
    account: str | None,
    failure: type[TemporaryError],
    boots: dict[str, tuple[str, str]] | None = None,
) -> tuple[dict[str, str], int]:
    """Cordon every instance (``cordon-<id>``), wait until the drain starts (``until-lead-time``),
    read EC2 again for each (``recheck-<id>``), then a round per instance in turn
    (``drain-<id>-<n>``), each followed by a wait, until its node is empty, the event's end, or the
    round finds the drain is no longer this execution's; its outcome told once (``drained-<id>``).
    Returns the outcome per instance and the rounds; ``boots`` gets each drained instance's node
    and the node's boot id when it was cordoned."""
    outcomes: dict[str, str] = {}
    if not events:
        return outcomes, 0
    holder = lease_holder(ctx, events[0])  # one event, one claim for all its instances
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
            if boots is not None:
                boots[event.instance_id] = (prepared["node"], prepared.get("boot_id", ""))
    if draining:
        first = next(iter(draining.values()))[0]
        wait = drains.step(ctx, "lead", kind, lambda: drains.seconds_until(drain_starts_at(first, drains.settings)))
        if wait >= 1:
            ctx.wait(Duration.from_seconds(wait), name="until-lead-time")
            for instance_id, (event, node) in list(draining.items()):
                try:
                    now = drains.step(ctx, f"recheck-{instance_id}", kind, drains.recheck, event, node, account)
                except StepError as exc:
                    now = {"outcome": f"{Outcome.ERROR}: {exc}", "drain_due": False}
                if not now["drain_due"]:
                    outcomes[instance_id] = now["outcome"]
                    del draining[instance_id]
    rounds, idle, seen = 0, float(PAUSE.to_seconds()), dict[str, list[str]]()
    while draining:
        # every other instance has a round before this one's next, and the pass may be followed by
        # an idle pause: the lease is promised for that
        next_round_within = len(draining) * (ROUND_SECONDS + PAUSE.to_seconds()) + ROUND_SECONDS + IDLE_CEILING_SECONDS
        changed = False
        share = max(MIN_ROUND_SECONDS, ROUND_SECONDS / len(draining))
        for instance_id, (event, node) in list(draining.items()):
            ends = (event.ends_at or event.time + NO_END_DRAIN).timestamp()
            try:
                last: dict[str, Any] | None = drains.step(
                    ctx,
                    f"drain-{instance_id}-{rounds}",
                    kind,
                    drains.drain_round,
                    event,
                    node,
                    holder,
                    None,
                    next_round_within,
                    share,
                )
            except StepError as exc:
                outcomes[instance_id] = f"{Outcome.ERROR}: {exc}"
                del draining[instance_id]
                last = None
            ctx.wait(PAUSE, name=f"pause-{instance_id}-{rounds}")
            if last is None:
                continue
            remaining = sorted(last["remaining"])
            changed = changed or seen.get(instance_id) != remaining or bool(last["completed"] or last.get("stopped"))
            seen[instance_id] = remaining
            if last.get("stopped"):
                outcomes[instance_id] = last["stopped"]  # another drives it, or it is ours no more
                del draining[instance_id]
            elif last["completed"] or last["at"] >= ends:
                finished = {**last, "rounds": rounds + 1}
                outcomes[instance_id] = drains.step(
                    ctx, f"drained-{instance_id}", kind, drains.finish, event, node, holder, finished
                )
                del draining[instance_id]
                if kind is EventKind.CAPACITY_BLOCK_EXPIRY and last["completed"]:
                    # the instance terminates: its volumes should be free for the next pod first
                    drains.step(ctx, f"volumes-{instance_id}", kind, drains.detach_volumes, event, node, ends)
        rounds += 1
        if draining and kind is EventKind.SCHEDULED_CHANGE:  # a Capacity Block's 40 minutes never idle
            window = min((e.ends_at or e.time + NO_END_DRAIN) for e, _ in draining.values())
            left = drains.step(ctx, f"window-left-{rounds}", kind, drains.seconds_until, window)
            idle = next_pause(idle, changed, ceiling=min(IDLE_CEILING_SECONDS, max(PAUSE.to_seconds(), left / 4)))
            if idle > PAUSE.to_seconds():
                ctx.wait(Duration.from_seconds(round(idle)), name=f"idle-{rounds}")
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
    why = drains.service_for(probe).foreign(probe, account)
    if why:
        metrics.add_dimension("outcome", Outcome.OTHER_ACCOUNT)
        count(Metric.EVENTS_FROM_OTHER_ACCOUNT)
        logger.info(f"nothing to do: {why}", extra={"outcome": Outcome.OTHER_ACCOUNT})
        return {"outcome": Outcome.OTHER_ACCOUNT, "instances": []}
    found = drains.instances_for(probe).in_reservation(expiry.reservation_id)
    logger.info("the reservation's instances", extra={"reservation": expiry.reservation_id, "instances": found})
    if not found:
        metrics.add_dimension("outcome", Outcome.INSTANCE_NOT_FOUND)
        count(Metric.INSTANCE_NOT_FOUND)
    return {"outcome": "", "instances": found}


class CapacityBlockFailed(TemporaryError):
    """Some instances of the reservation could not be handled: the execution fails so that the
    event is kept (dead-letter queue) for a replay, which redoes nothing that was done."""
