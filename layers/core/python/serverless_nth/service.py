"""The sequence every function runs: decide, find the instance and its node, cordon, taint, drain,
then tell (metrics, logs, Kubernetes Events, an SNS notification).

It depends on small interfaces (Ec2Instances, EksAccess, KubeApi, Notifier) built once per
execution environment and reused while the function is warm.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from serverless_nth.aws.ec2 import Ec2Instances
from serverless_nth.aws.eks import EksAccess
from serverless_nth.aws.notify import Notifier
from serverless_nth.config import Settings
from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.kube.client import KubeApi
from serverless_nth.kube.drain import Drainer, DrainOptions, DrainResult, PodFate
from serverless_nth.kube.events import node_ref, pod_ref, record_event
from serverless_nth.kube.nodes import Node, cordon_and_taint, find_node
from serverless_nth.observability import Metric, logger, metrics, tracer
from serverless_nth.policy import Action, decide, ignores

# Kubernetes Event reasons, as a reader of `kubectl describe node` sees them
_REASONS = {
    EventKind.SPOT_INTERRUPTION: "SpotInterruptionWarning",
    EventKind.REBALANCE_RECOMMENDATION: "RebalanceRecommendation",
    EventKind.INSTANCE_STOPPING: "InstanceStopping",
    EventKind.INSTANCE_SHUTTING_DOWN: "InstanceShuttingDown",
    EventKind.INSTANCE_STOPPED: "InstanceStopped",
    EventKind.INSTANCE_TERMINATED: "InstanceTerminated",
}
_DESCRIPTIONS = {
    EventKind.SPOT_INTERRUPTION: "EC2 Spot interruption warning",
    EventKind.REBALANCE_RECOMMENDATION: "EC2 rebalance recommendation",
    EventKind.INSTANCE_STOPPING: "EC2 instance stopping",
    EventKind.INSTANCE_SHUTTING_DOWN: "EC2 instance shutting down",
    EventKind.INSTANCE_STOPPED: "EC2 instance stopped",
    EventKind.INSTANCE_TERMINATED: "EC2 instance terminated",
}


class Outcome:
    IGNORED = "ignored"  # pending / running: nothing to do
    OUTDATED = "outdated"  # EC2 has left the reported state behind (a late, retried or replayed event)
    INSTANCE_NOT_FOUND = "instance-not-found"
    NOT_THIS_CLUSTER = "not-this-cluster"
    NODE_NOT_FOUND = "node-not-found"
    CORDONED = "cordoned"  # cordoned and tainted, no drain asked for
    DRAINED = "drained"
    DRAIN_INCOMPLETE = "drain-incomplete"
    DRY_RUN = "dry-run"
    # set by the entry point
    MALFORMED = "malformed"
    ERROR = "error"


@dataclass
class HandlerResult:
    outcome: str
    event_kind: str
    instance_id: str
    cluster: str
    node: str | None = None
    dry_run: bool = False
    instance_state: str | None = None  # EC2's State.Name when the event was handled
    basis: str | None = None  # why the action is what it is (policy.Basis)
    cordoned: bool = False
    taints_added: list[str] = field(default_factory=list)
    drain: dict[str, Any] | None = None
    api_requests: int = 0  # Kubernetes API requests this event cost
    # AWS and Kubernetes requests from the handler's start until the node was cordoned (the
    # latency that matters most), and the seconds that took
    requests_to_cordon: int | None = None
    cordoned_after_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Service:
    def __init__(
        self,
        settings: Settings,
        instances: Ec2Instances,
        eks: EksAccess,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.instances = instances
        self.eks = eks
        self.notifier = notifier or Notifier("", None)
        self.clock = clock
        self._kube: KubeApi | None = None

    def kube(self) -> KubeApi:
        """The API client, made on first use and kept while the function is warm."""
        if self._kube is None:
            endpoint = self.eks.endpoint()
            self._kube = KubeApi(
                endpoint.endpoint,
                endpoint.ca_pem,
                self.eks.token,
                self.eks.forget_token,
                timeout_seconds=self.settings.request_timeout_seconds,
                pool_size=self.settings.eviction_concurrency,
            )
        return self._kube

    def forget_connections(self) -> None:
        """After a SnapStart restore: token, cluster data and connections are made anew."""
        self.eks.forget_all()
        self._kube = None

    def handle(self, event: InterruptionEvent, stop_by: float | None = None) -> HandlerResult:
        """``stop_by``: time.time() by which the result must be returned (the invocation's end)."""
        logger.append_keys(
            cluster=self.settings.cluster_name, instance_id=event.instance_id, event_kind=event.kind.value
        )
        metrics.add_dimension("event_kind", event.kind.value)
        metrics.add_metric(name=Metric.EVENTS_RECEIVED, unit=MetricUnit.Count, value=1)
        result = self._handle(event, stop_by)
        metrics.add_dimension("outcome", result.outcome)
        if result.node is not None and not result.dry_run:
            self._notify(event, result)
        return result

    def _handle(self, event: InterruptionEvent, stop_by: float | None) -> HandlerResult:
        started = self.clock()
        kube_before = self._kube.requests_sent if self._kube else 0
        aws_before = self.instances.requests_sent + self.eks.requests_sent
        settings = self.settings
        result = HandlerResult(
            Outcome.IGNORED, event.kind.value, event.instance_id, settings.cluster_name, dry_run=settings.dry_run
        )
        if ignores(event):
            return self._quiet(result, Outcome.IGNORED, Metric.EVENTS_IGNORED, "no action for this event")

        with tracer.provider.in_subsegment("DescribeInstances"):
            instance = self.instances.describe(event.instance_id)
        if instance is None:
            return self._quiet(
                result, Outcome.INSTANCE_NOT_FOUND, Metric.INSTANCE_NOT_FOUND, "EC2 does not know this instance"
            )
        clusters = instance.cluster_names()
        if clusters and settings.cluster_name not in clusters:
            why = f"the instance belongs to {', '.join(sorted(clusters))}"
            return self._quiet(result, Outcome.NOT_THIS_CLUSTER, Metric.NOT_THIS_CLUSTER, why)
        action = decide(event, settings, instance.presence, datetime.datetime.fromtimestamp(started, datetime.UTC))
        result.instance_state, result.basis = instance.state, action.basis.value
        logger.append_keys(instance_state=instance.state, basis=action.basis.value)
        if action.is_noop:
            why = f"EC2 says the instance is {instance.state}: the {event.kind.value} event no longer holds"
            return self._quiet(result, Outcome.OUTDATED, Metric.EVENTS_OUTDATED, why)
        api = self.kube()
        with tracer.provider.in_subsegment("NodeLookup"):
            node = find_node(api, instance)
        if node is None:
            result.api_requests = api.requests_sent - kube_before
            return self._quiet(
                result, Outcome.NODE_NOT_FOUND, Metric.NODE_NOT_FOUND, "no node of this cluster is this instance"
            )
        result.node = node.name
        logger.append_keys(node=node.name)

        self._cordon(api, event, action, node, result)
        result.cordoned_after_seconds = round(self.clock() - started, 4)
        result.requests_to_cordon = (
            api.requests_sent - kube_before + self.instances.requests_sent + self.eks.requests_sent - aws_before
        )
        if not settings.dry_run:
            self._record_cordon(api, event, action, node, instance.state)
        if action.drain:
            self._drain(api, event, action, node, result, started, stop_by)
        result.api_requests = api.requests_sent - kube_before
        return result

    def _cordon(
        self, api: KubeApi, event: InterruptionEvent, action: Action, node: Node, result: HandlerResult
    ) -> None:
        dry_run = self.settings.dry_run
        with tracer.provider.in_subsegment("Cordon"):
            cordon = cordon_and_taint(api, node, action.taints, dry_run)
        result.cordoned, result.taints_added = cordon.cordoned, list(cordon.taints_added)
        result.outcome = Outcome.DRY_RUN if dry_run else Outcome.CORDONED
        logger.info(
            "dry run: would cordon and taint" if dry_run else "node cordoned and tainted",
            extra={"outcome": result.outcome, "cordoned": cordon.cordoned, "taints_added": list(cordon.taints_added)},
        )
        if dry_run:
            return
        if cordon.cordoned:
            metrics.add_metric(name=Metric.NODES_CORDONED, unit=MetricUnit.Count, value=1)
            latency = max(0.0, self.clock() - event.time.timestamp())
            metrics.add_metric(name=Metric.EVENT_TO_CORDON_LATENCY, unit=MetricUnit.Seconds, value=latency)
        if cordon.taints_added:
            metrics.add_metric(name=Metric.NODES_TAINTED, unit=MetricUnit.Count, value=1)

    def _record_cordon(
        self, api: KubeApi, event: InterruptionEvent, action: Action, node: Node, instance_state: str
    ) -> None:
        until = ""
        if action.drain:
            until = "; draining"
            until += f" until {action.wait_until:%H:%M:%S}Z" if action.wait_until else ""
            until += "" if action.deadline else " with every pod's own grace period and PDBs respected"
        if action.basis.value != "event":
            until += f" (EC2 says {instance_state}: {action.basis.value})"
        record_event(
            api,
            node_ref(node.name, node.uid),
            event.event_id,
            _REASONS[event.kind],
            f"{_DESCRIPTIONS[event.kind]} for {event.instance_id} at {event.time:%H:%M:%S}Z: cordoned, "
            f"tainted {', '.join(t.key for t in action.taints)}{until}",
        )

    def _drain(
        self,
        api: KubeApi,
        event: InterruptionEvent,
        action: Action,
        node: Node,
        result: HandlerResult,
        started: float,
        stop_by: float | None,
    ) -> None:
        settings = self.settings
        ends = [t for t in (stop_by, action.wait_until.timestamp() if action.wait_until else None) if t is not None]
        options = DrainOptions(
            deadline=action.deadline.timestamp() if action.deadline else None,
            stop_by=min(ends, default=float("inf")),
            margin_seconds=settings.deadline_margin_seconds,
            concurrency=settings.eviction_concurrency,
            blocked_pod_policy=settings.blocked_pod_policy,
            poll_interval_seconds=settings.poll_interval_seconds,
            dry_run=settings.dry_run,
        )
        drain_started_after = self.clock() - started
        with tracer.provider.in_subsegment("Drain"):
            drain = Drainer(api, options, log=lambda msg, **kw: logger.info(msg, extra=kw), clock=self.clock).drain(
                node.name
            )
        result.drain = {
            "started_after_seconds": round(drain_started_after, 4),
            "pods": {ref: fate.value for ref, fate in sorted(drain.pods.items())},
            "evicted": drain.count(PodFate.EVICTED),
            "deleted_past_pdb": drain.count(PodFate.DELETED_PAST_PDB),
            "blocked": drain.count(PodFate.BLOCKED) + drain.count(PodFate.WOULD_BLOCK),
            "failed": drain.count(PodFate.FAILED),
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
        if not settings.dry_run:
            result.outcome = Outcome.DRAINED if drain.completed else Outcome.DRAIN_INCOMPLETE
            self._drain_metrics(drain)
            self._drain_events(api, event, node, drain)
        logger.info(
            "drain finished" if drain.completed else "drain ended",
            extra={"outcome": result.outcome, "drain": result.drain},
        )

    def _drain_events(self, api: KubeApi, event: InterruptionEvent, node: Node, drain: DrainResult) -> None:
        """An Event on every pod evicted or deleted, then one on the node with the result."""
        why = f"{_DESCRIPTIONS[event.kind]} for {event.instance_id}"

        def on_pod(removed: tuple[Any, PodFate, int]) -> None:
            pod, fate, grace = removed
            reason = "Evicted" if fate is PodFate.EVICTED else "DeletedPastDisruptionBudget"
            note = f"{reason} by serverless-nth from node {node.name} ({why}); grace period {grace} s"
            record_event(api, pod_ref(pod.namespace, pod.name, pod.uid), event.event_id, reason, note)

        if drain.removed:
            with ThreadPoolExecutor(max_workers=min(self.settings.eviction_concurrency, len(drain.removed))) as pool:
                list(pool.map(on_pod, drain.removed))
        summary = (
            f"{drain.count(PodFate.EVICTED)} pods evicted, "
            f"{drain.count(PodFate.DELETED_PAST_PDB)} deleted past their PDB at the deadline, "
            f"{len(drain.remaining)} remaining, in {drain.duration_seconds:.1f} s"
        )
        if drain.remaining:
            summary += f": {', '.join(drain.remaining[:10])}"
        reason = "DrainCompleted" if drain.completed else "DrainIncomplete"
        record_event(api, node_ref(node.name, node.uid), event.event_id, reason, summary, warning=not drain.completed)

    def _drain_metrics(self, drain: DrainResult) -> None:
        def count(name: str, value: float) -> None:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)

        count(Metric.NODES_DRAINED if drain.completed else Metric.DRAINS_INCOMPLETE, 1)
        count(Metric.PODS_EVICTED, drain.count(PodFate.EVICTED))
        count(Metric.PODS_DELETED_PAST_PDB, drain.count(PodFate.DELETED_PAST_PDB))
        count(Metric.EVICTIONS_REFUSED_BY_PDB, drain.pdb_refusals)
        count(Metric.PODS_REMAINING_AT_DEADLINE, len(drain.remaining))
        count(Metric.PODS_WITH_LOCAL_DATA, drain.emptydir_pods)
        count(Metric.PODS_WITHOUT_CONTROLLER, drain.unmanaged_pods)
        metrics.add_metric(name=Metric.DRAIN_DURATION, unit=MetricUnit.Seconds, value=drain.duration_seconds)

    def _notify(self, event: InterruptionEvent, result: HandlerResult) -> None:
        drain = result.drain or {}
        message = {
            "cluster": result.cluster,
            "node": result.node,
            "instance_id": result.instance_id,
            "event_kind": result.event_kind,
            "event_id": event.event_id,
            "outcome": result.outcome,
            "taints_added": result.taints_added,
            "evicted": drain.get("evicted", 0),
            "deleted_past_pdb": drain.get("deleted_past_pdb", 0),
            "remaining": drain.get("remaining", []),
            "drain_seconds": drain.get("duration_seconds"),
        }
        error = self.notifier.publish(
            f"[{result.cluster}] {result.node}: {result.event_kind} -> {result.outcome}", message
        )
        if error:
            metrics.add_metric(name=Metric.NOTIFICATIONS_FAILED, unit=MetricUnit.Count, value=1)
            logger.warning("notification not sent", extra={"reason": error})

    @staticmethod
    def _quiet(result: HandlerResult, outcome: str, metric: str, why: str) -> HandlerResult:
        result.outcome = outcome
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
        logger.info(f"nothing to do: {why}", extra={"outcome": outcome})
        return result
