"""The Spot, rebalance and state-change functions through their Lambda entry points (the local invoke runs them as
template.yaml defines them), with the files in events/, against the local EKS, with the shipped
ClusterRole as their only Kubernetes permission."""

from __future__ import annotations

import threading
import time

import pytest

from localeks.invoke import Invocation
from localeks.scenes import NodeScene, Scenes
from tests.eventfiles import load_event
from tests.integration.support import ec2_state, node_state, pods_left, run, wait_ec2_state


def stop_or_terminate(scenes: Scenes, instance_id: str, state: str) -> None:
    if state in ("stopping", "stopped"):
        scenes.ec2.stop_instances(InstanceIds=[instance_id])
    else:
        scenes.ec2.terminate_instances(InstanceIds=[instance_id])


@pytest.fixture
def scene(scenes: Scenes) -> NodeScene:
    return scenes.node_with_workloads(grace=5, long_grace=30)


def test_spot_interruption_cordons_taints_and_drains(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    healthy_web: list[int] = []
    done = threading.Event()

    def watch_budget() -> None:  # the PDB allows one web pod down at a time
        while not done.is_set():
            pods = scenes.core.list_namespaced_pod(scene.namespace, label_selector="app=web").items
            healthy_web.append(
                sum(
                    1
                    for p in pods
                    if p.metadata.deletion_timestamp is None
                    and p.status.phase == "Running"
                    and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                )
            )
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_budget)
    watcher.start()
    try:
        result = run(cluster_env, "spot-interruption", scene.instance_id)
    finally:
        done.set()
        watcher.join()
    assert result.exit_code == 0, result.output
    out = result.result
    assert out["outcome"] == "drained"
    assert out["node"] == scene.node_name
    assert out["cordoned"] is True
    assert out["taints_added"] == ["serverless-nth/spot-interruption"]
    unschedulable, taints = node_state(scenes, scene.node_name)
    assert unschedulable
    assert taints["serverless-nth/spot-interruption"] == "NoSchedule"
    drain = out["drain"]
    evictable = scene.pods["deployment"] + scene.pods["long-grace"] + scene.pods["emptydir"] + scene.pods["bare"]
    assert sorted(drain["pods"]) == sorted(f"{scene.namespace}/{p}" for p in evictable)
    assert set(drain["pods"].values()) == {"evicted"}
    assert drain["skipped"] == {"daemonset": 1, "mirror": 1}
    assert drain["completed"]
    assert drain["remaining"] == []
    # what is left on the node is exactly the DaemonSet pod and the mirror pod, untouched
    assert pods_left(scenes, scene) == {scene.pods["daemonset"][0]: False, scene.pods["mirror"][0]: False}
    # the Deployment under its PDB drained no faster than its budget allows: never fewer than 2 of
    # its 3 pods Ready (how many evictions the API refused on the way depends on how fast the
    # replacements turn Ready, so that count is reported, not asserted)
    assert min(healthy_web) >= 2, f"the PDB (maxUnavailable 1 of 3) was broken: {min(healthy_web)} healthy"
    assert '"outcome":"drained"' in result.output.replace(" ", "")


def test_rebalance_cordons_and_taints_without_evicting(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    before = pods_left(scenes, scene)
    result = run(cluster_env, "rebalance-recommendation", scene.instance_id)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "cordoned"
    assert result.result["drain"] is None
    unschedulable, taints = node_state(scenes, scene.node_name)
    assert unschedulable
    assert "serverless-nth/rebalance-recommendation" in taints
    assert pods_left(scenes, scene) == before
    assert all(not terminating for terminating in before.values())


def test_rebalance_drains_when_enabled(cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene) -> None:
    result = run(cluster_env, "rebalance-recommendation", scene.instance_id, params={"DrainOnRebalance": "true"})
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "drained"
    assert result.result["drain"]["evicted"] == 6
    assert set(pods_left(scenes, scene)) == {scene.pods["daemonset"][0], scene.pods["mirror"][0]}


@pytest.mark.parametrize("state", ["stopping", "shutting-down"])
def test_stopping_and_shutting_down_drain(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene, state: str
) -> None:
    # EC2 reports stopping / shutting-down for a while after the call, as the event says
    stop_or_terminate(scenes, scene.instance_id, state)
    assert ec2_state(scenes, scene.instance_id) == state
    result = run(cluster_env, f"state-change-{state}", scene.instance_id)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "drained"
    assert (result.result["instance_state"], result.result["basis"]) == (state, "event")
    assert result.result["taints_added"] == [f"serverless-nth/instance-{state}"]
    assert set(pods_left(scenes, scene)) == {scene.pods["daemonset"][0], scene.pods["mirror"][0]}


@pytest.mark.parametrize("state", ["stopped", "terminated"])
def test_stopped_and_terminated_mark_the_node_out_of_service(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene, state: str
) -> None:
    before = pods_left(scenes, scene)
    stop_or_terminate(scenes, scene.instance_id, state)
    wait_ec2_state(scenes, scene.instance_id, state)
    result = run(cluster_env, f"state-change-{state}", scene.instance_id)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "cordoned"
    unschedulable, taints = node_state(scenes, scene.node_name)
    assert unschedulable
    assert taints[f"serverless-nth/instance-{state}"] == "NoSchedule"
    assert taints["node.kubernetes.io/out-of-service"] == "NoExecute"
    assert result.result["drain"] is None  # the pods are already dead: nothing to wait for
    # Kubernetes itself now deletes the pods that do not tolerate out-of-service, at once
    # instead of after the unreachable timeout, so their replacements start elsewhere.
    deadline = time.monotonic() + 20
    while pods_left(scenes, scene) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pods_left(scenes, scene) == {}
    assert before


@pytest.mark.parametrize(("state", "requests"), [("pending", 0), ("running", 1)])
def test_pending_and_running_change_nothing_on_a_node_without_our_marks(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene, state: str, requests: int
) -> None:
    version = scenes.core.read_node(scene.node_name).metadata.resource_version
    result = run(cluster_env, f"state-change-{state}", scene.instance_id)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "ignored"
    # pending: nothing at all; running: one GET shows nothing of ours to undo
    assert result.result["api_requests"] == requests
    assert scenes.core.read_node(scene.node_name).metadata.resource_version == version


def test_node_whose_name_is_not_the_private_dns_name_is_found(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node(custom_name=f"spot-worker-{int(time.time() * 1000) % 100000}")
    result = run(cluster_env, "spot-interruption", scene.instance_id)
    assert result.exit_code == 0, result.output
    assert result.result["node"] == scene.node_name
    assert result.result["outcome"] == "drained"
    assert node_state(scenes, scene.node_name)[0] is True


def test_instance_of_another_cluster_is_a_quiet_no_op(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node(cluster="someone-elses-cluster")
    result = run(cluster_env, "spot-interruption", scene.instance_id)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "not-this-cluster"
    assert result.result["api_requests"] == 0
    assert "InstanceNotInCluster" in result.output


def test_plain_ec2_instance_without_a_node_is_a_quiet_no_op(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node(cluster=None)
    result = run(cluster_env, "spot-interruption", scene.instance_id)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "node-not-found"
    assert "NodeNotFound" in result.output


def test_unknown_instance_is_a_quiet_no_op(cluster_env: dict[str, str]) -> None:
    result = run(cluster_env, "spot-interruption", "i-0000000000deadbee")
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "instance-not-found"
    assert "InstanceNotFound" in result.output


def test_malformed_event_fails_clearly_and_changes_nothing(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    event = load_event("spot-interruption", instance_id=scene.instance_id, now=True)
    del event["detail"]["instance-action"]
    version = scenes.core.read_node(scene.node_name).metadata.resource_version
    result = run(cluster_env, "spot-interruption", scene.instance_id, event=event)
    assert result.exit_code == 1  # Lambda retries it, then the on-failure queue keeps it for replay
    assert result.result["errorType"] == "MalformedEvent"
    assert "instance-action" in result.result["errorMessage"]
    assert '"outcome":"malformed"' in result.output.replace(" ", "")
    assert "MalformedEvents" in result.output
    assert scenes.core.read_node(scene.node_name).metadata.resource_version == version


def test_same_event_twice_ends_as_one_delivery(cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene) -> None:
    event = load_event("spot-interruption", instance_id=scene.instance_id, now=True)
    first = run(cluster_env, "spot-interruption", scene.instance_id, event=event)
    after_first = node_state(scenes, scene.node_name), pods_left(scenes, scene)
    second = run(cluster_env, "spot-interruption", scene.instance_id, event=event)
    assert first.exit_code == second.exit_code == 0
    assert first.result["outcome"] == second.result["outcome"] == "drained"
    assert second.result["cordoned"] is False
    # the node says which event cordoned it, so a retry after a lost answer knows it was its own
    assert second.result["cordoned_by_this_event"] is True
    assert second.result["node_unschedulable"] is True
    annotations = scenes.core.read_node(scene.node_name).metadata.annotations
    assert annotations["serverless-nth/cordoned-by"] == event["id"]
    assert second.result["taints_added"] == []
    assert second.result["drain"]["pods"] == {}
    assert (node_state(scenes, scene.node_name), pods_left(scenes, scene)) == after_first
    taints = scenes.core.read_node(scene.node_name).spec.taints
    assert [t.key for t in taints].count("serverless-nth/spot-interruption") == 1
    # kubectl describe node tells why, once
    events = scenes.core.list_namespaced_event("default", field_selector=f"involvedObject.name={scene.node_name}").items
    assert sorted(e.reason for e in events) == ["DrainCompleted", "SpotInterruptionWarning"]
    assert all(e.reporting_component == "serverless-nth" for e in events)


def test_two_events_for_one_node_at_once_lose_nothing(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    results: dict[str, Invocation] = {}
    threads = [
        threading.Thread(target=lambda n=name: results.__setitem__(n, run(cluster_env, n, scene.instance_id)))
        for name in ("spot-interruption", "state-change-shutting-down")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.exit_code == 0 for r in results.values()), [r.output[-2000:] for r in results.values()]
    unschedulable, taints = node_state(scenes, scene.node_name)
    assert unschedulable
    assert {"serverless-nth/spot-interruption", "serverless-nth/instance-shutting-down"} <= set(taints)
    assert set(pods_left(scenes, scene)) == {scene.pods["daemonset"][0], scene.pods["mirror"][0]}
    assert {r.result["outcome"] for r in results.values()} == {"drained"}


def test_dry_run_changes_nothing_and_says_what_it_would_do(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    version = scenes.core.read_node(scene.node_name).metadata.resource_version
    before = pods_left(scenes, scene)
    result = run(cluster_env, "spot-interruption", scene.instance_id, params={"DryRun": "true"})
    assert result.exit_code == 0, result.output
    out = result.result
    assert out["outcome"] == "dry-run"
    assert out["dry_run"] is True
    assert out["cordoned"] is True
    assert out["taints_added"] == ["serverless-nth/spot-interruption"]
    fates = out["drain"]["pods"]
    assert set(fates.values()) <= {"would-evict", "would-block"}
    assert len(fates) == 6
    assert scenes.core.read_node(scene.node_name).metadata.resource_version == version
    assert pods_left(scenes, scene) == before
