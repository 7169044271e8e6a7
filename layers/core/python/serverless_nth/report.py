"""Telling what happened, beside the sequence (service.py): the result an invocation returns,
metrics, Kubernetes Events on the node and its pods, and the SNS notification."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from serverless_nth.aws.notify import Notifier
from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.kube.client import KubeApi
from serverless_nth.kube.cordon import LB_EXCLUSION_LABEL
from serverless_nth.kube.drain import DrainResult
from serverless_nth.kube.events import node_ref, pod_ref, record_event
from serverless_nth.kube.evict import PodFate
from serverless_nth.kube.nodes import LB_EXCLUDED_BY_ANNOTATION, Node
from serverless_nth.observability import Metric, logger, metrics
from serverless_nth.policy import TAINT_PREFIX, Action, Basis

# Kubernetes Event reasons, as a reader of `kubectl describe node` sees them
REASONS = {
    EventKind.SPOT_INTERRUPTION: "SpotInterruptionWarning",
    EventKind.CAPACITY_RESERVATION_INTERRUPTION: "CapacityReservationInterruptionWarning",
    EventKind.INSTANCE_RUNNING: "InstanceRunning",
    EventKind.REBALANCE_RECOMMENDATION: "RebalanceRecommendation",
    EventKind.INSTANCE_STOPPING: "InstanceStopping",
    EventKind.INSTANCE_SHUTTING_DOWN: "InstanceShuttingDown",
    EventKind.INSTANCE_STOPPED: "InstanceStopped",
    EventKind.INSTANCE_TERMINATED: "InstanceTerminated",
    EventKind.ASG_TERMINATING: "AutoScalingTerminating",
    EventKind.SCHEDULED_CHANGE: "ScheduledChange",
    EventKind.CAPACITY_BLOCK_EXPIRY: "CapacityBlockExpiry",
    EventKind.INSTANCE_IMPAIRED: "InstanceImpaired",
    EventKind.WARM_POOL_RETURN: "WarmPoolReturn",
}
DESCRIPTIONS = {
    EventKind.SPOT_INTERRUPTION: "EC2 Spot interruption warning",
    EventKind.CAPACITY_RESERVATION_INTERRUPTION: "EC2 Capacity Reservation interruption warning",
    EventKind.INSTANCE_RUNNING: "EC2 instance running again",
    EventKind.REBALANCE_RECOMMENDATION: "EC2 rebalance recommendation",
    EventKind.INSTANCE_STOPPING: "EC2 instance stopping",
    EventKind.INSTANCE_SHUTTING_DOWN: "EC2 instance shutting down",
    EventKind.INSTANCE_STOPPED: "EC2 instance stopped",
    EventKind.INSTANCE_TERMINATED: "EC2 instance terminated",
    EventKind.ASG_TERMINATING: "Auto Scaling terminate lifecycle action",
    EventKind.SCHEDULED_CHANGE: "AWS Health scheduled change",
    EventKind.CAPACITY_BLOCK_EXPIRY: "EC2 Capacity Block expiration warning",
    EventKind.INSTANCE_IMPAIRED: "EC2 status check failed (instance-status backstop)",
    EventKind.WARM_POOL_RETURN: "Auto Scaling launch from the warm pool",
}


class Outcome:
    IGNORED = "ignored"  # pending / running: nothing to do
    OUTDATED = "outdated"  # EC2 has left the reported state behind (a late, retried or replayed event)
    OTHER_ACCOUNT = "other-account"  # the event names another account or region than the function's
    NOT_MANAGED = "not-managed"  # the instance lacks the ManagedTag
    OPTED_OUT = "opted-out"  # the node's labels say: leave it alone (for this event)
    LEFT_TO_KARPENTER = "left-to-karpenter"  # KarpenterNodes=rebalance-only on a Karpenter node
    RESTORED = "restored"  # running again: what this product added was undone
    INSTANCE_NOT_FOUND = "instance-not-found"
    NOT_THIS_CLUSTER = "not-this-cluster"
    NODE_NOT_FOUND = "node-not-found"
    # a node has the instance's name but no providerID yet: nothing proves it is this instance
    IDENTITY_UNPROVEN = "identity-unproven"
    CORDONED = "cordoned"  # cordoned and tainted, no drain asked for
    DRAINED = "drained"
    DRAIN_INCOMPLETE = "drain-incomplete"
    DRY_RUN = "dry-run"
    # long drains (durable executions)
    DUPLICATE = "duplicate"  # another execution of the same event drains the node
    HELD_BY_ANOTHER_EVENT = "held-by-another-event"  # another event's execution drains the node
    SUPERSEDED = "superseded"  # a newer status or window of the same Health event drives the drain
    MARKS_REMOVED = "marks-removed"  # our taint left the node (a return to running, a closed event, an operator)
    HANDED_BACK = "handed-back"  # rebooted by a maintenance, running, Ready: our marks undone
    INSTANCE_RESTARTED = "instance-restarted"  # stopped and started since the event: not the run it named
    NOT_AN_INSTANCE = "not-an-instance"  # a Health event's entity that is no EC2 instance: left out
    NOT_OUR_HOOK = "not-our-hook"  # a lifecycle hook of another owner: never completed by us
    HOOK_NOT_FOUND = "hook-not-found"  # the group has no such hook (any more): nothing to complete
    ACTION_ENDED = "action-ended"  # the lifecycle action expired or was completed elsewhere
    ACTION_COMPLETED = "action-completed"  # CONTINUE sent: the group goes on
    # set by the entry point
    MALFORMED = "malformed"
    ERROR = "error"


@dataclass
class HandlerResult:
    outcome: str
    event_kind: str
    instance_id: str
    cluster: str
    account: str | None = None  # the event's (a member's, in a deployment of many accounts)
    node: str | None = None
    dry_run: bool = False
    instance_state: str | None = None  # EC2's State.Name when the event was handled
    basis: str | None = None  # why the action is what it is (policy.Basis)
    cordoned: bool = False  # this invocation set spec.unschedulable
    node_unschedulable: bool = False  # the node is cordoned now, by whoever
    # this event cordoned it, in this invocation or an earlier one whose answer was lost
    cordoned_by_this_event: bool = False
    taints_added: list[str] = field(default_factory=list)
    lb_excluded: bool = False  # this invocation set the load-balancer exclusion label
    undone: list[str] = field(default_factory=list)  # what a return to running undid
    drain: dict[str, Any] | None = None
    api_requests: int = 0  # Kubernetes API requests this event cost
    seconds: float = 0.0  # from the handler's start to its result
    # AWS and Kubernetes requests from the handler's start until the node was cordoned (the
    # latency that matters most), and the seconds that took
    requests_to_cordon: int | None = None
    cordoned_after_seconds: float | None = None
    # a drain is due but left to the caller (Service.handle(drain=False): a long drain in rounds)
    drain_due: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def quiet(result: HandlerResult, outcome: str, metric: str, why: str) -> HandlerResult:
    """A normal no-op: one metric, one log line, nothing to retry."""
    result.outcome = outcome
    count(metric)
    logger.info(f"nothing to do: {why}", extra={"outcome": outcome})
    return result


def cordon_event(api: KubeApi, event: InterruptionEvent, action: Action, node: Node, instance_state: str) -> None:
    """The Event on the node that says why it is cordoned, and what comes next."""
    until = ""
    if action.drain:
        until = "; draining"
        until += f" until {action.wait_until:%H:%M:%S}Z" if action.wait_until else ""
        until += "" if action.deadline else " with every pod's own grace period and PDBs respected"
    if action.basis is not Basis.EVENT:
        until += f" (EC2 says {instance_state}: {action.basis.value})"
    record_event(
        api,
        node_ref(node.name, node.uid),
        event.event_id,
        REASONS[event.kind],
        f"{DESCRIPTIONS[event.kind]} for {event.instance_id} at {event.time:%H:%M:%S}Z: cordoned, "
        f"tainted {', '.join(t.key for t in action.taints)}{until}",
    )


def restore_event(api: KubeApi, event: InterruptionEvent, node: Node, undone: tuple[str, ...]) -> None:
    record_event(
        api,
        node_ref(node.name, node.uid),
        event.event_id,
        REASONS[event.kind],
        f"{DESCRIPTIONS[event.kind]} ({event.instance_id}): undid {', '.join(undone)}",
    )


# the Event on a pod this product removed, by how
POD_EVENT_REASONS = {
    PodFate.EVICTED: "Evicted",
    PodFate.DELETED_PAST_PDB: "DeletedPastDisruptionBudget",
    PodFate.DELETED_AT_END: "DeletedBeforeInstanceEnd",
}


def uncordoned_by_other(api: KubeApi, event: InterruptionEvent, node: Node) -> None:
    """Our cordon was removed by someone else (``kubectl uncordon``, another tool) while our taints,
    label or records stay: a Warning Event on the node and a metric, once per event (the Event's
    name comes from the event id), so a half-handed-back node is not left in silence."""
    left = [str(t.get("key")) for t in node.taints if str(t.get("key", "")).startswith(f"{TAINT_PREFIX}/")]
    if LB_EXCLUDED_BY_ANNOTATION in node.annotations and LB_EXCLUSION_LABEL in node.labels:
        left.append(f"label {LB_EXCLUSION_LABEL}")
    note = (
        f"serverless-nth cordoned this node (event {node.cordoned_by}) and someone uncordoned it since; "
        f"still on it: {', '.join(left) or 'only the serverless-nth/* annotations'}. "
        "To hand the node back, remove those too (README, 'Handing a node back'); "
        f"this {DESCRIPTIONS[event.kind]} is handled as usual"
    )
    if record_event(api, node_ref(node.name, node.uid), event.event_id, "UncordonedByOther", note, warning=True):
        count(Metric.NODES_UNCORDONED_BY_OTHERS)
        logger.warning("our cordon was removed by someone else", extra={"cordoned_by": node.cordoned_by, "left": left})


def drain_summary(drain: DrainResult, started_after: float) -> dict[str, Any]:
    return {
        "started_after_seconds": round(started_after, 4),
        "pods": {ref: fate.value for ref, fate in sorted(drain.pods.items())},
        "evicted": drain.count(PodFate.EVICTED),
        "deleted_past_pdb": drain.count(PodFate.DELETED_PAST_PDB),
        "deleted_at_end": drain.count(PodFate.DELETED_AT_END),
        "already_terminating": drain.count(PodFate.ALREADY_TERMINATING),
        "namespace_terminating": drain.count(PodFate.NAMESPACE_TERMINATING),
        "stuck_terminating": drain.count(PodFate.STUCK_TERMINATING),
        "blocked": drain.count(PodFate.BLOCKED) + drain.count(PodFate.WOULD_BLOCK),
        "failed": drain.count(PodFate.FAILED),
        "multiple_pdbs": drain.count(PodFate.MULTIPLE_PDBS),
        "critical_held": drain.count(PodFate.CRITICAL_HELD),
        "critical_after_seconds": None
        if drain.critical_after_seconds is None
        else round(drain.critical_after_seconds, 3),
        "skipped": drain.skipped,
        "remaining": drain.remaining,
        "pdb_refusals": drain.pdb_refusals,
        "grace_capped": drain.grace_capped,
        "evictions_sent_seconds": round(drain.evictions_sent_seconds, 3),
        "evictions_answered_seconds": round(drain.evictions_answered_seconds, 3),
        "duration_seconds": round(drain.duration_seconds, 3),
        "completed": drain.completed,
        "errors": drain.errors[:20],
    }


def drain_events(
    api: KubeApi, event: InterruptionEvent, node: Node, drain: DrainResult, concurrency: int, summary: bool = True
) -> None:
    """An Event on every pod evicted or deleted, then (``summary``) one on the node with the result."""
    why = f"{DESCRIPTIONS[event.kind]} for {event.instance_id}"

    def on_pod(removed: tuple[Any, PodFate, int]) -> None:
        pod, fate, grace = removed
        reason = POD_EVENT_REASONS[fate]
        note = f"{reason} by serverless-nth from node {node.name} ({why}); grace period {grace} s"
        record_event(api, pod_ref(pod.namespace, pod.name, pod.uid), event.event_id, reason, note)

    def several_budgets(pod: Any) -> None:
        note = (
            f"Not evicted by serverless-nth from node {node.name} ({why}): more than one PodDisruptionBudget "
            "selects this pod, and the Eviction API refuses such a pod; it stays until one of them goes"
        )
        record_event(
            api,
            pod_ref(pod.namespace, pod.name, pod.uid),
            event.event_id,
            "MultiplePodDisruptionBudgets",
            note,
            warning=True,
        )

    if drain.removed:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(drain.removed))) as pool:
            list(pool.map(on_pod, drain.removed))
    for pod in drain.several_budgets:
        several_budgets(pod)
    if not summary:
        return
    text = (
        f"{drain.count(PodFate.EVICTED)} pods evicted, "
        f"{drain.count(PodFate.DELETED_PAST_PDB)} deleted past their PDB at the deadline, "
        f"{len(drain.remaining)} remaining, in {drain.duration_seconds:.1f} s"
    )
    if drain.remaining:
        text += f": {', '.join(drain.remaining[:10])}"
    stuck = [ref for ref, fate in drain.pods.items() if fate is PodFate.STUCK_TERMINATING]
    if stuck:
        text += f"; not waited for (deletion stuck): {', '.join(sorted(stuck)[:10])}"
    failed = drain.count(PodFate.FAILED)
    if failed:
        text += f"; {failed} not evicted because of errors (the event is retried)"
    reason = "DrainCompleted" if drain.completed else "DrainIncomplete"
    record_event(api, node_ref(node.name, node.uid), event.event_id, reason, text, warning=not drain.completed)


def long_drain_finished(api: KubeApi, event: InterruptionEvent, node: Node, remaining: list[str], rounds: int) -> None:
    """The node's Event at the end of a long drain (its rounds told only pod Events)."""
    why = f"{DESCRIPTIONS[event.kind]} for {event.instance_id}"
    text = f"{why}: drained in {rounds} rounds" if not remaining else f"{why}: {len(remaining)} pods remaining"
    if remaining:
        text += f" after {rounds} rounds: {', '.join(remaining[:10])}"
    reason = "DrainIncomplete" if remaining else "DrainCompleted"
    record_event(api, node_ref(node.name, node.uid), event.event_id, reason, text, warning=bool(remaining))


def volumes_still_attached(api: KubeApi, event: InterruptionEvent, node: Node, attached: list[str]) -> None:
    """What was still attached when the instance was let go: a Warning Event on the node and a log
    line; the next pod to use one of these volumes may wait for a forced detach."""
    note = f"{DESCRIPTIONS[event.kind]} for {event.instance_id}: still attached: {', '.join(attached[:10])}"
    record_event(api, node_ref(node.name, node.uid), event.event_id, "VolumesStillAttached", note, warning=True)
    logger.warning("volumes still attached to the node", extra={"attached": attached, "node": node.name})


def drain_metrics(drain: DrainResult) -> None:
    count(Metric.NODES_DRAINED if drain.completed else Metric.DRAINS_INCOMPLETE)
    drain_round_metrics(drain)
    metrics.add_metric(name=Metric.DRAIN_DURATION, unit=MetricUnit.Seconds, value=drain.duration_seconds)


def drain_round_metrics(drain: DrainResult) -> None:
    """What one drain, or one round of a long drain, did to pods."""
    count(Metric.PODS_EVICTED, drain.count(PodFate.EVICTED))
    count(Metric.PODS_DELETED_PAST_PDB, drain.count(PodFate.DELETED_PAST_PDB))
    count(Metric.EVICTIONS_REFUSED_BY_PDB, drain.pdb_refusals)
    count(Metric.PODS_REMAINING_AT_DEADLINE, len(drain.remaining))
    count(Metric.PODS_WITH_LOCAL_DATA, drain.emptydir_pods)
    count(Metric.PODS_WITHOUT_CONTROLLER, drain.unmanaged_pods)
    count(Metric.PODS_STUCK_TERMINATING, drain.count(PodFate.STUCK_TERMINATING))
    count(
        Metric.PODS_IN_TERMINATING_NAMESPACE,
        drain.count(PodFate.NAMESPACE_TERMINATING) + drain.count(PodFate.DELETED_AT_END),
    )
    count(Metric.PODS_WITH_MULTIPLE_PDBS, drain.count(PodFate.MULTIPLE_PDBS))


def notify(notifier: Notifier, event: InterruptionEvent, result: HandlerResult) -> None:
    drain = result.drain or {}
    message = {
        "cluster": result.cluster,
        "account": result.account,
        "node": result.node,
        "instance_id": result.instance_id,
        "event_kind": result.event_kind,
        "event_id": event.event_id,
        "outcome": result.outcome,
        "instance_state": result.instance_state,
        "basis": result.basis,
        "taints_added": result.taints_added,
        "evicted": drain.get("evicted", 0),
        "deleted_past_pdb": drain.get("deleted_past_pdb", 0),
        "remaining": drain.get("remaining", []),
        "drain_seconds": drain.get("duration_seconds"),
    }
    error = notifier.publish(f"[{result.cluster}] {result.node}: {result.event_kind} -> {result.outcome}", message)
    if error:
        count(Metric.NOTIFICATIONS_FAILED)
        logger.warning("notification not sent", extra={"reason": error})
