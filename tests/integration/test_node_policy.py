"""Per-node policy beside Karpenter, the load-balancer label, nodes that come back, and capacity
reservation interruptions, against the local EKS with Karpenter-shaped and node group nodes."""

from __future__ import annotations

import datetime
import time

import pytest

from localeks.scenes import NodeScene, Scenes
from tests.integration.support import (
    PodWatcher,
    aged_event,
    ec2_state,
    node_state,
    run,
    wait_ec2_state,
)

LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
OURS = (
    "serverless-nth/cordoned-by",
    "serverless-nth/lb-excluded-by",
    "serverless-nth/out-of-service-by",
    "serverless-nth/newest-event-time",
    "serverless-nth/cordon-attempt",
)


def untouched(scenes: Scenes, scene: NodeScene) -> bool:
    """Nothing of this product's on the node (kwok's own status updates may still change it)."""
    node = scenes.core.read_node(scene.node_name)
    return (
        not node.spec.unschedulable
        and not [t for t in node.spec.taints or [] if t.key.startswith("serverless-nth/")]
        and LB_LABEL not in (node.metadata.labels or {})
        and not set(OURS) & set(node.metadata.annotations or {})
    )


@pytest.mark.parametrize(
    ("karpenter", "labels", "params", "event", "outcome"),
    [
        # handle-all (the default): a Karpenter node is a node like any other
        (True, {}, {}, "spot-interruption", "drained"),
        (True, {}, {}, "rebalance-recommendation", "cordoned"),
        # rebalance-only: interruptions go to Karpenter's queue, rebalance stays ours
        (True, {}, {"KarpenterNodes": "rebalance-only"}, "spot-interruption", "left-to-karpenter"),
        (True, {}, {"KarpenterNodes": "rebalance-only"}, "capacity-reservation-interruption", "left-to-karpenter"),
        (True, {}, {"KarpenterNodes": "rebalance-only"}, "rebalance-recommendation", "cordoned"),
        (False, {}, {"KarpenterNodes": "rebalance-only"}, "spot-interruption", "drained"),
        # the per-node rebalance label, set through a NodePool template or a node group's labels
        (
            True,
            {"serverless-nth/rebalance": "drain"},
            {"KarpenterNodes": "rebalance-only"},
            "rebalance-recommendation",
            "drained",
        ),
        (False, {"serverless-nth/rebalance": "drain"}, {}, "rebalance-recommendation", "drained"),
        (
            False,
            {"serverless-nth/rebalance": "cordon"},
            {"DrainOnRebalance": "true"},
            "rebalance-recommendation",
            "cordoned",
        ),
        (True, {"serverless-nth/rebalance": "ignore"}, {}, "rebalance-recommendation", "opted-out"),
        (False, {"serverless-nth/rebalance": "ignore"}, {}, "spot-interruption", "drained"),
        # opted out: never touched
        (True, {"serverless-nth/ignore": "true"}, {}, "spot-interruption", "opted-out"),
        (False, {"serverless-nth/ignore": "true"}, {}, "rebalance-recommendation", "opted-out"),
    ],
)
def test_policy_of_each_node(
    cluster_env: dict[str, str],
    scenes: Scenes,
    karpenter: bool,
    labels: dict[str, str],
    params: dict[str, str],
    event: str,
    outcome: str,
) -> None:
    scene = scenes.karpenter_node(labels=labels) if karpenter else scenes.worker_node(labels=labels)
    result = run(cluster_env, event, scene.instance_id, params=params)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == outcome
    assert f'"outcome":"{outcome}"' in result.output.replace(" ", "")
    if outcome in ("left-to-karpenter", "opted-out"):
        assert untouched(scenes, scene)
        assert result.result["api_requests"] == 1  # the node's GET, which the handler makes anyway
        assert "EventsIgnored" in result.output
    else:
        assert node_state(scenes, scene.node_name)[0] is True
        assert (result.result["drain"] is not None) is (outcome == "drained")
        # whatever the policy: DescribeInstances, GET node, PATCH node, and DescribeCluster (cold start)
        assert result.result["requests_to_cordon"] == 4


def test_only_instances_with_the_managed_tag_are_handled(cluster_env: dict[str, str], scenes: Scenes) -> None:
    tag = {"ManagedTag": "aws-node-termination-handler/managed"}
    untagged = scenes.worker_node()
    tagged = scenes.worker_node(tags={"aws-node-termination-handler/managed": ""})
    skipped = run(cluster_env, "spot-interruption", untagged.instance_id, params=tag)
    handled = run(cluster_env, "spot-interruption", tagged.instance_id, params=tag)
    assert skipped.result["outcome"] == "not-managed"
    assert skipped.result["api_requests"] == 0
    assert node_state(scenes, untagged.node_name)[0] is False
    assert handled.result["outcome"] == "drained"
    # off by default: an untagged instance is handled
    assert run(cluster_env, "spot-interruption", untagged.instance_id).result["outcome"] == "drained"


def test_the_load_balancer_label_comes_with_the_cordon_of_a_drain(cluster_env: dict[str, str], scenes: Scenes) -> None:
    # with a drain only: a cordon alone leaves the pods serving (tests/integration/test_load_balancer_label.py)
    drain = {"DrainOnRebalance": "true"}
    scene = scenes.worker_node()
    result = run(cluster_env, "rebalance-recommendation", scene.instance_id, params=drain)
    assert result.result["outcome"] == "drained"
    assert result.result["lb_excluded"] is True
    assert result.result["requests_to_cordon"] == 4  # cold: one PATCH carries cordon, taint and label
    node = scenes.core.read_node(scene.node_name)
    assert node.spec.unschedulable
    assert node.metadata.labels[LB_LABEL] == "true"
    # as a setting, it can be turned off
    other = scenes.worker_node()
    run(
        cluster_env,
        "rebalance-recommendation",
        other.instance_id,
        params={**drain, "ExcludeFromLoadBalancers": "false"},
    )
    assert LB_LABEL not in (scenes.core.read_node(other.node_name).metadata.labels or {})


def _stop_then_start(cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene) -> dict:  # type: ignore[type-arg]
    scenes.ec2.stop_instances(InstanceIds=[scene.instance_id])
    wait_ec2_state(scenes, scene.instance_id, "stopped")
    stopped = run(cluster_env, "state-change-stopped", scene.instance_id)
    assert stopped.result["outcome"] == "cordoned", stopped.output
    node = scenes.core.read_node(scene.node_name)
    assert {t.key for t in node.spec.taints} >= {"serverless-nth/instance-stopped", OUT_OF_SERVICE}
    assert node.metadata.labels[LB_LABEL] == "true"
    scenes.ec2.start_instances(InstanceIds=[scene.instance_id])
    assert ec2_state(scenes, scene.instance_id) == "running"
    # events are stamped to the second, and only a running event strictly newer than the event that
    # marked the node undoes its marks: a start in the same second as the stop does not happen in EC2
    time.sleep(1.1)
    running = run(cluster_env, "state-change-running", scene.instance_id)
    assert running.exit_code == 0, running.output
    print(
        f"running path: {running.result['api_requests']} Kubernetes requests + DescribeInstances "
        f"(+ DescribeCluster cold), {running.result['seconds']:.3f} s in the handler"
    )
    return dict(running.result)


def test_a_node_that_comes_back_gets_our_changes_undone(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node()
    result = _stop_then_start(cluster_env, scenes, scene)
    assert result["outcome"] == "restored"
    assert set(result["undone"]) == {
        "serverless-nth/instance-stopped",
        OUT_OF_SERVICE,
        "cordon",
        LB_LABEL,
    }
    node = scenes.core.read_node(scene.node_name)
    assert not node.spec.unschedulable
    assert not [t.key for t in node.spec.taints or [] if t.key.startswith("serverless-nth/") or t.key == OUT_OF_SERVICE]
    assert LB_LABEL not in (node.metadata.labels or {})
    assert not set(OURS) & set(node.metadata.annotations or {})


def test_a_node_an_operator_cordoned_stays_cordoned_when_it_comes_back(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scene = scenes.worker_node()
    scenes.core.patch_node(scene.node_name, {"spec": {"unschedulable": True}})  # kubectl cordon
    scenes.core.patch_node(scene.node_name, {"spec": {"taints": [{"key": "team/maintenance", "effect": "NoSchedule"}]}})
    result = _stop_then_start(cluster_env, scenes, scene)
    assert result["outcome"] == "restored"
    assert "cordon" not in result["undone"]
    node = scenes.core.read_node(scene.node_name)
    assert node.spec.unschedulable  # the operator's cordon stays
    assert [t.key for t in node.spec.taints] == ["team/maintenance"]  # and the operator's taint
    assert LB_LABEL not in (node.metadata.labels or {})


def test_running_for_a_node_with_nothing_of_ours_costs_one_read(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node()
    result = run(cluster_env, "state-change-running", scene.instance_id)
    print(f"running path, nothing of ours: {result.result['seconds']:.3f} s in the handler")
    assert result.result["outcome"] == "ignored"
    assert result.result["api_requests"] == 1  # GET node; plus DescribeInstances on the AWS side
    assert untouched(scenes, scene)


def test_capacity_reservation_warning_drains_before_its_termination_time(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scene = scenes.node_with_workloads(grace=5, long_grace=30)
    event = aged_event("capacity-reservation-interruption", scene.instance_id, age_seconds=30)
    # this reservation is reclaimed 60 s after the notice: 30 s are left, less the 5 s margin
    sent = datetime.datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    event["detail"]["instance-termination-time"] = (sent + datetime.timedelta(seconds=60)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    with PodWatcher(scenes, scene.namespace) as seen:
        result = run(cluster_env, "capacity-reservation-interruption", scene.instance_id, event=event)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "drained"
    assert result.result["taints_added"] == ["serverless-nth/capacity-reservation-interruption"]
    batch = scene.pods["long-grace"][0]
    assert 1 <= seen.deletion_grace[batch] <= 25  # a Spot warning's 120 s would have left it 30
