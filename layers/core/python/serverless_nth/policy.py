"""Which event does what: pure functions of the event, EC2's current state, the time and the
settings (table-tested).

An event says what was expected; EC2's state now says what is. A late, retried or replayed event
is judged by both: an instance already gone gets the treatment of a dead node, an instance that is
still live past its predicted end gets a gentle drain, and a state change that EC2 has since left
behind changes nothing. Only a deadline that is still ahead, of an instance that is certainly
going, shortens grace periods or licenses a delete past a PodDisruptionBudget.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from dataclasses import dataclass
from enum import StrEnum

from serverless_nth.config import KarpenterNodes, Settings, TaintEffect, UnfinishedDrainResult
from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.instance import Presence

SPOT_WARNING = datetime.timedelta(seconds=120)
# A Capacity Block's instances "will begin to terminate in 10 minutes" after its expiration
# warning, which comes 40 minutes before the end-date: 30 minutes before the end (the user guide's
# capacity-blocks-monitor and capacity-blocks-how pages)
CAPACITY_BLOCK_NOTICE = datetime.timedelta(minutes=10)
CAPACITY_BLOCK_TERMINATION_LEAD = datetime.timedelta(minutes=30)
TAINT_PREFIX = "serverless-nth"
# Kubernetes' own taint for a node that is shut down: the pod GC force-deletes its pods and
# detaches their volumes at once, instead of after the ~6 minute unreachable timeout.
OUT_OF_SERVICE_KEY = "node.kubernetes.io/out-of-service"
# Per-node policy, from labels users set in their NodePool template or node group:
IGNORE_LABEL = "serverless-nth/ignore"  # "true": this product never touches the node
REBALANCE_LABEL = "serverless-nth/rebalance"  # what a rebalance recommendation does here
REBALANCE_CHOICES = ("drain", "cordon", "ignore")
KARPENTER_NODEPOOL_LABEL = "karpenter.sh/nodepool"
_KARPENTER_HANDLES = (
    EventKind.SPOT_INTERRUPTION,
    EventKind.CAPACITY_RESERVATION_INTERRUPTION,
    EventKind.INSTANCE_STOPPING,
    EventKind.INSTANCE_SHUTTING_DOWN,
    EventKind.INSTANCE_STOPPED,
    EventKind.INSTANCE_TERMINATED,
    EventKind.SCHEDULED_CHANGE,  # Karpenter's interruption queue takes AWS Health events too
    EventKind.CAPACITY_BLOCK_EXPIRY,  # Karpenter drains a reserved node from end-date - 40 min itself
    EventKind.INSTANCE_IMPAIRED,  # Karpenter's instancestatus controller (v1.12+) replaces its own nodes
)
# Events whose drain may last as long as the node needs (a durable execution runs it in rounds):
# nothing caps a grace period and every PDB is respected, since the instance waits for us (a
# lifecycle hook) or its end is far ahead (a scheduled change)
LONG_DRAIN_KINDS = (EventKind.ASG_TERMINATING, EventKind.SCHEDULED_CHANGE)
# a taint's value is a label value: 63 characters at most, alphanumeric at both ends
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", re.ASCII)
_GONE_KINDS = (EventKind.INSTANCE_STOPPED, EventKind.INSTANCE_TERMINATED)
_GOING_KINDS = (EventKind.INSTANCE_STOPPING, EventKind.INSTANCE_SHUTTING_DOWN)
# back in service: running again, or out of a Running warm pool (no stop, so no `running` event)
_BACK_KINDS = (EventKind.INSTANCE_RUNNING, EventKind.WARM_POOL_RETURN)


class Basis(StrEnum):
    """Why the action is what it is, in the logs and the result."""

    EVENT = "event"  # the event still holds: its own row of the table
    INSTANCE_GONE = "instance-gone"  # EC2 says stopped/terminated, whatever the event expected
    PAST_DEADLINE = "past-deadline"  # still live past its predicted end: a gentle drain
    NOT_CONFIRMED = "not-confirmed"  # EC2 does not (yet) confirm the state change: a gentle drain
    HIBERNATE = "hibernate"  # Spot hibernation starts at once: no drain can finish
    OUTDATED = "outdated"  # EC2 has left the reported state behind: nothing to do
    NOT_HANDLED = "not-handled"  # pending events
    CAME_BACK = "came-back"  # running again: undo what this product added
    MAINTENANCE_ENDED = "maintenance-ended"  # a closed Health event, the instance live: undo as CAME_BACK
    SUPERSEDED = "superseded"  # a `running` event older than the event that holds the node: nothing undone
    NOT_MANAGED = "not-managed"  # the instance lacks Settings.managed_tag
    OPTED_OUT = "opted-out"  # the node's serverless-nth/ignore label
    NODE_LABEL = "node-label"  # the node's serverless-nth/rebalance label chose the action
    LEFT_TO_KARPENTER = "left-to-karpenter"  # Settings.karpenter_nodes = rebalance-only


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: TaintEffect


@dataclass(frozen=True)
class Action:
    cordon: bool
    taints: tuple[Taint, ...]
    drain: bool
    # Set only while the instance is certainly going and its predicted end is still ahead: grace
    # periods are capped to it, and Settings.blocked_pod_policy may delete a pod past its PDB just
    # before it. None: every pod gets its own grace period and every PDB is respected.
    deadline: datetime.datetime | None
    # When the drain stops retrying and waiting; None: when the function must report.
    wait_until: datetime.datetime | None
    basis: Basis = Basis.EVENT
    # node.kubernetes.io/exclude-from-external-load-balancers, in the same patch as the cordon
    exclude_from_lb: bool = False
    restore: bool = False  # undo what this product added to the node (it came back)

    @property
    def is_noop(self) -> bool:
        return not (self.cordon or self.taints or self.drain or self.restore)

    @property
    def termination_certain(self) -> bool:
        return self.deadline is not None


def _no_action(basis: Basis) -> Action:
    return Action(cordon=False, taints=(), drain=False, deadline=None, wait_until=None, basis=basis)


def event_taint(event: InterruptionEvent, settings: Settings) -> Taint:
    """One taint key per event kind, so `kubectl describe node` says why the node is cordoned."""
    value = event.detail if _LABEL_VALUE.fullmatch(event.detail) else "true"
    return Taint(f"{TAINT_PREFIX}/{event.kind.value}", value, settings.taint_effect)


def ignores(event: InterruptionEvent) -> bool:
    """Events that need nothing at all, decided before any request is sent."""
    return event.kind in (EventKind.INSTANCE_PENDING, EventKind.INSTANCE_LAUNCHED)


def instance_opted_in(tags: dict[str, str], settings: Settings) -> bool:
    """Settings.managed_tag, as aws-node-termination-handler's check-tag-before-draining."""
    return not settings.managed_tag or settings.managed_tag in tags


def decide(event: InterruptionEvent, settings: Settings, presence: Presence, now: datetime.datetime) -> Action:
    """``presence``: what EC2's current state means (instance.presence); ``now``: timezone-aware."""
    if ignores(event):
        return _no_action(Basis.NOT_HANDLED)
    if event.kind in _BACK_KINDS:
        if presence is Presence.LIVE:
            return Action(False, (), False, None, None, basis=Basis.CAME_BACK, restore=True)
        return _no_action(Basis.OUTDATED)  # stopped again since
    if event.health is not None and event.health.closed and presence is Presence.LIVE:
        # the maintenance is over and the instance runs: nothing to drain, and what an earlier
        # status of the event did is undone (an operator's cordon stays); a gone one is still dead
        return Action(False, (), False, None, None, basis=Basis.MAINTENANCE_ENDED, restore=True)
    action = _decide(event, settings, presence, now)
    if settings.exclude_from_load_balancers and _pods_leave(action, presence):
        action = dataclasses.replace(action, exclude_from_lb=True)
    return action


def _pods_leave(action: Action, presence: Presence) -> bool:
    """Traffic should move off the node: its pods are drained, or die with the instance (gone, or
    hibernating). A cordon alone (a rebalance without drain) leaves them serving: no label."""
    return action.drain or presence is Presence.GONE or action.basis is Basis.HIBERNATE


def _decide(event: InterruptionEvent, settings: Settings, presence: Presence, now: datetime.datetime) -> Action:
    taint = event_taint(event, settings)
    if presence is Presence.GONE:
        taints = [taint]
        if settings.out_of_service_taint:
            taints.append(Taint(OUT_OF_SERVICE_KEY, "nodeshutdown", TaintEffect.NO_EXECUTE))
        basis = Basis.EVENT if event.kind in _GONE_KINDS else Basis.INSTANCE_GONE
        # the pods are already dead: evicting them would only wait for nothing
        return Action(True, tuple(taints), drain=False, deadline=None, wait_until=None, basis=basis)
    if event.kind is EventKind.CAPACITY_BLOCK_EXPIRY:
        return _capacity_block(event, taint, presence, now)
    if event.kind is EventKind.INSTANCE_IMPAIRED:
        # Not certain to go: EC2 may recover it, and this product never terminates an instance it
        # does not own. Off the schedule at once; drained only on request, and then gently (own
        # grace periods, every PDB respected). Out of service only once EC2 says it is gone (above).
        return Action(True, (taint,), settings.drain_on_impaired, deadline=None, wait_until=None)
    if event.kind in LONG_DRAIN_KINDS:
        ends = _ahead(event.ends_at, now) if event.ends_at else None
        basis = Basis.PAST_DEADLINE if event.ends_at and ends is None else Basis.EVENT
        return Action(True, (taint,), True, deadline=None, wait_until=ends, basis=basis)
    if event.kind is EventKind.REBALANCE_RECOMMENDATION:
        return _rebalance(event, settings, now, settings.drain_on_rebalance)
    if event.kind is EventKind.CAPACITY_RESERVATION_INTERRUPTION:
        expected_end = event.ends_at or event.time + SPOT_WARNING
        confirmed = True  # like a Spot warning, it arrives while the instance still runs
    elif event.kind is EventKind.SPOT_INTERRUPTION:
        if event.detail == "hibernate":
            # Hibernation begins with the notice: no drain can finish. Cordon and taint now; the
            # stopped state change that follows marks the node out of service.
            return Action(True, (taint,), drain=False, deadline=None, wait_until=None, basis=Basis.HIBERNATE)
        expected_end = event.time + SPOT_WARNING
        confirmed = True  # a Spot warning arrives while the instance still runs
    else:  # stopping, shutting-down, or stopped/terminated before EC2 reports it
        expected_end = event.time + datetime.timedelta(seconds=settings.state_change_drain_seconds)
        confirmed = presence is Presence.GOING
        if presence is Presence.LIVE and (event.kind in _GONE_KINDS or expected_end <= now):
            # Running again after the reported stop (a stop/start, or a replay): never
            # out-of-service, never a drain of a node that came back.
            return _no_action(Basis.OUTDATED)
    if expected_end > now and confirmed:
        return Action(True, (taint,), True, deadline=expected_end, wait_until=expected_end)
    # Still here past its predicted end, or EC2 does not confirm the event: drain gently.
    basis = Basis.PAST_DEADLINE if expected_end <= now else Basis.NOT_CONFIRMED
    return Action(True, (taint,), True, deadline=None, wait_until=None, basis=basis)


def capacity_block_terminates_at(event: InterruptionEvent) -> datetime.datetime:
    """When a Capacity Block's instances begin to terminate: 10 minutes after the warning, as its
    text says, and never later than 30 minutes before the end-date (the earlier of the two, so that
    a late or replayed warning does not move it, and a warning sent earlier than 40 minutes ahead
    does not shorten the gentle part)."""
    ends = event.ends_at or event.time + CAPACITY_BLOCK_NOTICE + CAPACITY_BLOCK_TERMINATION_LEAD
    return min(event.time + CAPACITY_BLOCK_NOTICE, ends - CAPACITY_BLOCK_TERMINATION_LEAD)


def _capacity_block(event: InterruptionEvent, taint: Taint, presence: Presence, now: datetime.datetime) -> Action:
    """Until the instances begin to terminate: pods' own grace periods, every PDB respected (the
    checkpointing minutes that GPU jobs need). From then, or once EC2 reports the instance going,
    the Spot rules with the end-date as the certain end; past the end-date, still live: gentle."""
    ends = event.ends_at or event.time + CAPACITY_BLOCK_NOTICE + CAPACITY_BLOCK_TERMINATION_LEAD
    if now >= ends:
        return Action(True, (taint,), True, deadline=None, wait_until=None, basis=Basis.PAST_DEADLINE)
    if now >= capacity_block_terminates_at(event) or presence is Presence.GOING:
        return Action(True, (taint,), True, deadline=ends, wait_until=ends)
    return Action(True, (taint,), True, deadline=None, wait_until=ends)


def long_drain_deadline(
    event: InterruptionEvent, now: datetime.datetime, reservation_ends: datetime.datetime | None = None
) -> datetime.datetime | None:
    """A long drain round's certain end, if it has one now: a Capacity Block's end-date once its
    instances have begun to terminate, unless EC2 now says the reservation ends later
    (``reservation_ends``: an extension paid after the warning; unknown: the event's end holds).
    The other long drains never cap grace (``LONG_DRAIN_KINDS``)."""
    if event.kind is not EventKind.CAPACITY_BLOCK_EXPIRY:
        return None
    if reservation_ends is not None and event.ends_at is not None and reservation_ends > event.ends_at:
        return None  # extended: not certain to go, so no capped grace and no PDB override
    return _capacity_block(event, Taint("", "", TaintEffect.NO_SCHEDULE), Presence.LIVE, now).deadline


def long_drain_turns_at(event: InterruptionEvent) -> datetime.datetime | None:
    """When a long drain's rules change mid-drain (a round ends there, so the next has the new
    rules): a Capacity Block's termination start."""
    return capacity_block_terminates_at(event) if event.kind is EventKind.CAPACITY_BLOCK_EXPIRY else None


def _rebalance(event: InterruptionEvent, settings: Settings, now: datetime.datetime, drain: bool) -> Action:
    """Not certain to go: never a capped grace period, never past a PDB, whatever the time."""
    wait_until = _ahead(event.time + datetime.timedelta(seconds=settings.rebalance_drain_seconds), now)
    taint = event_taint(event, settings)
    return Action(True, (taint,), drain, None, wait_until if drain else None)


def for_node(
    action: Action, event: InterruptionEvent, labels: dict[str, str], settings: Settings, now: datetime.datetime
) -> Action:
    """The second step, once the node is known: its labels (the user's per-node policy) and
    whether Karpenter manages it. Pure, like decide."""
    if action.restore:
        return action  # undoing our own changes is always welcome
    if labels.get(IGNORE_LABEL) == "true":
        return _no_action(Basis.OPTED_OUT)
    karpenter = KARPENTER_NODEPOOL_LABEL in labels
    if karpenter and settings.karpenter_nodes is KarpenterNodes.REBALANCE_ONLY and event.kind in _KARPENTER_HANDLES:
        return _no_action(Basis.LEFT_TO_KARPENTER)
    choice = labels.get(REBALANCE_LABEL)
    if event.kind is EventKind.REBALANCE_RECOMMENDATION and choice in REBALANCE_CHOICES:
        if choice == "ignore":
            return _no_action(Basis.NODE_LABEL)
        chosen = _rebalance(event, settings, now, drain=choice == "drain")
        excluded = settings.exclude_from_load_balancers and chosen.drain
        return dataclasses.replace(chosen, basis=Basis.NODE_LABEL, exclude_from_lb=excluded)
    return action


def drain_starts_at(event: InterruptionEvent, settings: Settings) -> datetime.datetime:
    """When a long drain begins: a scheduled change's start minus the lead time it needs (the node
    is cordoned at once, its pods stay until then); any other event's drain begins at once."""
    if event.kind is EventKind.SCHEDULED_CHANGE and event.ends_at is not None:
        return event.ends_at - datetime.timedelta(seconds=settings.scheduled_change_lead_seconds)
    return event.time


def _ahead(moment: datetime.datetime, now: datetime.datetime) -> datetime.datetime | None:
    return moment if moment > now else None


FIRST_PAUSE = 1.0  # seconds: the pause after a round that changed something, and the least one


def next_pause(previous: float, changed: bool, ceiling: float) -> float:
    """The pause before a long drain's next round: FIRST_PAUSE after a round that changed something
    on the node, else twice the previous one, up to ``ceiling`` (what a lifecycle drain's heartbeat
    interval leaves), never below FIRST_PAUSE. A round that changed nothing (a budget still refusing,
    the API server failing) is likely to change nothing soon, and each round costs operations in
    the execution's history."""
    if changed:
        return FIRST_PAUSE
    return max(FIRST_PAUSE, min(ceiling, 2 * previous))


def unfinished_drain_result(setting: UnfinishedDrainResult, group_retains: bool) -> str:
    """The LifecycleActionResult for a terminate action whose drain could not finish. ``auto``:
    ABANDON only where it keeps the instance (the group's instance lifecycle policy retains on
    TerminateHookAbandon), else CONTINUE, which terminates it as ABANDON would and lets the
    group's other terminate hooks run."""
    if setting is UnfinishedDrainResult.AUTO:
        return "ABANDON" if group_retains else "CONTINUE"
    return setting.value
