"""Drains that last as long as the node needs: an Auto Scaling lifecycle action, an AWS Health
scheduled change (its workflow in ``scheduled_drain.py``). Each runs as a durable execution
(``durable.py``): every step below is
checkpointed, so an invocation that dies resumes at the step it was in, and a step that finished
is never run again on replay.

The steps reuse the sequence (``Service.handle`` up to the cordon, then ``Service.drain_round``),
and each step is idempotent on its own: the cordon writes nothing twice, a drain round lists what
is left and evicts it, a heartbeat or a completion of an action that is no longer pending is
recognised. A step interrupted after its side effect and before its checkpoint therefore does no
harm when it runs again.

Decisions that read the clock are made inside steps, so a replay sees the times that were seen.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy

from serverless_nth import report
from serverless_nth.aws.autoscaling import LifecycleActions
from serverless_nth.config import Settings
from serverless_nth.entrypoint import count_error, count_malformed
from serverless_nth.errors import HandlerError, PermanentError, TemporaryError
from serverless_nth.events import lifecycle_action
from serverless_nth.events.model import EventKind, InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import check_event_time
from serverless_nth.instance import InstanceFacts, Presence
from serverless_nth.kube.lease import Held, LeaseClaim, Refusal, hold_lease, release_lease
from serverless_nth.long_drain_each import PAUSE, ROUND_SECONDS, lease_holder
from serverless_nth.observability import Metric, logger, metrics
from serverless_nth.policy import drain_starts_at, event_taint, long_drain_deadline, long_drain_turns_at
from serverless_nth.report import Outcome
from serverless_nth.service import Service

T = TypeVar("T")
# A temporary failure (API server, throttling) is retried by the durable service with backoff,
# without holding an invocation; anything else fails the step at once.
_STEP = StepConfig(
    retry_strategy=create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=6,
            initial_delay=Duration.from_seconds(2),
            max_delay=Duration.from_seconds(60),
            retryable_error_types=[TemporaryError],
        )
    )
)
# Lifecycle: heartbeats at half the hook's HeartbeatTimeout, so one late re-invocation still fits;
# the action is completed this long before the hook's global timeout would end it.
HEARTBEAT_SHARE = 0.5
GLOBAL_MARGIN_SECONDS = 60
IN_PROGRESS = "in-progress"  # the outcome dimension of a long drain's metrics before it ends


@dataclass
class LongDrains:
    """What the steps need, built once per execution environment."""

    service: Service
    actions: LifecycleActions
    settings: Settings
    clock: Callable[[], float] = time.time

    def step(self, ctx: DurableContext, name: str, kind: EventKind, work: Callable[..., T], *args: Any) -> T:
        """One checkpointed step. Its metrics are flushed at its end with its own dimensions (the
        event's kind, and the outcome the step set, else ``in-progress``), so they are told once:
        a replay returns the step's checkpoint without running it."""

        def run(_: Any) -> T:
            try:
                return work(*args)
            except HandlerError as exc:
                # told here, with its stage: the SDK keeps only the message of an error that
                # escapes a step. Each failed attempt counts, as each failed invocation does.
                self._failed(name, exc.stage, isinstance(exc, TemporaryError))
                raise
            except MalformedEvent:
                self._failed(name, "parse", False)
                raise
            except Exception:  # a failure nobody foresaw still has a stage
                self._failed(name, "internal", True)
                raise
            finally:
                if metrics.metric_set:
                    for key, value in (("event_kind", kind.value), ("outcome", IN_PROGRESS)):
                        if key not in metrics.dimension_set:
                            metrics.add_dimension(key, value)
                    metrics.flush_metrics()

        return ctx.step(run, name=name, config=_STEP)

    def _failed(self, step: str, stage: str, retryable: bool) -> None:
        count_error(self.settings.cluster_name, stage)
        logger.exception("step failed", extra={"step": step, "stage": stage, "retryable": retryable})

    def too_old(self, event: InterruptionEvent, family: str) -> str:
        """Why the event is malformed by its time (older than the envelope's 15 days, or from the
        future): a replay that old is counted as malformed, not as an error; "" when it is not."""
        try:
            check_event_time(event, datetime.datetime.fromtimestamp(self.clock(), datetime.UTC))
        except MalformedEvent as exc:
            count_malformed(self.settings.cluster_name, family, exc, raised=False)
            return str(exc)
        return ""

    def tell_left_out(self, entities: list[str]) -> None:
        """A Health event's entities that are not instances: told, and counted one by one."""
        logger.warning("Health entities left out: not EC2 instances", extra={"entities": entities})
        metrics.add_dimension("outcome", Outcome.NOT_AN_INSTANCE)
        report.count(Metric.EVENTS_IGNORED, len(entities))

    def prepare(self, event: InterruptionEvent, holder: LeaseClaim, account: str | None) -> dict[str, Any]:
        """The sequence up to the cordon, then the node's drain lease, promised until the drain
        starts: a duplicate execution of the same event finds the lease held, however long the
        holder waits, and leaves the drain (and the completion) to its holder; a newer version of
        the same Health event takes it over."""
        check_event_time(event, datetime.datetime.fromtimestamp(self.clock(), datetime.UTC))
        result = self.service.handle(event, account=account, drain=False)
        due = result.drain_due and bool(result.node) and not self.settings.dry_run
        prepared = {"outcome": result.outcome, "node": result.node, "drain_due": due}
        node = self.service.get_node(result.node) if due and result.node else None
        if node is not None:
            prepared["boot_id"] = node.boot_id  # a reboot maintenance hands the node back after a new boot
            now = self.clock()
            starts = max(now, drain_starts_at(event, self.settings).timestamp())
            held = hold_lease(self.service.kube(), node, holder, now, starts + 2 * ROUND_SECONDS)
            if held is not None:
                prepared.update(outcome=self.tell_held(held, result.node), drain_due=False)
        return prepared

    def tell_held(self, held: Held, node: str | None) -> str:
        """Another execution drains this node: a duplicate delivery of this event, a newer version
        of the same Health event, or another event's drain (a Health change and a scale-in of the
        same instance), told apart by the claim in the lease."""
        logger.info("another execution drains this node", extra={"holder": held.holder, "why": held.why, "node": node})
        report.count(Metric.DUPLICATE_DRAINS if held.why is Refusal.DUPLICATE else Metric.EVENTS_IGNORED)
        return str(held.why)

    def recheck(self, event: InterruptionEvent, node: str, account: str | None) -> dict[str, Any]:
        """After a wait, before the first round: EC2 says what is now. Gone: the dead-node treatment
        (the sequence again: marked out of service, no drain). Stopped and started since the event
        (its LaunchTime moved), or no longer the node of the instance the event named: nothing to
        drain, and what this product added for the old run is undone."""
        instance = self.service.instances.describe(event.instance_id)
        if instance is not None and instance.restarted_since(event.time):
            found = self.service.get_node(node)
            if found is not None:
                self.service.restore_marks(event, found, instance.launched_at or event.time)
            return self._stopped(Outcome.INSTANCE_RESTARTED, "the instance was stopped and started since the event")
        if instance is None or instance.presence is not Presence.LIVE or not self._still_the_node(node, instance):
            result = self.service.handle(event, account=account, drain=False)
            return {"outcome": result.outcome, "drain_due": result.drain_due and result.node == node}
        return {"outcome": "", "drain_due": True}

    def _still_the_node(self, node: str, instance: InstanceFacts) -> bool:
        found = self.service.get_node(node)
        return found is not None and found.is_instance(instance)

    def _stopped(self, outcome: str, why: str) -> dict[str, Any]:
        metrics.add_dimension("outcome", outcome)
        report.count(Metric.EVENTS_OUTDATED)
        logger.info(f"nothing to drain: {why}", extra={"outcome": outcome})
        return {"outcome": outcome, "drain_due": False}

    def drain_round(
        self,
        event: InterruptionEvent,
        node: str,
        holder: LeaseClaim,
        stop_by: float | None,
        next_round_within: float = 2 * ROUND_SECONDS,
        round_seconds: float = ROUND_SECONDS,
    ) -> dict[str, Any]:
        """One round: the lease renewed (promised until this round's end and ``next_round_within``),
        then the drain for ``round_seconds`` at most, until ``stop_by`` and not past the event's
        predicted end while that is ahead. No round drains a node whose lease another execution
        holds now (a newer version of the same drain, a live duplicate), or from which our taint
        was removed (a return to running, a closed Health event, an operator): ``stopped`` says why."""
        now = self.clock()
        limits = [now + round_seconds] + ([stop_by] if stop_by is not None else [])
        # the event's end counts while it is ahead: a window that began before the event was
        # handled leaves one full round, not none
        if event.ends_at is not None and event.ends_at.timestamp() > now:
            limits.append(event.ends_at.timestamp())
        turns = long_drain_turns_at(event)  # a round ends where the rules change (a certain end begins)
        if turns is not None and turns.timestamp() > now:
            limits.append(turns.timestamp())
        stop_by = min(limits)
        deadline = long_drain_deadline(event, datetime.datetime.fromtimestamp(now, datetime.UTC))
        if deadline is not None:  # certain only while EC2 still ends the reservation then
            ends = self._reservation_end(event)
            deadline = long_drain_deadline(event, datetime.datetime.fromtimestamp(now, datetime.UTC), ends)
        report.count(Metric.DRAIN_ROUNDS)
        found = self.service.get_node(node)
        if found is None:  # the node is gone: nothing left to drain
            return {"completed": True, "remaining": [], "at": self.clock()}
        if not found.has_taint_key(event_taint(event, self.settings).key):
            stopped = self._stopped(Outcome.MARKS_REMOVED, "this product's taint is no longer on the node")
            return {"completed": False, "remaining": [], "at": self.clock(), "stopped": stopped["outcome"]}
        self.service.tell_if_uncordoned(event, found)
        held = hold_lease(self.service.kube(), found, holder, self.clock(), stop_by + next_round_within)
        if held is not None:
            outcome = self.tell_held(held, node)
            metrics.add_dimension("outcome", outcome)
            return {"completed": False, "remaining": [], "at": self.clock(), "stopped": outcome}
        drain = self.service.drain_round(event, found, stop_by, deadline.timestamp() if deadline else None)
        return {"completed": drain.completed, "remaining": drain.remaining, "at": self.clock()}

    def finish(self, event: InterruptionEvent, node: str, holder: LeaseClaim, last: dict[str, Any]) -> str:
        """The drain's outcome, told once: metric, the node's Event; the lease let go."""
        outcome = Outcome.DRAINED if last.get("completed") else Outcome.DRAIN_INCOMPLETE
        metrics.add_dimension("event_kind", event.kind.value)
        metrics.add_dimension("outcome", outcome)
        found = self.service.get_node(node)
        if found is not None:
            api = self.service.kube()
            report.long_drain_finished(api, event, found, last.get("remaining", []), last.get("rounds", 0))
            release_lease(api, found, holder)
        report.count(Metric.NODES_DRAINED if last.get("completed") else Metric.DRAINS_INCOMPLETE)
        return outcome

    def pending_action(self, event: InterruptionEvent) -> dict[str, Any]:
        """The hook's limits, and whether the action still waits: a heartbeat answers that (a late
        duplicate finds the action completed by the first delivery, a replay finds it expired)."""
        assert event.lifecycle is not None
        found = self.actions.limits(event.lifecycle)
        if found is None:
            metrics.add_dimension("outcome", Outcome.HOOK_NOT_FOUND)
            report.count(Metric.EVENTS_IGNORED)
            return {"outcome": Outcome.HOOK_NOT_FOUND}
        # a heartbeat delays the termination: a dry run leaves the group's timing alone
        if not self.settings.dry_run:
            if not self.actions.heartbeat(event.lifecycle, event.instance_id):
                metrics.add_dimension("outcome", Outcome.OUTDATED)
                report.count(Metric.EVENTS_OUTDATED)
                logger.info("the lifecycle action no longer waits (completed, or expired): nothing to do")
                return {"outcome": Outcome.OUTDATED}
            report.count(Metric.LIFECYCLE_HEARTBEATS)
        end = event.time.timestamp() + found.global_seconds
        return {"outcome": "", "heartbeat": found.heartbeat_seconds, "end": end, "at": self.clock()}

    def not_ours(self, event: InterruptionEvent) -> None:
        assert event.lifecycle is not None
        metrics.add_dimension("outcome", Outcome.NOT_OUR_HOOK)
        report.count(Metric.EVENTS_IGNORED)
        logger.info(
            "not this stack's lifecycle hook: left to its owner",
            extra={"hook": event.lifecycle.hook, "ours": self.settings.lifecycle_hook_name},
        )

    def _reservation_end(self, event: InterruptionEvent) -> datetime.datetime | None:
        """A Capacity Block's end as EC2 says now (``event.detail`` is its reservation id); unknown
        (None) when EC2 cannot say, so that a permission or API failure changes no drain."""
        try:
            ends = self.service.instances.reservation_end(event.detail)
        except PermanentError as exc:
            logger.warning("the reservation's end could not be read", extra={"reason": str(exc)})
            return None
        if ends is not None and event.ends_at is not None and ends > event.ends_at:
            logger.info("the Capacity Block was extended: no deadline", extra={"ends": ends.isoformat()})
        return ends

    def seconds_until(self, moment: datetime.datetime) -> float:
        return max(0.0, moment.timestamp() - self.clock())


def lifecycle(drains: LongDrains, raw: Any, ctx: DurableContext, account: str | None) -> dict[str, Any]:
    """Cordon, drain with heartbeats, then CONTINUE exactly once (never, for a hook not ours)."""
    event = lifecycle_action.normalise(raw)
    ref = event.lifecycle
    assert ref is not None  # lifecycle_action always sets it
    kind, settings = event.kind, drains.settings
    holder = lease_holder(ctx, event)
    result: dict[str, Any] = {"instance_id": event.instance_id, "rounds": 0, "completed": False}
    if ref.hook != settings.lifecycle_hook_name:
        # never complete another owner's hook: only its owner knows when its work is done
        drains.step(ctx, "not-our-hook", kind, lambda: drains.not_ours(event))
        return {**result, "outcome": Outcome.NOT_OUR_HOOK}

    if drains.service.foreign(event, account):
        # before any call that changes something: no heartbeat, no completion (told by the sequence)
        prepared = drains.step(ctx, "cordon", kind, lambda: drains.prepare(event, holder, account))
        return {**result, "outcome": prepared["outcome"]}
    hook = drains.step(ctx, "hook", kind, drains.pending_action, event)
    if hook["outcome"]:  # no such hook, or its action ended already: nothing waits for us
        return {**result, "outcome": hook["outcome"]}
    prepared = drains.step(ctx, "cordon", kind, lambda: drains.prepare(event, holder, account))
    result["outcome"] = prepared["outcome"]
    if prepared["outcome"] in (Outcome.DUPLICATE, Outcome.HELD_BY_ANOTHER_EVENT):
        return result  # the lease's holder drains (and, for a duplicate, completes)
    if settings.dry_run:
        return result  # changes nothing: no heartbeat, no completion; the hook's own timeout decides
    interval, end = hook["heartbeat"] * HEARTBEAT_SHARE, hook["end"] - GLOBAL_MARGIN_SECONDS
    last_beat, rounds, last, beat = hook["at"], 0, {}, hook["at"]
    while prepared["drain_due"]:
        stop_by = min(last_beat + interval, end)
        last = drains.step(ctx, f"drain-{rounds}", kind, drains.drain_round, event, prepared["node"], holder, stop_by)
        rounds += 1
        if last.get("stopped") and last["stopped"] != Outcome.MARKS_REMOVED:
            return {**result, "outcome": last["stopped"], "rounds": rounds}  # the lease's holder completes
        if last["completed"] or last["at"] >= end or last.get("stopped"):
            break
        beat = drains.step(ctx, f"heartbeat-{rounds}", kind, lambda: _heartbeat(drains, event))
        if beat is None:  # expired or completed elsewhere: the group has gone on without us
            break
        last_beat = beat
        ctx.wait(PAUSE, name=f"pause-{rounds}")
    if last:
        finished = {**last, "rounds": rounds}
        result["outcome"] = drains.step(
            ctx, "drained", kind, lambda: drains.finish(event, prepared["node"], holder, finished)
        )
    if last and beat is None:
        return {**result, "outcome": Outcome.ACTION_ENDED, "rounds": rounds}
    completed = drains.step(ctx, "complete", kind, lambda: _complete(drains, event))
    return {**result, "rounds": rounds, "completed": completed}


def _heartbeat(drains: LongDrains, event: InterruptionEvent) -> float | None:
    assert event.lifecycle is not None
    if not drains.actions.heartbeat(event.lifecycle, event.instance_id):
        logger.warning("the lifecycle action ended before the drain did (expired, or completed elsewhere)")
        metrics.add_dimension("outcome", Outcome.ACTION_ENDED)
        report.count(Metric.LIFECYCLE_ACTIONS_LOST)
        return None
    report.count(Metric.LIFECYCLE_HEARTBEATS)
    return drains.clock()


def _complete(drains: LongDrains, event: InterruptionEvent) -> bool:
    """CONTINUE: for a terminate action both results terminate the instance, and CONTINUE lets the
    group's other hooks run. False when the action had already ended (a lost answer, an expiry)."""
    assert event.lifecycle is not None
    completed = drains.actions.complete(event.lifecycle, event.instance_id, "CONTINUE")
    metrics.add_dimension("outcome", Outcome.ACTION_COMPLETED if completed else Outcome.ACTION_ENDED)
    report.count(Metric.LIFECYCLE_ACTIONS_COMPLETED if completed else Metric.LIFECYCLE_ACTIONS_LOST)
    logger.info("lifecycle action completed: CONTINUE" if completed else "lifecycle action had already ended")
    return completed
