"""The load-balancer exclusion label only where traffic should move (issue 25, item 3): with a drain,
not with a cordon alone; and a node whose cordon someone else removed is reported (a Warning Event,
NodesUncordonedByOthers), not left half-handled in silence."""

from __future__ import annotations

from localeks.scenes import Scenes
from tests.integration.support import node_state, run

LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
REBALANCE_TAINT = "serverless-nth/rebalance-recommendation"


def labels(scenes: Scenes, node_name: str) -> dict[str, str]:
    return dict(scenes.core.read_node(node_name).metadata.labels or {})


def test_a_cordon_only_rebalance_leaves_the_node_in_its_load_balancers(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scene = scenes.worker_node()
    result = run(cluster_env, "rebalance-recommendation", scene.instance_id)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "cordoned"
    assert result.result["lb_excluded"] is False
    unschedulable, taints = node_state(scenes, scene.node_name)
    assert unschedulable
    assert REBALANCE_TAINT in taints
    assert LB_LABEL not in labels(scenes, scene.node_name)


def test_a_rebalance_that_drains_excludes_the_node(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node()
    result = run(cluster_env, "rebalance-recommendation", scene.instance_id, params={"DrainOnRebalance": "true"})
    assert result.exit_code == 0, result.output
    assert result.result["lb_excluded"] is True
    assert labels(scenes, scene.node_name)[LB_LABEL] == "true"


def test_a_node_uncordoned_by_someone_else_is_reported_on_the_next_event(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scene = scenes.worker_node()
    first = run(cluster_env, "rebalance-recommendation", scene.instance_id)
    assert first.exit_code == 0, first.output
    scenes.core.patch_node(scene.node_name, {"spec": {"unschedulable": None}})  # kubectl uncordon
    second = run(cluster_env, "rebalance-recommendation", scene.instance_id)  # a new recommendation
    assert second.exit_code == 0, second.output
    assert "NodesUncordonedByOthers" in second.output
    events = scenes.core.list_namespaced_event("default", field_selector=f"involvedObject.name={scene.node_name}")
    [told] = [e for e in events.items if e.reason == "UncordonedByOther"]
    assert told.type == "Warning"
    assert REBALANCE_TAINT in told.message
    # cordoned again by that event: nothing more to tell
    again = run(cluster_env, "rebalance-recommendation", scene.instance_id)
    assert again.exit_code == 0, again.output
    assert "NodesUncordonedByOthers" not in again.output
