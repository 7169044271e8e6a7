"""AWS Health scheduled changes followed to their end (issue 20): the same ``eventArn`` comes again
as its status moves to ``closed`` or its window moves; an execution waiting or draining for it
stops when a newer version drives the drain or the maintenance is over; an instance stopped and
started since the event is not drained. Each against the local EKS, under the durable runner."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from localeks.invoke import invoke
from localeks.scenes import Scenes
from tests.integration.long_drains import (
    LEASE,
    SCHEDULED,
    SCHEDULED_TAINT,
    hand_back_after_reboot,
    health_event,
    in_background,
    named,
    steps,
    wait_leased,
)
from tests.integration.support import node_state, pods_left, wait_ec2_state


def test_a_closed_event_hands_a_running_node_back_and_leaves_an_operators_cordon(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    ours, operators = scenes.worker_node(spot=False), scenes.worker_node(spot=False)
    scenes.core.patch_node(operators.node_name, {"spec": {"unschedulable": True}})  # kubectl cordon
    upcoming = health_event([ours.instance_id], 3 * 3600, "upcoming")
    first = invoke(SCHEDULED, upcoming, cluster_env)
    assert first.result["result"]["outcomes"] == {ours.instance_id: "drained"}, first.output[-3000:]
    assert node_state(scenes, ours.node_name) == (True, {SCHEDULED_TAINT: "NoSchedule"})

    closed = health_event([ours.instance_id, operators.instance_id], -3600, "closed")
    result = invoke(SCHEDULED, closed, cluster_env)
    assert result.exit_code == 0, result.output[-3000:]
    outcomes = result.result["result"]["outcomes"]
    # what the upcoming version did is undone; the operator's cordon is not ours to undo
    assert outcomes == {ours.instance_id: "restored", operators.instance_id: "ignored"}, outcomes
    assert node_state(scenes, ours.node_name) == (False, {})
    assert node_state(scenes, operators.node_name) == (True, {})
    assert not named(result, "drain-")


def test_a_draining_execution_stops_when_a_newer_version_takes_over_and_when_the_event_closes(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    node = scenes.worker_node(spot=False)
    scenes.worker_node(spot=False)  # room for the replacements
    namespace = scenes.namespace("health")
    pods = scenes.deployment(namespace, "api", node.node_name, 2, grace=2, pdb_max_unavailable=0)
    scenes.wait_pdbs(namespace)
    params = {"ScheduledChangeLeadSeconds": "3600"}  # both windows within the lead time: drain at once
    first_thread, first = in_background(health_event([node.instance_id], 240, "upcoming"), cluster_env, params)
    wait_leased(scenes, node.node_name)
    # the window moved: Health sends the same eventArn again, newer
    second_thread, second = in_background(health_event([node.instance_id], 300, "open"), cluster_env, params)
    first_thread.join(timeout=150)
    assert first, "the first execution did not stop"
    assert first[0].result["result"]["outcomes"] == {node.instance_id: "superseded"}, first[0].output[-3000:]
    # the maintenance is over while the newer execution still drains (the budget holds)
    closed = invoke(SCHEDULED, health_event([node.instance_id], -60, "closed"), cluster_env)
    assert closed.result["result"]["outcomes"] == {node.instance_id: "restored"}, closed.output[-3000:]
    second_thread.join(timeout=150)
    assert second, "the newer execution did not stop"
    assert second[0].result["result"]["outcomes"] == {node.instance_id: "marks-removed"}, second[0].output[-3000:]
    assert node_state(scenes, node.node_name) == (False, {})
    left = {p.metadata.name for p in scenes.core.list_namespaced_pod(namespace).items}
    assert set(pods) <= left, (pods, left)


def test_an_instance_stopped_and_started_since_the_event_is_not_drained_and_is_handed_back(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    node = scenes.node_with_workloads(grace=2, long_grace=2)
    scenes.worker_node(spot=False)
    # the user moved the instance off the retiring hardware (a stop and a start) after the event
    event = health_event([node.instance_id], 3 * 3600, "upcoming")
    scenes.ec2.stop_instances(InstanceIds=[node.instance_id])
    wait_ec2_state(scenes, node.instance_id, "stopped")
    scenes.ec2.start_instances(InstanceIds=[node.instance_id])
    wait_ec2_state(scenes, node.instance_id, "running")
    result = invoke(SCHEDULED, event, cluster_env, {"ScheduledChangeLeadSeconds": "600"})
    assert result.exit_code == 0, result.output[-3000:]
    assert result.result["result"]["outcomes"] == {node.instance_id: "instance-restarted"}, result.result
    assert not named(result, "drain-")
    assert node_state(scenes, node.node_name) == (False, {})
    # nothing was evicted: every pod of the node is still on it, none terminating
    assert all(not terminating for terminating in pods_left(scenes, node).values())
    assert set(pods_left(scenes, node)) == set(node.all_pods())


def test_after_a_reboot_maintenance_the_node_is_handed_back_once_it_booted_again_and_runs(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    node = scenes.worker_node(spot=False)
    scenes.worker_node(spot=False)  # room for the replacements
    namespace = scenes.namespace("reboot")
    scenes.deployment(namespace, "api", node.node_name, 1, grace=1, pdb_max_unavailable=None)
    event = health_event([node.instance_id], 15, "upcoming")
    event["detail"]["eventTypeCode"] = "AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED"
    result = hand_back_after_reboot(cluster_env, scenes, node.node_name, event)
    assert result.result["result"]["outcomes"] == {node.instance_id: "handed-back"}, result.output[-3000:]
    assert node_state(scenes, node.node_name) == (False, {})


@pytest.mark.timeout(600)  # about 150 s on a quiet machine: twelve rounds of 10 s and their invocations
def test_twelve_instances_held_by_their_budgets_each_get_their_rounds_within_the_deployed_timeout(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    """One invocation runs one round, and the nodes of one event share a minute (rounds of 10 s for
    twelve): were the rounds of the twelve nodes one invocation's work, it would run 12 x 60 s
    against the function's 180 s Timeout (template.yaml; the local runner's invocation timeout)."""
    nodes = [scenes.worker_node(spot=False) for _ in range(12)]
    scenes.worker_node(spot=False)
    namespace = scenes.namespace("twelve")
    for i, node in enumerate(nodes):
        scenes.deployment(namespace, f"api-{i}", node.node_name, 1, grace=1, pdb_max_unavailable=0)
    scenes.wait_pdbs(namespace)
    event = health_event([n.instance_id for n in nodes], 60, "upcoming")
    result = invoke(SCHEDULED, event, cluster_env, {"ScheduledChangeLeadSeconds": "3600"})
    assert result.exit_code == 0, result.output[-3000:]
    out = result.result
    assert out["status"] == "SUCCEEDED", out.get("error")
    # every budget held to the window's start: each node was drained in rounds, none finished
    assert set(out["result"]["outcomes"].values()) == {"drain-incomplete"}, out["result"]
    ops = steps(result)
    rounds = [(i, op) for i, op in enumerate(ops) if op["name"].startswith("drain-")]
    assert {op["name"].rsplit("-", 1)[0] for _, op in rounds} == {f"drain-{n.instance_id}" for n in nodes}
    for i, op in rounds:
        assert op["ended"] - op["started"] <= 20, op  # a round: its 10 s share, and its last answers
        assert ops[i + 1]["type"] == "WAIT", ops[i + 1]  # then the invocation ends


def test_a_replay_takes_over_the_lease_of_an_execution_that_missed_its_own_promise(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    node = scenes.node_with_workloads(grace=1, long_grace=1)
    scenes.worker_node(spot=False)
    event = health_event([node.instance_id], 3 * 3600, "upcoming")
    sent = datetime.datetime.fromisoformat(event["time"]).astimezone(datetime.UTC).isoformat()
    claim = {"execution": "arn:aws:lambda:us-east-1:123456789012:function:x:1/durable-execution/dead/1"}
    claim.update(event_id=event["id"], key=event["detail"]["eventArn"], version=sent)
    # the first execution died: it promised to be back 11 minutes ago (the margin is 10)
    lease = json.dumps({**claim, "renewed": time.time() - 720, "until": time.time() - 660})
    scenes.core.patch_node(node.node_name, {"metadata": {"annotations": {LEASE: lease}}})
    result = invoke(SCHEDULED, event, cluster_env, {"ScheduledChangeLeadSeconds": "600"})
    assert result.result["result"]["outcomes"] == {node.instance_id: "drained"}, result.output[-3000:]
    # while a lease still promised (a live execution waiting for the window) is left to its holder
    other = scenes.node_with_workloads(grace=1, long_grace=1)
    again = health_event([other.instance_id], 3 * 3600, "upcoming")
    claim.update(event_id=again["id"], version=datetime.datetime.fromisoformat(again["time"]).isoformat())
    lease = json.dumps({**claim, "renewed": time.time(), "until": time.time() + 3 * 3600})
    scenes.core.patch_node(other.node_name, {"metadata": {"annotations": {LEASE: lease}}})
    result = invoke(SCHEDULED, again, cluster_env, {"ScheduledChangeLeadSeconds": "600"})
    assert result.result["result"]["outcomes"] == {other.instance_id: "duplicate"}, result.output[-3000:]
