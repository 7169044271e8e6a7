"""Reaction when a PodDisruptionBudget frees up: ours (a watch on the namespace's budgets) against
`kubectl drain` (an eviction retried every 5 s), on identical nodes, in the same run.

Each side drains a node whose two pods sit under a budget that allows no disruption; after
``blocked_s`` the budget is opened. Measured: seconds from the disruption controller reporting
``disruptionsAllowed > 0`` to the first pod seen deleting, and PDB refusals per blocked pod per
minute while it was closed.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

from bench.common import handle
from bench.drain import kubectl_drain_argv, spot_event
from localeks.scenes import NodeScene, Scenes
from tests.integration.support import PodWatcher

PODS = 2


def blocked_node(scenes: Scenes) -> NodeScene:
    scene = scenes.worker_node(spot=True)
    scenes.worker_node(spot=False)  # room for the replacements
    ns = scenes.namespace("bench-pdb")
    scene.namespace = ns
    scene.pods["deployment"] = scenes.deployment(ns, "api", scene.node_name, PODS, grace=5, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    return scene


def _free_after(scenes: Scenes, scene: NodeScene, blocked_s: float) -> float:
    """Opens the budget after ``blocked_s``; returns when the controller reported it open."""
    time.sleep(blocked_s)
    scenes.policy.patch_namespaced_pod_disruption_budget("api", scene.namespace, {"spec": {"maxUnavailable": PODS}})
    while True:
        status = scenes.policy.read_namespaced_pod_disruption_budget_status("api", scene.namespace).status
        if (status.disruptions_allowed or 0) > 0:
            return time.time()
        time.sleep(0.01)


def ours(scenes: Scenes, service: Any, blocked_s: float) -> dict[str, float]:
    scene = blocked_node(scenes)
    out: dict[str, Any] = {}
    with PodWatcher(scenes, scene.namespace) as seen:
        worker = threading.Thread(target=lambda: out.update(r=handle(service, spot_event(scene.instance_id))))
        worker.start()
        freed_at = _free_after(scenes, scene, blocked_s)
        worker.join()
    drain = out["r"].drain
    return {
        "freed_to_eviction_s": min(seen.deletion_seen_at.values()) - freed_at,
        "refusals_per_pod_minute": drain["pdb_refusals"] / PODS / (blocked_s / 60),
    }


def kubectl(cluster_env: dict[str, str], scenes: Scenes, blocked_s: float) -> dict[str, float]:
    scene = blocked_node(scenes)
    with PodWatcher(scenes, scene.namespace) as seen:
        process = subprocess.Popen(
            kubectl_drain_argv(cluster_env, scene),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        freed_at = _free_after(scenes, scene, blocked_s)
        _, stderr = process.communicate(timeout=120)
    refusals = sum("disruption budget" in line for line in stderr.splitlines())
    return {
        "freed_to_eviction_s": min(seen.deletion_seen_at.values()) - freed_at,
        "refusals_per_pod_minute": refusals / PODS / (blocked_s / 60),
    }
