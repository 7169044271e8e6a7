"""A pod whose namespace is being deleted cannot be evicted (403, NamespaceTerminating): the
namespace controller deletes it, and the drain waits for that. When the controller does not get
to it (here: kube-controller-manager stopped with SIGSTOP, as a namespace held by a finalizer or
a slow controller would), the pod would die with the instance without its SIGTERM. Before a certain
end, with the default BlockedPodPolicy=delete-before-deadline, it gets the same graceful delete
with the time left as a pod a PDB blocks (issue 23); with respect-pdb it is left to the controller."""

from __future__ import annotations

from pathlib import Path

from localeks.faults import component_pid, paused
from localeks.scenes import Scenes
from tests.reliability.support import Faults, Watcher, budgeted_node, event_deadline, spot_event

GRACE = 5


def test_a_pod_its_terminating_namespace_has_not_reached_is_deleted_gracefully_before_a_certain_end(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults, state: Path
) -> None:
    scene = budgeted_node(scenes, replicas=2, max_unavailable=2, grace=GRACE)
    event = spot_event(scene.node.instance_id, age_seconds=90)  # 30 s left, 25 s before the margin
    deadline = event_deadline(event)
    with paused(component_pid(state, "kube-controller-manager")):  # its namespace controller too
        scenes.core.delete_namespace(scene.namespace)
        with Watcher(scenes, scene.namespace) as seen:
            result = faults.invoke(cluster_env, event, params={"DeadlineMarginSeconds": "5"}, direct=True)
    assert result.exit_code == 0, result.output[-3000:]
    drain = result.result["drain"]
    refs = sorted(f"{scene.namespace}/{p}" for p in scene.pods)
    assert drain["pods"] == dict.fromkeys(refs, "deleted-at-end"), drain
    assert drain["deleted_at_end"] == 2
    assert drain["pdb_refusals"] == 0
    assert set(seen.deletion_grace) == set(scene.pods)
    assert all(1 <= g <= GRACE for g in seen.deletion_grace.values()), seen.deletion_grace
    assert all(t < deadline - 5 for t in seen.deleted_at.values()), (seen.deleted_at, deadline)
    assert result.result["outcome"] == "drained"


def test_with_respect_pdb_the_namespace_controller_is_left_to_do_it(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults, state: Path
) -> None:
    scene = budgeted_node(scenes, replicas=1, max_unavailable=1, grace=GRACE)
    event = spot_event(scene.node.instance_id, age_seconds=100)  # 20 s left
    with paused(component_pid(state, "kube-controller-manager")):
        scenes.core.delete_namespace(scene.namespace)
        with Watcher(scenes, scene.namespace) as seen:
            result = faults.invoke(
                cluster_env,
                event,
                params={"DeadlineMarginSeconds": "5", "BlockedPodPolicy": "respect-pdb"},
                direct=True,
            )
    assert result.exit_code == 0, result.output[-3000:]
    assert set(result.result["drain"]["pods"].values()) == {"namespace-terminating"}
    assert seen.deletion_grace == {}
