"""What a pod is to a drain, with the filters of ``kubectl drain`` (k8s.io/kubectl/pkg/drain):
which pods are left alone, which are evicted, with what grace period, and which are not waited for.
Pure functions of the pod objects, except the DaemonSet check, which asks the API server."""

from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from serverless_nth.kube.client import KubeApi, KubeApiError, NotFound, path

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_GRACE_SECONDS = 30
# Priority classes whose pods are critical whatever their priority value (Karpenter's
# groupPodsByPriority, pkg/controllers/node/termination/terminator/terminator.go, names these two)
CRITICAL_PRIORITY_CLASSES = ("system-node-critical", "system-cluster-critical")
# No pod is ever sent a shorter grace period. The API server reads 0 as "remove the object now"
# (a force delete, whatever the kubelet is doing), and a truncated 0.9 s would become that.
GRACE_FLOOR_SECONDS = 1


@dataclass(frozen=True)
class PodToEvict:
    namespace: str
    name: str
    uid: str
    resource_version: str
    grace_seconds: int
    has_emptydir: bool
    has_controller: bool
    # time.time() of metadata.deletionTimestamp when listed: someone else is already deleting it
    deleting_since: float | None = None
    # a critical pod leaves after the others (``is_critical``)
    critical: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def deletion_time(pod: dict[str, Any]) -> float | None:
    """metadata.deletionTimestamp as time.time() (the moment the pod's grace period ends)."""
    stamp = pod.get("metadata", {}).get("deletionTimestamp")
    if not stamp:
        return None
    try:
        return datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def daemonset_owner(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The pod's controlling apps/v1 DaemonSet. A DaemonSet kind of another API group (OpenKruise's
    apps.kruise.io, say) is an ordinary controller here: its pods are evicted like any other, and
    never taken for orphans of an apps/v1 DaemonSet that does not exist."""
    owners = pod.get("metadata", {}).get("ownerReferences") or ()
    return next((o for o in owners if o.get("controller") and o.get("kind") == "DaemonSet" and _in_apps(o)), None)


def _in_apps(owner: dict[str, Any]) -> bool:
    return str(owner.get("apiVersion", "")).split("/")[0] == "apps"


def skip_reason(pod: dict[str, Any], now: float, stuck_after_seconds: float) -> str | None:
    """Why the drain leaves this pod alone, or None. A DaemonSet pod is skipped here; whether its
    DaemonSet still exists is checked apart (``orphaned_daemonset_pods``)."""
    metadata, status = pod.get("metadata", {}), pod.get("status", {})
    if MIRROR_ANNOTATION in (metadata.get("annotations") or {}):
        return "mirror"
    if daemonset_owner(pod) is not None:
        return "daemonset"
    if status.get("phase") in ("Succeeded", "Failed"):
        return "finished"
    deleted_at = deletion_time(pod)
    if deleted_at is not None and now - deleted_at > stuck_after_seconds:
        # kubectl drain --skip-wait-for-delete-timeout: its grace period ended long ago and
        # something (a finalizer, a kubelet that is gone) holds it; waiting cannot help
        return "stuck-terminating"
    return None


def is_critical(spec: dict[str, Any], critical_priority: int) -> bool:
    """A pod that cluster services depend on: a system-*-critical priority class, or a priority at
    or above ``critical_priority`` (the kubelet's graceful node shutdown groups pods from
    scheduling.SystemCriticalPriority, 2000000000, as its critical ones: migrateConfig in
    pkg/kubelet/nodeshutdown)."""
    if spec.get("priorityClassName") in CRITICAL_PRIORITY_CLASSES:
        return True
    priority = spec.get("priority")
    return isinstance(priority, int) and priority >= critical_priority


def to_evict(pod: dict[str, Any], critical_priority: int) -> PodToEvict:
    metadata, spec = pod["metadata"], pod.get("spec", {})
    grace = spec.get("terminationGracePeriodSeconds")
    return PodToEvict(
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata.get("uid", ""),
        resource_version=metadata.get("resourceVersion", ""),
        grace_seconds=DEFAULT_GRACE_SECONDS if grace is None else int(grace),
        has_emptydir=any("emptyDir" in v for v in spec.get("volumes") or ()),
        has_controller=any(o.get("controller") for o in metadata.get("ownerReferences") or ()),
        deleting_since=deletion_time(pod),
        critical=is_critical(spec, critical_priority),
    )


def grace_period(own_seconds: int, seconds_left: float | None) -> int:
    """The pod's own grace period, capped to ``seconds_left`` when a deadline caps it, and never
    below the floor."""
    grace = max(own_seconds, GRACE_FLOOR_SECONDS)
    if seconds_left is None:
        return grace
    return max(GRACE_FLOOR_SECONDS, min(grace, int(seconds_left)))


def critical_reserve(critical: list[PodToEvict], seconds_left: float | None, share_percent: int) -> float | None:
    """Seconds kept at the end of a certain deadline for the critical pods: their longest grace
    period and a second for the eviction's round trip, but at most ``share_percent`` of the
    ``seconds_left`` (the kubelet keeps shutdownGracePeriodCriticalPods of its shutdown time the
    same way, and gives each group its own time, in order). None without a deadline."""
    if seconds_left is None:
        return None
    longest = max((max(t.grace_seconds, GRACE_FLOOR_SECONDS) for t in critical), default=0) + 1
    return max(0.0, min(float(longest), seconds_left * share_percent / 100))


def list_node_pods(api: KubeApi, node_name: str, give_up_at: float | None = None) -> list[dict[str, Any]]:
    """``give_up_at``: no retry that would end after it (the drain's end)."""
    query = {"fieldSelector": f"spec.nodeName={node_name}", "limit": "500"}
    pods: list[dict[str, Any]] = []
    while True:
        page = api.request("GET", "/api/v1/pods", query=query, stage="drain", give_up_at=give_up_at)
        pods.extend(page.get("items", []))
        token = page.get("metadata", {}).get("continue")
        if not token:
            return pods
        query = {**query, "continue": token}


def orphaned_daemonset_pods(api: KubeApi, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DaemonSet pods whose DaemonSet no longer exists (or is another object by now): nothing will
    recreate them, so they are evicted, as ``kubectl drain --force`` does. One GET per DaemonSet
    on the node, all at once; an answer that is not a clear 404 keeps the pod skipped."""
    owners = {
        (p["metadata"]["namespace"], o["name"], o.get("uid", "")): p
        for p in pods
        if (o := daemonset_owner(p)) is not None
    }
    if not owners:
        return []

    def gone(key: tuple[str, str, str]) -> bool:
        namespace, name, uid = key
        try:
            found = api.request("GET", path("apis", "apps", "v1", "namespaces", namespace, "daemonsets", name))
        except NotFound:
            return True
        except KubeApiError:
            return False
        return bool(uid) and found.get("metadata", {}).get("uid") != uid

    with ThreadPoolExecutor(max_workers=min(16, len(owners))) as pool:
        verdicts = dict(zip(owners, pool.map(gone, owners), strict=True))
    return [p for p in pods if (o := daemonset_owner(p)) is not None and verdicts.get(_key(p, o), False)]


def _key(pod: dict[str, Any], owner: dict[str, Any]) -> tuple[str, str, str]:
    return pod["metadata"]["namespace"], owner["name"], owner.get("uid", "")
