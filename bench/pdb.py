"""Reaction when a PodDisruptionBudget frees up: ours (a watch on the namespace's budgets) against
`kubectl drain` (an eviction retried every 5 s), on identical nodes, at the same time, in the same run.

Each round drains two nodes at once, one per side, each with two pods under its own budget that
allows no disruption; after ``blocked_s`` both budgets are opened. Measured per side: seconds
from the disruption controller reporting ``disruptionsAllowed > 0`` (seen by polling the budget's
status every 10 ms) to the first pod seen deleting (a watch on the namespace's pods: the eviction
served), and PDB refusals per blocked pod per minute, over the time the side was actually blocked
(from its start to the budget opening). Rounds open the budgets at phases spread over kubectl's
5 s retry period, since where the opening falls in that period decides kubectl's delay.
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
KUBECTL_RETRY_S = 5.0  # kubectl drain retries a refused eviction after 5 s


def blocked_node(scenes: Scenes) -> NodeScene:
    scene = scenes.worker_node(spot=True)
    scenes.worker_node(spot=False)  # room for the replacements
    ns = scenes.namespace("bench-pdb")
    scene.namespace = ns
    scene.pods["deployment"] = scenes.deployment(ns, "api", scene.node_name, PODS, grace=5, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    return scene


def _open(scenes: Scenes, scene: NodeScene) -> float:
    """Opens the budget; returns the time the disruption controller reported it open."""
    scenes.policy.patch_namespaced_pod_disruption_budget("api", scene.namespace, {"spec": {"maxUnavailable": PODS}})
    while True:
        status = scenes.policy.read_namespaced_pod_disruption_budget_status("api", scene.namespace).status
        if (status.disruptions_allowed or 0) > 0:
            return time.time()
        time.sleep(0.01)


class _Side:
    """One side of a round: started, then its budget opened, then it ends."""

    def __init__(self, scenes: Scenes, scene: NodeScene) -> None:
        self.scenes, self.scene = scenes, scene
        self.started = 0.0
        self.freed_at = 0.0
        self.refusals = 0

    def figures(self, seen: Any) -> dict[str, float]:
        blocked_for = self.freed_at - self.started
        return {
            "freed_to_eviction_s": round(min(seen.deletion_seen_at.values()) - self.freed_at, 4),
            "refusals": self.refusals,
            "blocked_for_s": round(blocked_for, 3),
            "refusals_per_pod_minute": round(self.refusals / PODS / (blocked_for / 60), 2),
        }


def round_both(cluster_env: dict[str, str], scenes: Scenes, service: Any, blocked_s: float) -> dict[str, Any]:
    mine, theirs = _Side(scenes, blocked_node(scenes)), _Side(scenes, blocked_node(scenes))
    out: dict[str, Any] = {}
    with PodWatcher(scenes, mine.scene.namespace) as seen_mine, PodWatcher(scenes, theirs.scene.namespace) as seen:
        theirs.started = time.time()
        process = subprocess.Popen(
            kubectl_drain_argv(cluster_env, theirs.scene), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        mine.started = time.time()
        worker = threading.Thread(target=lambda: out.update(r=handle(service, spot_event(mine.scene.instance_id))))
        worker.start()
        time.sleep(blocked_s)
        openers = [
            threading.Thread(target=lambda s=s: setattr(s, "freed_at", _open(scenes, s.scene))) for s in (mine, theirs)
        ]
        for t in openers:
            t.start()
        for t in openers:
            t.join()
        worker.join()
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert out["r"].outcome == "drained", out["r"]
    mine.refusals = out["r"].drain["pdb_refusals"]
    # kubectl prints one line per refused eviction: "... (will retry after 5s): Cannot evict pod as
    # it would violate the pod's disruption budget."
    theirs.refusals = sum("disruption budget" in line for line in stderr.splitlines())
    return {"blocked_s": blocked_s, "ours": mine.figures(seen_mine), "kubectl": theirs.figures(seen)}


def compare(cluster_env: dict[str, str], scenes: Scenes, service: Any, blocked_s: float, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds, the budgets opened after ``blocked_s`` plus an equal share of kubectl's
    retry period each; medians over the rounds."""
    from statistics import median

    runs = [round_both(cluster_env, scenes, service, blocked_s + i * KUBECTL_RETRY_S / rounds) for i in range(rounds)]
    out: dict[str, Any] = {"rounds": runs}
    for side in ("ours", "kubectl"):
        out[side] = {
            key: round(median(r[side][key] for r in runs), 4)
            for key in ("freed_to_eviction_s", "refusals_per_pod_minute", "blocked_for_s")
        }
    return out
