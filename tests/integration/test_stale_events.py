"""Events that no longer match the instance: late, retried or replayed. EC2's current state and
the time decide, and the API server's own record (each pod's deletionGracePeriodSeconds, the Ready
pods under the PDB) is what is checked, not what the handler says it did."""

from __future__ import annotations

import pytest

from localeks.scenes import NodeScene, Scenes
from serverless_nth.kube.pods import GRACE_FLOOR_SECONDS
from tests.integration.support import PodWatcher, node_state, pods_left, run, wait_ec2_state

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


@pytest.fixture
def scene(scenes: Scenes) -> NodeScene:
    return scenes.node_with_workloads(grace=5, long_grace=30)


def own_graces(scene: NodeScene) -> dict[str, int]:
    """The grace period each evictable pod of the standard scene asks for."""
    graces = {p: 5 for role in ("deployment", "emptydir", "bare") for p in scene.pods[role]}
    graces.update(dict.fromkeys(scene.pods["long-grace"], 30))
    return graces


@pytest.mark.parametrize("state", ["stopped", "terminated"])
def test_stopped_or_terminated_event_for_a_running_instance_changes_nothing(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene, state: str
) -> None:
    # after a stop/start, a retry or a replay of the stopped event lands on a live node
    version = scenes.core.read_node(scene.node_name).metadata.resource_version
    result = run(cluster_env, f"state-change-{state}", scene.instance_id, age_seconds=30)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "outdated"
    assert result.result["instance_state"] == "running"
    assert result.result["basis"] == "outdated"
    assert scenes.core.read_node(scene.node_name).metadata.resource_version == version
    assert OUT_OF_SERVICE not in node_state(scenes, scene.node_name)[1]
    assert not any(pods_left(scenes, scene).values()), "no pod of the live node is being deleted"
    assert len(pods_left(scenes, scene)) == len(scene.all_pods())
    assert "EventsOutdated" in result.output


@pytest.mark.parametrize("state", ["stopping", "shutting-down"])
def test_state_change_replayed_late_for_a_running_instance_changes_nothing(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene, state: str
) -> None:
    version = scenes.core.read_node(scene.node_name).metadata.resource_version
    result = run(cluster_env, f"state-change-{state}", scene.instance_id, age_seconds=100)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "outdated"
    assert scenes.core.read_node(scene.node_name).metadata.resource_version == version
    assert not any(pods_left(scenes, scene).values())


def test_spot_event_ten_minutes_old_for_a_running_instance_drains_gently(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    with PodWatcher(scenes, scene.namespace) as seen:
        result = run(cluster_env, "spot-interruption", scene.instance_id, age_seconds=600)
    assert result.exit_code == 0, result.output
    out = result.result
    assert out["outcome"] == "drained"
    assert out["basis"] == "past-deadline"
    assert out["drain"]["deleted_past_pdb"] == 0
    assert out["drain"]["grace_capped"] == 0
    # every pod got its own grace period on the server, and the PDB was never broken
    assert seen.deletion_grace == own_graces(scene)
    assert seen.min_ready["web"] >= 2


def test_spot_event_ten_minutes_old_for_a_terminated_instance_marks_the_node_out_of_service(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    scenes.ec2.terminate_instances(InstanceIds=[scene.instance_id])
    wait_ec2_state(scenes, scene.instance_id, "terminated")
    result = run(cluster_env, "spot-interruption", scene.instance_id, age_seconds=600)
    assert result.exit_code == 0, result.output
    out = result.result
    assert out["outcome"] == "cordoned"
    assert out["basis"] == "instance-gone"
    assert out["drain"] is None  # its pods are already dead: no evictions to wait for
    unschedulable, taints = node_state(scenes, scene.node_name)
    assert unschedulable
    assert taints[OUT_OF_SERVICE] == "NoExecute"
    assert taints["serverless-nth/spot-interruption"] == "NoSchedule"


def test_stopping_event_replayed_late_for_a_stopped_instance_marks_the_node_out_of_service(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    scenes.ec2.stop_instances(InstanceIds=[scene.instance_id])
    wait_ec2_state(scenes, scene.instance_id, "stopped")
    result = run(cluster_env, "state-change-stopping", scene.instance_id, age_seconds=100)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "cordoned"
    assert result.result["basis"] == "instance-gone"
    assert OUT_OF_SERVICE in node_state(scenes, scene.node_name)[1]


def test_rebalance_drain_delivered_after_its_deadline_gives_every_pod_its_own_grace(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    # the shipped settings allow it: 900 s maximum event age against a 300 s drain deadline
    with PodWatcher(scenes, scene.namespace) as seen:
        result = run(
            cluster_env,
            "rebalance-recommendation",
            scene.instance_id,
            params={"DrainOnRebalance": "true"},
            age_seconds=400,
        )
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "drained"
    assert result.result["drain"]["deleted_past_pdb"] == 0
    assert seen.deletion_grace == own_graces(scene)
    assert seen.min_ready["web"] >= 2


def test_spot_event_on_time_still_caps_grace_to_the_time_left(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    # The warning came 100 s ago: 20 s left, less the 5 s margin; the 30 s pod gets at most 15 s.
    with PodWatcher(scenes, scene.namespace) as seen:
        result = run(cluster_env, "spot-interruption", scene.instance_id, age_seconds=100)
    assert result.exit_code == 0, result.output
    assert result.result["basis"] == "event"
    batch = scene.pods["long-grace"][0]
    assert GRACE_FLOOR_SECONDS <= seen.deletion_grace[batch] <= 15
    assert result.result["drain"]["grace_capped"] >= 1
    short = {p: g for p, g in seen.deletion_grace.items() if p != batch}
    assert short
    assert all(g == 5 for g in short.values())
