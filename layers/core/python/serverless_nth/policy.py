"""Which event does what: pure functions of the event and the settings (table-tested)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from serverless_nth.config import Settings, TaintEffect
from serverless_nth.events.model import EventKind, InterruptionEvent

SPOT_WARNING = datetime.timedelta(seconds=120)
TAINT_PREFIX = "serverless-nth"
# Kubernetes' own taint for a node that is shut down: the pod GC force-deletes its pods and
# detaches their volumes at once, instead of after the ~6 minute unreachable timeout.
OUT_OF_SERVICE_KEY = "node.kubernetes.io/out-of-service"


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
    # The instance will certainly go away: a pod still blocked by a PDB when only its grace period
    # is left is handled by Settings.blocked_pod_policy.
    termination_certain: bool
    deadline: datetime.datetime | None

    @property
    def is_noop(self) -> bool:
        return not (self.cordon or self.taints or self.drain)


NO_ACTION = Action(cordon=False, taints=(), drain=False, termination_certain=False, deadline=None)


def event_taint(event: InterruptionEvent, settings: Settings) -> Taint:
    """One taint key per event kind, so `kubectl describe node` says why the node is cordoned."""
    return Taint(f"{TAINT_PREFIX}/{event.kind.value}", event.detail or "true", settings.taint_effect)


def decide(event: InterruptionEvent, settings: Settings) -> Action:
    kind = event.kind
    if kind in (EventKind.INSTANCE_PENDING, EventKind.INSTANCE_RUNNING):
        return NO_ACTION
    taint = event_taint(event, settings)
    if kind is EventKind.SPOT_INTERRUPTION:
        return Action(True, (taint,), True, True, event.time + SPOT_WARNING)
    if kind is EventKind.REBALANCE_RECOMMENDATION:
        drain = settings.drain_on_rebalance
        deadline = event.time + datetime.timedelta(seconds=settings.rebalance_drain_seconds)
        return Action(True, (taint,), drain, False, deadline if drain else None)
    if kind in (EventKind.INSTANCE_STOPPING, EventKind.INSTANCE_SHUTTING_DOWN):
        deadline = event.time + datetime.timedelta(seconds=settings.state_change_drain_seconds)
        return Action(True, (taint,), True, True, deadline)
    # stopped / terminated: the pods are already dead; evicting them would only wait for nothing.
    taints = [taint]
    if settings.out_of_service_taint:
        taints.append(Taint(OUT_OF_SERVICE_KEY, "nodeshutdown", TaintEffect.NO_EXECUTE))
    return Action(True, tuple(taints), False, True, event.time)
