"""What the integration tests share: invoking a function with a sample event (optionally aged),
reading a node's state, and watching what the API server itself recorded for pods and PDBs."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch

from localeks.invoke import Invocation, invoke, restamp
from localeks.scenes import NodeScene, Scenes
from tests.eventfiles import load_event

SPOT = "SpotInterruptionFunction"
REBALANCE = "RebalanceRecommendationFunction"
STATE = "StateChangeFunction"
FUNCTION_OF = {
    "spot-interruption": SPOT,
    "capacity-reservation-interruption": SPOT,  # the interruption function takes both warnings
    "rebalance-recommendation": REBALANCE,
}


def aged_event(event_name: str, instance_id: str, age_seconds: float = 0, **detail: str) -> dict[str, Any]:
    event = load_event(event_name, instance_id=instance_id, now=True)
    if age_seconds:
        restamp(event, datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=age_seconds))
    event["detail"].update(detail)
    return event


def run(
    cluster_env: dict[str, str],
    event_name: str,
    instance_id: str,
    *,
    params: dict[str, str] | None = None,
    age_seconds: float = 0,
    event: dict[str, Any] | None = None,
) -> Invocation:
    if event is None:
        event = aged_event(event_name, instance_id, age_seconds)
    detail_type = event.get("detail-type", "")
    function = FUNCTION_OF.get(event_name) or {
        "EC2 Spot Instance Interruption Warning": SPOT,
        "EC2 Capacity Reservation Instance Interruption Warning": SPOT,
        "EC2 Instance Rebalance Recommendation": REBALANCE,
    }.get(detail_type, STATE)
    return invoke(function, event, cluster_env, params)


def under_two_budgets(scenes: Scenes, namespace: str, node_name: str, grace: int) -> list[str]:
    """Two pods of a Deployment on ``node_name`` that two PDBs select, each of which alone would
    allow the evictions: the Eviction API refuses such pods (500) for as long as both exist."""
    pods = scenes.deployment(namespace, "api", node_name, 2, grace=grace, pdb_max_unavailable=1)
    scenes.policy.create_namespaced_pod_disruption_budget(
        namespace,
        {"metadata": {"name": "api-too"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "api"}}}},
    )
    scenes.wait_pdbs(namespace)
    return pods


def node_state(scenes: Scenes, name: str) -> tuple[bool, dict[str, str]]:
    node = scenes.core.read_node(name)
    return bool(node.spec.unschedulable), {t.key: t.effect for t in node.spec.taints or []}


def pods_left(scenes: Scenes, scene: NodeScene) -> dict[str, bool]:
    """Pod name -> terminating, for the pods still bound to the scene's node."""
    return {p.metadata.name: p.metadata.deletion_timestamp is not None for p in scenes.pods_on(scene.node_name)}


def ec2_state(scenes: Scenes, instance_id: str) -> str:
    reply = scenes.ec2.describe_instances(InstanceIds=[instance_id])
    return str(reply["Reservations"][0]["Instances"][0]["State"]["Name"])


def wait_ec2_state(scenes: Scenes, instance_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while ec2_state(scenes, instance_id) != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{instance_id} did not reach {state}")
        time.sleep(0.2)


def wait_draining(scenes: Scenes, node_name: str, timeout: float = 60, settle: float = 1.0) -> None:
    """Returns once a drain of the node is under way: the node is cordoned (the drain lists its
    pods right after the cordon), then ``settle`` seconds for the first evictions to be answered.
    Instead of a fixed sleep, which an invocation slowed by a loaded machine can outlast."""
    deadline = time.monotonic() + timeout
    while not node_state(scenes, node_name)[0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node_name} was not cordoned within {timeout} s")
        time.sleep(0.1)
    time.sleep(settle)


def ready_by_app(pods: Iterable[Any]) -> dict[str, int]:
    """Per ``app`` label, the pods that are Ready and not being deleted (what a PDB counts)."""
    ready: dict[str, int] = {}
    for pod in pods:
        app = (pod.metadata.labels or {}).get("app")
        if app is None:
            continue
        ok = pod.metadata.deletion_timestamp is None and any(
            c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
        )
        ready[app] = ready.get(app, 0) + ok
    return ready


@dataclass
class PodRecord:
    """What the API server recorded when a pod's deletion began, and whether it was Ready."""

    deletion_grace: dict[str, int] = field(default_factory=dict)  # pod -> deletionGracePeriodSeconds
    deletion_seen_at: dict[str, float] = field(default_factory=dict)  # pod -> time.time() it was seen deleting
    min_ready: dict[str, int] = field(default_factory=dict)  # app label -> fewest Ready, not deleting


class PodWatcher:
    """Watches a namespace's pods while a handler runs: the grace period each deletion got on the
    server (not what the handler says it sent), and the fewest Ready pods per ``app`` label (the
    PDB invariant)."""

    def __init__(self, scenes: Scenes, namespace: str) -> None:
        self.scenes, self.namespace = scenes, namespace
        self.record = PodRecord()
        self._stop = threading.Event()
        self._pods: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodRecord:
        listing = self.scenes.core.list_namespaced_pod(self.namespace)
        for pod in listing.items:
            self._pods[pod.metadata.name] = pod
        self._update_ready()
        self._version = listing.metadata.resource_version
        self._thread.start()
        return self.record

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        w = watch.Watch()
        while not self._stop.is_set():
            for change in w.stream(
                self.scenes.core.list_namespaced_pod,
                self.namespace,
                resource_version=self._version,
                timeout_seconds=1,
            ):
                pod = change["object"]
                self._version = pod.metadata.resource_version
                name = pod.metadata.name
                if change["type"] == "DELETED":
                    self._pods.pop(name, None)
                else:
                    self._pods[name] = pod
                    grace = pod.metadata.deletion_grace_period_seconds
                    if pod.metadata.deletion_timestamp is not None and name not in self.record.deletion_grace:
                        self.record.deletion_grace[name] = int(grace if grace is not None else -1)
                        self.record.deletion_seen_at[name] = time.time()
                self._update_ready()
                if self._stop.is_set():
                    break

    def _update_ready(self) -> None:
        for app, count in ready_by_app(self._pods.values()).items():
            self.record.min_ready[app] = min(self.record.min_ready.get(app, count), count)
