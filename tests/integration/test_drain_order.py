"""Drain order against the local EKS (kwok at speed 0.1: a deleted pod goes after a tenth of its
grace period): the Spot function evicts ordinary ReplicaSet pods first and critical ones (of the
system-cluster-critical class, their priority set by the API server's Priority admission) once the
ordinary ones are gone; a critical DaemonSet pod is left alone, as every DaemonSet pod is."""

from __future__ import annotations

import time

from bench.drain import DeletionClock
from localeks.scenes import NodeScene, Scenes
from tests.integration.support import run

CRITICAL = "system-cluster-critical"


def seed(scenes: Scenes) -> tuple[NodeScene, list[str], list[str], str]:
    scene = scenes.worker_node()
    scenes.worker_node(spot=False)  # room for the replacements
    ns = scenes.namespace("order")
    scene.namespace = ns
    ordinary = scenes.deployment(ns, "web", scene.node_name, 4, grace=30, pdb_max_unavailable=None)
    critical = scenes.deployment(
        ns, "dns", scene.node_name, 2, grace=30, pdb_max_unavailable=None, priority_class=CRITICAL
    )
    agent = scenes.daemonset_pod(ns, "cni", scene.node_name, priority_class="system-node-critical")
    scenes.wait_running(ns, [*ordinary, *critical, agent])
    assert scenes.core.read_namespaced_pod(critical[0], ns).spec.priority == 2_000_000_000
    return scene, ordinary, critical, agent


def test_critical_pods_are_evicted_after_the_ordinary_pods_are_gone(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scene, ordinary, critical, agent = seed(scenes)
    with DeletionClock(scenes, scene.namespace) as clock:
        result = run(cluster_env, "spot-interruption", scene.instance_id)
    assert result.exit_code == 0, result.output
    out = result.result
    assert out["outcome"] == "drained", out["drain"]
    ordinary_gone = max(clock.gone[p] for p in ordinary)
    critical_evicted = min(clock.deleting[p] for p in critical)
    assert critical_evicted >= ordinary_gone, (ordinary_gone, critical_evicted)
    assert out["drain"]["critical_after_seconds"] is not None
    assert agent not in clock.deleting  # DaemonSet pods stay, critical or not
    assert out["drain"]["skipped"] == {"daemonset": 1}
    assert out["drain"]["grace_capped"] == 0  # 120 s: both groups get their own 30 s


def test_before_a_near_end_the_ordinary_pods_leave_the_critical_pods_their_share(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    """A Spot warning 100 s old: 20 s left, 15 s before the 5 s margin. The critical pods' 30 s
    and a second would be more than half of it, so they keep half (7.5 s): the ordinary pods'
    30 s are capped to the 7.5 s before it less 2 s for their kubelet to report them gone (and the
    function's start), the critical pods get what is left when they go, and every grace period
    ends before the margin."""
    scene, ordinary, critical, _ = seed(scenes)
    with DeletionClock(scenes, scene.namespace) as clock:
        began = time.time()  # the event's time + 100 s, at most
        result = run(cluster_env, "spot-interruption", scene.instance_id, age_seconds=100)
    assert result.exit_code == 0, result.output
    out = result.result
    fates = {ref.split("/")[1]: fate for ref, fate in out["drain"]["pods"].items()}
    assert {fates[p] for p in ordinary + critical} == {"evicted"}
    assert {clock.deletion_grace[p] for p in ordinary} <= {3, 4, 5}
    assert min(clock.deleting[p] for p in critical) >= max(clock.gone[p] for p in ordinary)
    for pod in critical:  # their share at least, and no more than the time left before the margin
        assert 6 <= clock.deletion_grace[pod] < 30
        assert clock.deleting[pod] + clock.deletion_grace[pod] <= began + 20 - 5 + 1
