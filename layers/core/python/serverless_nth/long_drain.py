"""Drains that last as long as the node needs: an Auto Scaling lifecycle action (its workflow in
``lifecycle_drain.py``), an AWS Health scheduled change (its workflow in ``scheduled_drain.py``).
Each runs as a durable execution (``durable.py``): every step is checkpointed, so an invocation
that dies resumes at the step it was in, and a step that finished is never run again on replay.

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
from aws_durable_execution_sdk_python.types import StepContext

from serverless_nth import report
from serverless_nth.aws.autoscaling import LifecycleActions
from serverless_nth.aws.ec2 import Ec2Instances
from serverless_nth.config import Settings
from serverless_nth.entrypoint import count_error, count_malformed, route
from serverless_nth.errors import HandlerError, PermanentError, TemporaryError
from serverless_nth.events.model import EventKind, InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import check_event_time
from serverless_nth.fleet import Fleet, Route
from serverless_nth.instance import Described, InstanceFacts, Presence
from serverless_nth.kube.lease import Held, LeaseClaim, Refusal, hold_lease, release_lease
from serverless_nth.kube.volumes import wait_for_detach
from serverless_nth.long_drain_each import ROUND_SECONDS
from serverless_nth.observability import Metric, logger, metric_account, metrics
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
IN_PROGRESS = "in-progress"  # the outcome dimension of a long drain's metrics before it ends


@dataclass
class LongDrains:
    """What the steps need, built once per execution environment."""

    fleet: Fleet
    settings: Settings
    clock: Callable[[], float] = time.time
    attempt: int = 1  # of the step that runs now (1: its first), set by ``step``
    home_account: str | None = None  # the function's own, set per invocation (durable.py)
    # the dimension ``account`` of the errors counted (observability.metric_account): the event's once routed
    error_account: str | None = None

    def route_for(self, event: InterruptionEvent) -> Route:
        """The event's instance's cluster (``entrypoint.route``); metrics and errors carry it."""
        found = route(self.fleet, event, self.home_account)
        self.error_account = metric_account(self.settings.many_accounts, event.account or self.home_account)
        return found

    def service_for(self, event: InterruptionEvent) -> Service:
        return self.route_for(event).service

    def actions_for(self, event: InterruptionEvent) -> LifecycleActions:
        """Auto Scaling in the event's account."""
        return self.fleet.lifecycle_actions(self.fleet.member_of(event, self.home_account))

    def instances_for(self, event: InterruptionEvent) -> Ec2Instances:
        """EC2 in the event's account."""
        return self.fleet.instances(self.fleet.member_of(event, self.home_account))

    def step(self, ctx: DurableContext, name: str, kind: EventKind, work: Callable[..., T], *args: Any) -> T:
        """One checkpointed step. Its metrics are flushed at its end with its own dimensions (the
        event's kind, and the outcome the step set, else ``in-progress``), so they are told once:
        a replay returns the step's checkpoint without running it."""

        def run(context: StepContext) -> T:
            self.attempt = context.attempt
            try:
                return work(*args)
            except HandlerError as exc:
                # told here, with its stage: the SDK keeps only the message of an error that
                # escapes a step. Each failed attempt counts, as each failed invocation does.
                self.tell_failed(name, exc.stage, isinstance(exc, TemporaryError))
                raise
            except MalformedEvent:
                self.tell_failed(name, "parse", False)
                raise
            except Exception:  # a failure nobody foresaw still has a stage
                self.tell_failed(name, "internal", True)
                raise
            finally:
                if metrics.metric_set:
                    for key, value in (("event_kind", kind.value), ("outcome", IN_PROGRESS)):
                        if key not in metrics.dimension_set:
                            metrics.add_dimension(key, value)
                    metrics.flush_metrics()

        return ctx.step(run, name=name, config=_STEP)

    def tell_failed(self, step: str, stage: str, retryable: bool) -> None:
        """A failed attempt of a step: an error counted with its stage, and logged with its traceback."""
        count_error(self.settings.cluster_name, stage, self.error_account)
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
        routed = self.route_for(event)
        service = routed.service
        result = service.handle(event, account=account, drain=False, described=routed.described)
        due = result.drain_due and bool(result.node) and not service.settings.dry_run
        prepared = {"outcome": result.outcome, "node": result.node, "drain_due": due}
        node = service.get_node(result.node) if due and result.node else None
        if node is not None:
            prepared["boot_id"] = node.boot_id  # a reboot maintenance hands the node back after a new boot
            now = self.clock()
            starts = max(now, drain_starts_at(event, self.settings).timestamp())
            held = hold_lease(service.kube(), node, holder, now, starts + 2 * ROUND_SECONDS)
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
        service = self.service_for(event)
        instance = service.instances.describe(event.instance_id)
        if instance is not None and instance.restarted_since(event.time):
            found = service.get_node(node)
            if found is not None:
                service.restore_marks(event, found, instance.launched_at or event.time)
            return self._stopped(Outcome.INSTANCE_RESTARTED, "the instance was stopped and started since the event")
        if instance is None or instance.presence is not Presence.LIVE or not _still_the_node(service, node, instance):
            result = service.handle(event, account=account, drain=False, described=Described(instance))
            return {"outcome": result.outcome, "drain_due": result.drain_due and result.node == node}
        return {"outcome": "", "drain_due": True}

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
        service = self.service_for(event)
        found = service.get_node(node)
        if found is None:  # the node is gone: nothing left to drain
            return {"completed": True, "remaining": [], "at": self.clock()}
        if not found.has_taint_key(event_taint(event, self.settings).key):
            stopped = self._stopped(Outcome.MARKS_REMOVED, "this product's taint is no longer on the node")
            return {"completed": False, "remaining": [], "at": self.clock(), "stopped": stopped["outcome"]}
        service.tell_if_uncordoned(event, found)
        held = hold_lease(service.kube(), found, holder, self.clock(), stop_by + next_round_within)
        if held is not None:
            outcome = self.tell_held(held, node)
            metrics.add_dimension("outcome", outcome)
            return {"completed": False, "remaining": [], "at": self.clock(), "stopped": outcome}
        drain = service.drain_round(event, found, stop_by, deadline.timestamp() if deadline else None)
        return {"completed": drain.completed, "remaining": drain.remaining, "at": self.clock()}

    def finish(self, event: InterruptionEvent, node: str, holder: LeaseClaim, last: dict[str, Any]) -> str:
        """The drain's outcome, told once: metric, the node's Event; the lease let go."""
        outcome = Outcome.DRAINED if last.get("completed") else Outcome.DRAIN_INCOMPLETE
        metrics.add_dimension("event_kind", event.kind.value)
        metrics.add_dimension("outcome", outcome)
        try:
            service = self.service_for(event)
            found = service.get_node(node)
            if found is not None:
                api = service.kube()
                report.long_drain_finished(api, event, found, last.get("remaining", []), last.get("rounds", 0))
                release_lease(api, found, holder)
        except TemporaryError as exc:
            # told, and not retried: what follows (a lifecycle action's completion) matters more
            # than the node's Event, and a lease not let go goes stale on its own
            step = "drained" if event.lifecycle is not None else f"drained-{event.instance_id}"
            self.tell_failed(step, exc.stage, True)
        report.count(Metric.NODES_DRAINED if last.get("completed") else Metric.DRAINS_INCOMPLETE)
        return outcome

    def detach_volumes(self, event: InterruptionEvent, node: str, end: float | None) -> dict[str, Any]:
        """A step before the instance is let go (an action completed, a Capacity Block's instances
        terminating): wait, VolumeDetachSeconds at most and never past ``end``, until no
        VolumeAttachment names the node; what is still attached is told (``volumes_still_attached``)."""
        started = self.clock()
        until = min(started + self.settings.volume_detach_seconds, end if end is not None else float("inf"))
        service = self.service_for(event)
        attached = wait_for_detach(service.kube(), node, until, clock=self.clock)
        if attached:
            report.count(Metric.VOLUMES_STILL_ATTACHED, len(attached))
        found = service.get_node(node) if attached else None
        if found is not None:
            report.volumes_still_attached(service.kube(), event, found, attached)
        return {"attached": attached, "waited_seconds": round(self.clock() - started, 3)}

    def _reservation_end(self, event: InterruptionEvent) -> datetime.datetime | None:
        """A Capacity Block's end as EC2 says now (``event.detail`` is its reservation id); unknown
        (None) when EC2 cannot say, so that a permission or API failure changes no drain."""
        try:
            ends = self.instances_for(event).reservation_end(event.detail)
        except PermanentError as exc:
            logger.warning("the reservation's end could not be read", extra={"reason": str(exc)})
            return None
        if ends is not None and event.ends_at is not None and ends > event.ends_at:
            logger.info("the Capacity Block was extended: no deadline", extra={"ends": ends.isoformat()})
        return ends

    def seconds_until(self, moment: datetime.datetime) -> float:
        return max(0.0, moment.timestamp() - self.clock())


def _still_the_node(service: Service, node: str, instance: InstanceFacts) -> bool:
    found = service.get_node(node)
    return found is not None and found.is_instance(instance)
