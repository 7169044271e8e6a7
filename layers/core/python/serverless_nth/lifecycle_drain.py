"""The Auto Scaling terminate lifecycle action's long drain: cordon, drain with heartbeats for as
long as the node needs, then complete the action once. A durable workflow built on the shared
steps of ``long_drain.LongDrains`` (see there for what makes each step safe to run again)."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import Duration

from serverless_nth import report
from serverless_nth.aws.autoscaling import Completion
from serverless_nth.config import UnfinishedDrainResult
from serverless_nth.errors import PermanentError, TemporaryError
from serverless_nth.events import lifecycle_action
from serverless_nth.events.model import InterruptionEvent
from serverless_nth.kube.client import longest_failure
from serverless_nth.kube.lease import LeaseClaim
from serverless_nth.long_drain import LongDrains
from serverless_nth.long_drain_each import ROUND_SECONDS, lease_holder
from serverless_nth.observability import Metric, logger, metrics
from serverless_nth.policy import next_pause, unfinished_drain_result
from serverless_nth.report import Outcome

# Heartbeats at half the hook's HeartbeatTimeout, so one late re-invocation still fits; the action
# is completed this long before the hook's global timeout would end it.
HEARTBEAT_SHARE = 0.5
GLOBAL_MARGIN_SECONDS = 60
COMPLETION_ROOM_SECONDS = 10  # the volume wait ends this long before the action could expire


def lifecycle(drains: LongDrains, raw: Any, ctx: DurableContext, account: str | None) -> dict[str, Any]:
    """Cordon, drain with heartbeats, then complete exactly once (never, for a hook not ours)."""
    event = lifecycle_action.normalise(raw)
    ref = event.lifecycle
    assert ref is not None  # lifecycle_action always sets it
    kind = event.kind
    holder = lease_holder(ctx, event)
    result: dict[str, Any] = {"instance_id": event.instance_id, "rounds": 0, "completed": False}
    # Before any call that changes something (a heartbeat, a cordon, a completion), what the
    # event alone says: its time (a replay older than 15 days, a forged time ahead), its account
    # and region (a shared bus, a forger), and the hook's owner.
    if drains.step(ctx, "event-time", kind, drains.too_old, event, "asg-lifecycle"):
        return {**result, "outcome": Outcome.MALFORMED}
    service = drains.service_for(event)  # the cluster of the instance (fleet.py); its settings
    settings = service.settings
    if service.foreign(event, account):  # told by the sequence, which changes nothing for it
        prepared = drains.step(ctx, "cordon", kind, lambda: drains.prepare(event, holder, account))
        return {**result, "outcome": prepared["outcome"]}
    if ref.hook != settings.lifecycle_hook_name:
        # never complete another owner's hook: only its owner knows when its work is done
        drains.step(ctx, "not-our-hook", kind, lambda: not_ours(drains, event))
        return {**result, "outcome": Outcome.NOT_OUR_HOOK}
    hook = drains.step(ctx, "hook", kind, pending_action, drains, event)
    if hook["outcome"]:  # no such hook, or its action ended already: nothing waits for us
        return {**result, "outcome": hook["outcome"]}
    prepared = drains.step(ctx, "cordon", kind, lambda: drains.prepare(event, holder, account))
    result["outcome"] = prepared["outcome"]
    if prepared["outcome"] in (Outcome.DUPLICATE, Outcome.HELD_BY_ANOTHER_EVENT):
        return result  # the lease's holder drains (and, for a duplicate, completes)
    if settings.dry_run:
        return result  # changes nothing: no heartbeat, no completion; the hook's own timeout decides
    interval, end = hook["heartbeat"] * HEARTBEAT_SHARE, hook["end"] - GLOBAL_MARGIN_SECONDS
    last_beat, rounds, beat, pause = hook["at"], 0, hook["at"], 0.0
    # a round that fails holds the next heartbeat for its pause and its failing request: together
    # no longer than the interval
    longest_pause = interval - longest_failure(settings.request_timeout_seconds)
    # the lease is promised past a round's end for the heartbeat, the longest pause and the next
    # invocation's start: a pause that grew must not let another execution take the node over
    next_round_within = max(2 * ROUND_SECONDS, longest_pause + ROUND_SECONDS)
    last: dict[str, Any] = {}
    while prepared["drain_due"]:
        stop_by = min(last_beat + interval, end)
        name = f"drain-{rounds}"
        this = drains.step(
            ctx, name, kind, _round, drains, event, prepared["node"], holder, stop_by, next_round_within, name
        )
        rounds += 1
        # changed: the round ran and left other pods than the one before (the first round always)
        before = last.get("remaining")
        changed = "failed" not in this and (before is None or sorted(this["remaining"]) != sorted(before))
        last = {**last, **this} if "failed" in this else this  # a failed round keeps what the last saw
        if last.get("stopped") and last["stopped"] != Outcome.MARKS_REMOVED:
            return {**result, "outcome": last["stopped"], "rounds": rounds}  # the lease's holder completes
        if last["completed"] or last["at"] >= end or last.get("stopped"):
            break
        beat = drains.step(ctx, f"heartbeat-{rounds}", kind, lambda: _heartbeat(drains, event))
        if beat is None:  # expired or completed elsewhere: the group has gone on without us
            break
        last_beat = beat
        # while nothing changes, the pause grows towards the interval: each round adds operations
        # to the execution's history, which every invocation replays (issue 20.10)
        pause = next_pause(pause, changed, ceiling=longest_pause)
        ctx.wait(Duration.from_seconds(round(pause)), name=f"pause-{rounds}")
    if last:
        finished = {**last, "rounds": rounds}
        result["outcome"] = drains.step(
            ctx, "drained", kind, lambda: drains.finish(event, prepared["node"], holder, finished)
        )
    if last and beat is None:
        return {**result, "outcome": Outcome.ACTION_ENDED, "rounds": rounds}
    # the action cannot have expired before this moment: a completion that finds it ended earlier
    # was answered for, by an earlier send of this execution (see _complete)
    alive_until = min(last_beat + hook["heartbeat"], hook["end"])
    unfinished = bool(last) and not last["completed"]
    if last and not unfinished:
        # the node is empty: its volumes should be free for the next pod before the instance goes,
        # waited for within the action's life (room left for the completion itself)
        end = alive_until - COMPLETION_ROOM_SECONDS
        drains.step(ctx, "volumes", kind, drains.detach_volumes, event, prepared["node"], end)
    completed = drains.step(ctx, "complete", kind, lambda: _complete(drains, event, alive_until, unfinished))
    return {**result, "rounds": rounds, "completed": completed}


def _round(
    drains: LongDrains,
    event: InterruptionEvent,
    node: str,
    holder: LeaseClaim,
    stop_by: float,
    next_round_within: float,
    name: str,
) -> dict[str, Any]:
    """A drain round whose API trouble is told (an error with its stage, as a failed step is) and
    not retried inside the step: the step's retries back off 2 s to 60 s, and while they did, no
    heartbeat went out, so a hook with a short HeartbeatTimeout expired during an API brownout.
    The loop sends the heartbeat, pauses, and runs the next round instead."""
    try:
        return drains.drain_round(event, node, holder, stop_by, next_round_within)
    except TemporaryError as exc:
        drains.tell_failed(name, exc.stage, True)
        return {"completed": False, "failed": str(exc), "at": drains.clock()}


def _heartbeat(drains: LongDrains, event: InterruptionEvent) -> float | None:
    assert event.lifecycle is not None
    sent = drains.clock()  # the action's new HeartbeatTimeout counts from no earlier than this
    if not drains.actions_for(event).heartbeat(event.lifecycle, event.instance_id):
        logger.warning("the lifecycle action ended before the drain did (expired, or completed elsewhere)")
        metrics.add_dimension("outcome", Outcome.ACTION_ENDED)
        report.count(Metric.LIFECYCLE_ACTIONS_LOST)
        return None
    report.count(Metric.LIFECYCLE_HEARTBEATS)
    return sent


def _complete(drains: LongDrains, event: InterruptionEvent, alive_until: float, unfinished: bool) -> bool:
    """CONTINUE once the node is drained (or has nothing to drain). For a drain that could not
    finish, the result ``UnfinishedDrainResult`` says (``policy.unfinished_drain_result``): for a
    terminate action both results terminate the instance unless the group retains abandoned ones,
    and CONTINUE lets the group's other hooks run. False when the action had already ended (an
    expiry, an operator).

    A CompleteLifecycleAction cannot be sent twice: once it took effect, a second send answers "No
    active Lifecycle Action found". So when an earlier send of this execution may have gone through
    (botocore resent the request, or this step runs again after a failed attempt) and the action
    could not have expired yet (``alive_until``: the last heartbeat plus HeartbeatTimeout, capped by
    the global timeout), that answer means this execution completed it, not that it was lost."""
    ref = event.lifecycle
    assert ref is not None
    setting, result = drains.settings.unfinished_drain_result, "CONTINUE"
    if unfinished:
        retains = setting is UnfinishedDrainResult.AUTO and _retains_abandoned(drains, event, ref.group)
        result = unfinished_drain_result(setting, retains)
    answer = drains.actions_for(event).complete(ref, event.instance_id, result)
    resent = answer is Completion.ENDED_AFTER_RESEND or (answer is Completion.ENDED and drains.attempt > 1)
    ours = answer is Completion.COMPLETED or (resent and drains.clock() < alive_until)
    if ours and answer is not Completion.COMPLETED:
        logger.info("an earlier send of this execution completed the lifecycle action; its answer was lost")
    metrics.add_dimension("outcome", Outcome.ACTION_COMPLETED if ours else Outcome.ACTION_ENDED)
    report.count(Metric.LIFECYCLE_ACTIONS_COMPLETED if ours else Metric.LIFECYCLE_ACTIONS_LOST)
    if ours:
        logger.info(f"lifecycle action completed: {result}", extra={"unfinished": unfinished})
    else:
        logger.info("lifecycle action had already ended")
    return ours


def _retains_abandoned(drains: LongDrains, event: InterruptionEvent, group: str) -> bool:
    """Whether the group keeps abandoned instances; False (CONTINUE) when Auto Scaling cannot say
    (a permission missing), so that a missing answer never changes how the action ends."""
    try:
        return drains.actions_for(event).retains_abandoned(group)
    except PermanentError as exc:
        logger.warning("the group's instance lifecycle policy could not be read", extra={"reason": str(exc)})
        return False


def pending_action(drains: LongDrains, event: InterruptionEvent) -> dict[str, Any]:
    """The hook's limits, and whether the action still waits: a heartbeat answers that (a late
    duplicate finds the action completed by the first delivery, a replay finds it expired)."""
    assert event.lifecycle is not None
    found = drains.actions_for(event).limits(event.lifecycle)
    if found is None:
        metrics.add_dimension("outcome", Outcome.HOOK_NOT_FOUND)
        report.count(Metric.EVENTS_IGNORED)
        return {"outcome": Outcome.HOOK_NOT_FOUND}
    sent = drains.clock()
    # a heartbeat delays the termination: a dry run leaves the group's timing alone
    if not drains.service_for(event).settings.dry_run:
        if not drains.actions_for(event).heartbeat(event.lifecycle, event.instance_id):
            metrics.add_dimension("outcome", Outcome.OUTDATED)
            report.count(Metric.EVENTS_OUTDATED)
            logger.info("the lifecycle action no longer waits (completed, or expired): nothing to do")
            return {"outcome": Outcome.OUTDATED}
        report.count(Metric.LIFECYCLE_HEARTBEATS)
    end = event.time.timestamp() + found.global_seconds
    return {"outcome": "", "heartbeat": found.heartbeat_seconds, "end": end, "at": sent}


def not_ours(drains: LongDrains, event: InterruptionEvent) -> None:
    assert event.lifecycle is not None
    metrics.add_dimension("outcome", Outcome.NOT_OUR_HOOK)
    report.count(Metric.EVENTS_IGNORED)
    logger.info(
        "not this stack's lifecycle hook: left to its owner",
        extra={"hook": event.lifecycle.hook, "ours": drains.service_for(event).settings.lifecycle_hook_name},
    )
