"""What the reliability tests share: the functions invoked through the fault proxies, scenes of
pods under a PodDisruptionBudget, a watcher of what the API server recorded, and the invariants
every fault must leave intact."""

from __future__ import annotations

import calendar
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from localeks.dashboard import read_emf
from localeks.faults import AwsFaultProxy, KubeFaultProxy, function_env
from localeks.invoke import Invocation, invoke
from localeks.scenes import NodeScene, Scenes
from tests.eventfiles import load_event
from tests.integration.support import ready_by_app

SPOT = "SpotInterruptionFunction"
SPOT_WARNING_SECONDS = 120
# fates after which nothing of the pod is left for the drain to do
DONE = {
    "evicted",
    "gone",
    "deleted-past-pdb",
    "deleted-at-end",
    "already-terminating",
    "namespace-terminating",
    "stuck-terminating",
}


@dataclass
class Faults:
    kube: KubeFaultProxy
    aws: AwsFaultProxy

    def invoke(
        self,
        cluster_env: dict[str, str],
        event: dict[str, Any],
        function: str = SPOT,
        params: dict[str, str] | None = None,
        direct: bool = False,
        env: dict[str, str] | None = None,
    ) -> Invocation:
        """Runs the function as Lambda would; its EC2, EKS and Auto Scaling calls (and so its
        Kubernetes requests) go through the proxies unless ``direct``; ``env`` is added to its
        environment (the local runner's, e.g. LOCALEKS_DURABLE_REAL_TIME)."""
        overrides = {} if direct else function_env(self.aws)
        return invoke(function, event, cluster_env, params, env_overrides={**overrides, **(env or {})})

    def deletes_served(self) -> set[str]:
        """The pods whose DELETE (not an eviction: past the PDB) reached the API server, whether
        or not its answer reached the function."""
        return {
            s.path.rsplit("/", 1)[1]
            for s in self.kube.requests("DELETE", r"/pods/[^/]+$")
            if s.fault in (None, "lost-answer", "not-json", "stall-answer")
        }


def spot_event(instance_id: str, age_seconds: float = 0) -> dict[str, Any]:
    """A Spot interruption warning sent ``age_seconds`` ago: its deadline is 120 s after that."""
    event = load_event("spot-interruption", instance_id=instance_id, now=True)
    sent = time.time() - age_seconds
    event["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent))
    return event


def event_deadline(event: dict[str, Any]) -> float:
    return calendar.timegm(time.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")) + SPOT_WARNING_SECONDS


@dataclass
class Budgeted:
    """A node whose pods all belong to one Deployment under a PDB (maxUnavailable)."""

    node: NodeScene
    namespace: str
    app: str
    pods: list[str]
    max_unavailable: int
    grace: int


def budgeted_node(scenes: Scenes, replicas: int, max_unavailable: int, grace: int = 10) -> Budgeted:
    """A Spot node with ``replicas`` pods of one Deployment under a PDB, and an On-Demand node
    with room for their replacements."""
    node = scenes.worker_node()
    scenes.worker_node(spot=False)
    namespace = scenes.namespace("rel")
    node.namespace = namespace
    pods = scenes.deployment(
        namespace, "web", node.node_name, replicas, grace=grace, pdb_max_unavailable=max_unavailable
    )
    scenes.wait_pdbs(namespace)
    return Budgeted(node, namespace, "web", pods, max_unavailable, grace)


@dataclass
class Watched:
    min_ready: dict[str, int] = field(default_factory=dict)  # app -> fewest Ready, not deleting
    replicas: dict[str, int] = field(default_factory=dict)  # app -> Ready pods when the watch began
    deleted_at: dict[str, float] = field(default_factory=dict)  # pod -> time.time() its deletion was seen
    deletion_grace: dict[str, int] = field(default_factory=dict)  # pod -> deletionGracePeriodSeconds
    reconnects: int = 0


class Watcher:
    """Watches a namespace's pods while a handler runs, from the test's own connection to the API
    server (no proxy): the fewest Ready pods per ``app`` label (the PDB invariant) and when each
    deletion began. It survives a stalled control plane: a broken watch is resumed from the last
    resourceVersion, so no state in between is missed (a relist only after 410 Gone)."""

    def __init__(self, scenes: Scenes, namespace: str) -> None:
        self.core = scenes.core
        self.namespace = namespace
        self.seen = Watched()
        self._pods: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._version = ""

    def __enter__(self) -> Watched:
        self._relist()
        self.seen.replicas = dict(self._ready())
        self._thread.start()
        return self.seen

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _relist(self) -> None:
        listing = self.core.list_namespaced_pod(self.namespace)
        self._pods = {p.metadata.name: p for p in listing.items}
        self._version = listing.metadata.resource_version
        for pod in listing.items:
            self._note(pod)
        self._update()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for change in watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    resource_version=self._version,
                    timeout_seconds=2,
                    _request_timeout=5,
                ):
                    if change["type"] == "ERROR":
                        raise ApiException(status=410)
                    pod = change["object"]
                    self._version = pod.metadata.resource_version
                    if change["type"] == "DELETED":
                        self._pods.pop(pod.metadata.name, None)
                    else:
                        self._pods[pod.metadata.name] = pod
                        self._note(pod)
                    self._update()
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                self.seen.reconnects += 1
                if exc.status == 410:
                    self._safe(self._relist)
            except Exception:  # a stalled API server: resume from the last resourceVersion
                self.seen.reconnects += 1
                time.sleep(0.2)

    def _safe(self, fn: Any) -> None:
        try:
            fn()
        except Exception:
            time.sleep(0.2)

    def _note(self, pod: Any) -> None:
        name = pod.metadata.name
        if pod.metadata.deletion_timestamp is not None and name not in self.seen.deleted_at:
            self.seen.deleted_at[name] = time.time()
            grace = pod.metadata.deletion_grace_period_seconds
            self.seen.deletion_grace[name] = int(grace if grace is not None else -1)

    def _ready(self) -> dict[str, int]:
        return ready_by_app(self._pods.values())

    def _update(self) -> None:
        for app, count in self._ready().items():
            self.seen.min_ready[app] = min(self.seen.min_ready.get(app, count), count)


def fates(drain: dict[str, Any]) -> dict[str, str]:
    """Pod name -> fate, from a drain summary (the result's ``drain``, or the log's)."""
    return {ref.split("/", 1)[1]: fate for ref, fate in drain["pods"].items()}


def check_invariants(
    scene: Budgeted,
    drain: dict[str, Any],
    seen: Watched,
    deadline: float | None = None,
    margin: float = 5,
    deleted: set[str] | None = None,
) -> dict[str, Any]:
    """Every pod has an outcome; Ready pods never fell below the budget, except by pods deleted
    past it, and those only when the certain end was near (its grace period before the deadline
    less the margin). ``deleted``: the pods the function deleted past the PDB as the API server
    saw it (Faults.deletes_served), when the result may not say so. Returns the figures."""
    outcome = fates(drain)
    missing = set(scene.pods) - set(outcome)
    assert not missing, f"pods without an outcome: {sorted(missing)}"
    overridden = sorted(deleted if deleted is not None else {p for p in scene.pods if outcome[p] == "deleted-past-pdb"})
    floor = len(scene.pods) - scene.max_unavailable
    lowest = seen.min_ready[scene.app]
    assert lowest >= floor - len(overridden), (
        f"Ready pods fell to {lowest}, budget {floor}, {len(overridden)} deleted past it; {outcome}"
    )
    for pod in overridden:
        assert deadline is not None, f"{pod} deleted past its PDB without a certain deadline"
        earliest = deadline - margin - scene.grace - 2.5  # the policy's point, less its 1 s backoff and skew
        assert seen.deleted_at[pod] >= earliest, (
            f"{pod} deleted past its PDB {deadline - seen.deleted_at[pod]:.1f} s before the deadline"
        )
    return {"pods": len(scene.pods), "budget_floor": floor, "min_ready": lowest, "deleted_past_pdb": len(overridden)}


def metrics(invocation: Invocation) -> list[dict[str, Any]]:
    return read_emf(invocation.output.splitlines())


def error_stages(invocation: Invocation) -> list[str]:
    """The ``stage`` of every Errors metric the invocation emitted."""
    return [m["dimensions"]["stage"] for m in metrics(invocation) if m["name"] == "Errors"]


def log_lines(invocation: Invocation) -> list[dict[str, Any]]:
    lines = []
    for line in invocation.output.splitlines():
        if line.startswith("{") and not line.startswith('{"_aws"'):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def logged_drain(invocation: Invocation) -> dict[str, Any] | None:
    """The drain summary of the 'drain ended' / 'drain finished' log line (there also when the
    invocation failed afterwards)."""
    for line in log_lines(invocation):
        if isinstance(line.get("drain"), dict) and "pods" in line["drain"]:
            return dict(line["drain"])
    return None


def failure_line(invocation: Invocation) -> dict[str, Any]:
    for line in log_lines(invocation):
        if line.get("message") == "handler failed":
            return line
    raise AssertionError(f"no 'handler failed' line:\n{invocation.output[-3000:]}")


class InBackground:
    """Runs an invocation in a thread, so that the test can act on the cluster meanwhile."""

    def __init__(self, target: Any) -> None:
        self._result: list[Invocation] = []
        self.started = time.time()
        self._thread = threading.Thread(target=lambda: self._result.append(target()), daemon=True)
        self._thread.start()

    def wait_until(self, condition: Any, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise TimeoutError("the condition never came while the handler ran")
            time.sleep(0.02)
        return time.time()

    def result(self, timeout: float = 200) -> Invocation:
        self._thread.join(timeout)
        assert self._result, "the invocation did not finish"
        return self._result[0]
