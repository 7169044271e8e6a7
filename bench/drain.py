"""Drain speed: our Spot handler against `kubectl drain` on identical nodes, in the same run."""

from __future__ import annotations

import datetime
import subprocess
import threading
import time
import uuid
from typing import Any

from bench.common import handle, median
from localeks.scenes import NodeScene, Scenes

PDB_SHARE = 0.2  # a fifth of the pods sit in Deployments of 5 under a PDB with maxUnavailable 1


def seed_node(scenes: Scenes, pods: int, pdb_share: float = PDB_SHARE) -> NodeScene:
    """A Spot node with ``pods`` evictable pods (grace periods spread over 0-30 s, the longest 28 s
    from 110 pods on), ``pdb_share`` of them under PDBs that allow one disruption at a time, plus a
    DaemonSet pod."""
    scene = scenes.worker_node(spot=True)
    ns = scenes.namespace("bench")
    scene.namespace = ns
    under_pdb = int(pods * pdb_share) // 5 * 5
    made = 0
    index = 0
    while made < pods:
        size = 5 if made < under_pdb else min(10, pods - made)
        grace = (index * 7) % 31
        names = scenes.deployment(
            ns, f"app-{index}", scene.node_name, size, grace=grace, pdb_max_unavailable=1 if made < under_pdb else None
        )
        scene.pods.setdefault("deployment", []).extend(names)
        made += size
        index += 1
    scene.pods["daemonset"] = [scenes.daemonset_pod(ns, "agent", scene.node_name)]
    scenes.wait_running(ns, scene.all_pods(), timeout=120)
    scenes.wait_pdbs(ns)
    return scene


def longest_grace(pods: int, pdb_share: float = PDB_SHARE) -> int:
    """The longest grace period ``seed_node`` gives its ``pods`` pods."""
    graces, made, index = [], 0, 0
    under_pdb = int(pods * pdb_share) // 5 * 5
    while made < pods:
        graces.append((index * 7) % 31)
        made += 5 if made < under_pdb else min(10, pods - made)
        index += 1
    return max(graces)


def spot_event(instance_id: str, rebalance: bool = False) -> Any:
    """A Spot interruption warning for ``instance_id`` happening now (or a rebalance
    recommendation: cordon and taint only, by default)."""
    from serverless_nth.events.model import EventKind, InterruptionEvent

    return InterruptionEvent(
        EventKind.REBALANCE_RECOMMENDATION if rebalance else EventKind.SPOT_INTERRUPTION,
        str(uuid.uuid4()),
        instance_id,
        "us-east-1",
        "123456789012",
        datetime.datetime.now(datetime.UTC),
        "" if rebalance else "terminate",
    )


def ours(service: Any, scene: NodeScene) -> dict[str, float]:
    result = handle(service, spot_event(scene.instance_id))
    drain = result.drain
    assert result.outcome == "drained", result
    return {
        "evictions_sent_s": drain["started_after_seconds"] + drain["evictions_sent_seconds"],
        "evictions_answered_s": drain["started_after_seconds"] + drain["evictions_answered_seconds"],
        "complete_s": drain["started_after_seconds"] + drain["duration_seconds"],
        "api_requests": result.api_requests,
        "pdb_refusals": drain["pdb_refusals"],
        "grace_capped": drain["grace_capped"],
    }


def kubectl_drain_argv(cluster_env: dict[str, str], scene: NodeScene) -> list[str]:
    """`kubectl drain` as an operator would run it on a node about to vanish."""
    return [
        f"{cluster_env['LOCALEKS_BIN']}/kubectl",
        f"--kubeconfig={cluster_env['KUBECONFIG']}",
        "drain",
        scene.node_name,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
        "--timeout=600s",
    ]


def kubectl(cluster_env: dict[str, str], scene: NodeScene) -> float:
    started = time.monotonic()
    subprocess.run(
        kubectl_drain_argv(cluster_env, scene),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def eviction_round_trip(scenes: Scenes, service: Any, samples: int) -> float:
    """The median time of one eviction request answered (the function's own client and identity),
    on ``samples`` pods that have no grace period and no PDB."""
    scene = scenes.worker_node(spot=True)
    scenes.worker_node(spot=False)  # room for the replacements
    ns = scenes.namespace("bench-rtt")
    names = scenes.deployment(ns, "rtt", scene.node_name, samples, grace=0, pdb_max_unavailable=None)
    api = service.kube()
    times = []
    for name in names:
        started = time.monotonic()
        api.request(
            "POST",
            f"/api/v1/namespaces/{ns}/pods/{name}/eviction",
            body={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}},
        )
        times.append(time.monotonic() - started)
    return median(times)


class DeletionClock:
    """A watch on a namespace's pods while a drain runs: when each pod was seen deleting (its
    eviction served) and when it was seen gone (kwok ended it after its grace period)."""

    def __init__(self, scenes: Scenes, namespace: str) -> None:
        self.scenes, self.namespace = scenes, namespace
        self.deleting: dict[str, float] = {}
        self.gone: dict[str, float] = {}
        self.grace: dict[str, int] = {}
        self.deletion_grace: dict[str, int] = {}  # the grace period each deletion got, on the server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DeletionClock:
        listing = self.scenes.core.list_namespaced_pod(self.namespace)
        self._version = listing.metadata.resource_version
        for pod in listing.items:
            self.grace[pod.metadata.name] = pod.spec.termination_grace_period_seconds or 0
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            for change in watch.Watch().stream(
                self.scenes.core.list_namespaced_pod, self.namespace, resource_version=self._version, timeout_seconds=1
            ):
                now, pod = time.time(), change["object"]
                self._version = pod.metadata.resource_version
                name = pod.metadata.name
                if pod.metadata.deletion_timestamp is not None:
                    self.deleting.setdefault(name, now)
                    self.deletion_grace.setdefault(name, pod.metadata.deletion_grace_period_seconds)
                if change["type"] == "DELETED":
                    self.gone.setdefault(name, now)
                if self._stop.is_set():
                    break


def real_grace(cluster_env: dict[str, str], scenes: Scenes, service: Any, pods: int, repeats: int) -> dict[str, Any]:
    """A drain at kwok speed 1 (a 28 s grace period lasts 28 s), ours against ``kubectl drain`` on
    nodes with the same pods and no PDB, one after the other. Each side's overhead is its drain
    time over the floor: the longest grace period applied plus one eviction round trip."""
    assert float(cluster_env["LOCALEKS_SPEED"]) == 1.0, cluster_env["LOCALEKS_SPEED"]
    rtt = eviction_round_trip(scenes, service, 5)
    grace = longest_grace(pods, pdb_share=0)
    runs: dict[str, list[float]] = {
        "complete_s": [],
        "kubectl_s": [],
        "evictions_answered_s": [],
        # ours, from the handler's start, as the API server told a watch: when the pods with the
        # longest grace period were evicted and when they were gone, and when the last pod was gone
        "longest_grace_evicted_s": [],
        "longest_grace_gone_s": [],
        "last_pod_gone_s": [],
    }
    capped = 0
    for _ in range(repeats):
        mine, theirs = seed_node(scenes, pods, pdb_share=0), seed_node(scenes, pods, pdb_share=0)
        for _node in (mine, theirs):
            scenes.worker_node(spot=False)
        with DeletionClock(scenes, mine.namespace) as clock:
            began = time.time()
            result = ours(service, mine)
            time.sleep(1.5)  # the watch's last events
        longest = [p for p in mine.pods["deployment"] if clock.grace[p] == grace]
        runs["longest_grace_evicted_s"].append(max(clock.deleting[p] for p in longest) - began)
        runs["longest_grace_gone_s"].append(max(clock.gone[p] for p in longest) - began)
        runs["last_pod_gone_s"].append(max(clock.gone[p] for p in mine.pods["deployment"]) - began)
        capped += result["grace_capped"]
        runs["complete_s"].append(result["complete_s"])
        runs["evictions_answered_s"].append(result["evictions_answered_s"])
        runs["kubectl_s"].append(kubectl(cluster_env, theirs))
    assert capped == 0, "a grace period was capped: the floor would not be the longest grace"
    out = {k: median(v) for k, v in runs.items()}
    floor = grace + rtt
    return {
        "pods": pods,
        "repeats": repeats,
        "kwok_speed": float(cluster_env["LOCALEKS_SPEED"]),
        "longest_grace_s": grace,
        "eviction_round_trip_s": rtt,
        "floor_s": round(floor, 4),
        **out,
        "overhead_s": round(out["complete_s"] - floor, 3),
        "kubectl_overhead_s": round(out["kubectl_s"] - floor, 3),
    }


def main() -> None:
    """``python -m bench.drain STATE PODS REPEATS``: the real-grace drain on the local EKS under
    STATE, in a process of its own (the function's AWS session, credentials and endpoints are the
    process's, as in Lambda); prints ``BENCH <json>``."""
    import json
    import os
    import sys
    from pathlib import Path

    from bench.common import warm_service
    from localeks.cluster import Paths, read_env

    state, pods, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    env = read_env(Paths(Path(state)))
    service = warm_service(env)
    service.kube().request("GET", "/version")  # warm: cluster data, token, connection
    sys.stdout.flush()
    out = real_grace(env, Scenes(env), service, pods, repeats)
    os.write(1, f"\nBENCH {json.dumps(out)}\n".encode())


if __name__ == "__main__":
    main()
