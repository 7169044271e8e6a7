"""Drain speed: our Spot handler against `kubectl drain` on identical nodes, in the same run."""

from __future__ import annotations

import datetime
import subprocess
import time
import uuid
from typing import Any

from bench.common import handle
from localeks.scenes import NodeScene, Scenes

PDB_SHARE = 0.2  # a fifth of the pods sit in Deployments of 5 under a PDB with maxUnavailable 1


def seed_node(scenes: Scenes, pods: int) -> NodeScene:
    """A Spot node with ``pods`` evictable pods (grace periods spread over 0-30 s), a fifth of them
    under PDBs that allow one disruption at a time, plus a DaemonSet pod."""
    scene = scenes.worker_node(spot=True)
    ns = scenes.namespace("bench")
    scene.namespace = ns
    under_pdb = int(pods * PDB_SHARE) // 5 * 5
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


def spot_event(instance_id: str) -> Any:
    from serverless_nth.events.model import EventKind, InterruptionEvent

    return InterruptionEvent(
        EventKind.SPOT_INTERRUPTION,
        str(uuid.uuid4()),
        instance_id,
        "us-east-1",
        "123456789012",
        datetime.datetime.now(datetime.UTC),
        "terminate",
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
