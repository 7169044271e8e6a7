"""Long drains against the local EKS: Auto Scaling terminate lifecycle actions (the local moto
extension in localeks/autoscaling.py plays the group) and AWS Health scheduled changes, each run
as the durable function template.yaml defines, under the durable execution SDK's in-process
runner (localeks/lambda_runtime.py), invocation after invocation, with the real handler."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from localeks.dashboard import read_emf
from localeks.invoke import Invocation, invoke
from localeks.node_group import HEARTBEAT_TIMEOUT, NodeGroup
from localeks.scenes import NodeScene, Scenes
from tests.eventfiles import load_event
from tests.integration.long_drains import (
    LIFECYCLE,
    SCHEDULED,
    at,
    free_the_budget,
    named,
    scale_in_under_budget,
    steps,
    wait_leased,
)
from tests.integration.support import node_state, pods_left
from tests.metric_names import names_the_code_emits

# under pytest-xdist, this module's tests run on one worker in their order: the last one reads EMITTED
pytestmark = pytest.mark.xdist_group("long-drains")

# the EMF metric records of every execution of this module, for its last test
EMITTED: list[dict[str, Any]] = []


def deliver(
    function: str, event: dict[str, Any], cluster_env: dict[str, str], params: dict[str, str] | None = None
) -> Invocation:
    """The local invoke, as Lambda's durable execution service would run the function; its metrics
    are kept for the module's last test."""
    result = invoke(function, event, cluster_env, params)
    EMITTED.extend(read_emf(result.output.splitlines()))
    return result


def test_a_lifecycle_action_held_by_a_pdb_is_kept_alive_until_the_budget_frees_then_continued_once(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scaling = scale_in_under_budget(cluster_env, scenes, "held")
    group, ns, pods, event = scaling.group, scaling.namespace, scaling.pods, scaling.event
    hold = 2 * HEARTBEAT_TIMEOUT  # the budget refuses every eviction this long: past two heartbeat timeouts

    def free_later() -> None:
        time.sleep(hold)
        free_the_budget(scenes, ns)

    threading.Thread(target=free_later, daemon=True).start()
    started = time.time()
    result = deliver(LIFECYCLE, event, cluster_env)
    assert result.exit_code == 0, result.output[-3000:]
    out = result.result
    assert out["status"] == "SUCCEEDED", out
    assert out["result"]["outcome"] == "drained", out["result"]
    assert out["result"]["completed"] is True
    assert time.time() - started >= hold  # the drain lasted as long as the budget held

    # heartbeats: one before the drain, then one per round, never further apart than half the
    # hook's timeout plus a round's slack; the action never expired
    beats = [at(c["time"]) for c in group.calls("RecordLifecycleActionHeartbeat") if c["outcome"] == "ok"]
    assert len(beats) >= hold / (HEARTBEAT_TIMEOUT / 2) - 1, beats
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    print(f"drain {time.time() - started:.1f} s, heartbeat gaps {[round(g, 1) for g in gaps]} s")
    assert max(gaps) < HEARTBEAT_TIMEOUT, gaps
    (action,) = group.actions()
    assert (action["state"], action["result"]) == ("completed", "CONTINUE"), action
    completes = group.calls("CompleteLifecycleAction")
    assert [c["outcome"] for c in completes] == ["ok"], completes
    assert at(completes[0]["time"]) > beats[-1]

    # every pod left by eviction, after the budget allowed it; the node stays cordoned for the end
    assert not any(p.metadata.name in pods for p in scenes.pods_on(group.node_name))
    unschedulable, taints = node_state(scenes, group.node_name)
    assert unschedulable
    assert "serverless-nth/asg-terminating" in taints
    # the lease was let go; the execution's record shows each drain round and heartbeat
    node = scenes.core.read_node(group.node_name)
    assert "serverless-nth/drain-lease" not in (node.metadata.annotations or {})
    assert len(named(result, "drain-")) >= 2
    order = [op["name"] for op in steps(result)]
    assert order[:3] == ["event-time", "hook", "cordon"]
    # the node is empty: its VolumeAttachments are waited for (none here) before the completion
    assert order.index("drained") < order.index("volumes") < order.index("complete"), order
    assert "LifecycleHeartbeats" in result.output
    assert "LifecycleActionsCompleted" in result.output


def test_an_instance_without_a_node_is_continued_at_once(cluster_env: dict[str, str], scenes: Scenes) -> None:
    group = NodeGroup(cluster_env, scenes, node=False)
    event = group.scale_in()
    started = time.time()
    result = deliver(LIFECYCLE, event, cluster_env)
    assert result.exit_code == 0, result.output[-3000:]
    out = result.result["result"]
    assert (out["outcome"], out["completed"]) == ("node-not-found", True), out
    # at once: within the hook's HeartbeatTimeout (30 s; the action, never heartbeated, would have
    # expired and the completion not been "ok"). It takes about 1.3 s alone; 24 s once under CI's
    # load (2026-12-03), past the 20 s this bound was before
    assert time.time() - started < HEARTBEAT_TIMEOUT
    assert [c["outcome"] for c in group.calls("CompleteLifecycleAction")] == ["ok"]
    assert not named(result, "drain-")


def test_a_duplicate_delivery_neither_drains_nor_completes_twice(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scaling = scale_in_under_budget(cluster_env, scenes, "dup")
    group, event = scaling.group, scaling.event
    results: dict[int, Invocation] = {}

    def delivery(i: int) -> None:
        results[i] = deliver(LIFECYCLE, event, cluster_env)

    first = threading.Thread(target=delivery, args=(0,))
    first.start()
    wait_leased(scenes, group.node_name)  # the first execution holds the lease and is draining (the PDB refuses)
    delivery(1)  # EventBridge delivers the same event again
    free_the_budget(scenes, scaling.namespace)
    first.join()
    assert results[1].result["result"]["outcome"] == "duplicate", results[1].result
    assert not named(results[1], "drain-")
    assert not named(results[1], "complete")
    assert results[0].result["result"]["outcome"] == "drained", results[0].result
    assert [c["outcome"] for c in group.calls("CompleteLifecycleAction")] == ["ok"]
    # and a delivery after the action was completed finds nothing waiting
    late = deliver(LIFECYCLE, event, cluster_env)
    assert late.result["result"]["outcome"] == "outdated", late.result
    assert [c["outcome"] for c in group.calls("CompleteLifecycleAction")] == ["ok"]


def test_another_owners_hook_is_never_completed(cluster_env: dict[str, str], scenes: Scenes) -> None:
    group = NodeGroup(cluster_env, scenes, hook="log-shipper")
    event = group.scale_in()
    result = deliver(LIFECYCLE, event, cluster_env)
    assert result.result["result"]["outcome"] == "not-our-hook", result.result
    assert group.calls("CompleteLifecycleAction") == []
    assert group.actions()[0]["state"] == "pending"
    unschedulable, _ = node_state(scenes, group.node_name)
    assert not unschedulable


def health_event(instances: list[str], starts_in: float) -> dict[str, Any]:
    event = load_event("scheduled-change", now=True)
    start = time.gmtime(time.time() + starts_in)
    event["detail"]["startTime"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", start)
    event["detail"]["affectedEntities"] = [{"entityValue": i} for i in instances]
    event["resources"] = list(instances)
    return event


@pytest.fixture
def three_nodes(scenes: Scenes) -> list[NodeScene]:
    nodes = [scenes.node_with_workloads(grace=3, long_grace=5) for _ in range(3)]
    scenes.worker_node(spot=False)
    scenes.worker_node(spot=False)
    return nodes


def test_a_health_event_for_three_instances_cordons_all_at_once_and_drains_each_at_its_lead_time(
    cluster_env: dict[str, str], scenes: Scenes, three_nodes: list[NodeScene]
) -> None:
    lead, starts_in = 600, 3 * 3600
    event = health_event([n.instance_id for n in three_nodes], starts_in)
    result = deliver(SCHEDULED, event, cluster_env, {"ScheduledChangeLeadSeconds": str(lead)})
    assert result.exit_code == 0, result.output[-3000:]
    out = result.result
    assert out["status"] == "SUCCEEDED", out
    assert set(out["result"]["outcomes"].values()) == {"drained"}, out["result"]
    order = [op["name"] for op in steps(result)]
    cordons = [i for i, name in enumerate(order) if name.startswith("cordon-")]
    wait = order.index("until-lead-time")
    drains = [i for i, name in enumerate(order) if name.startswith("drain-")]
    # all three cordoned before the wait, every drain after it
    assert len(cordons) == 3, order
    assert max(cordons) < wait < min(drains), order
    # one round per invocation, whatever the number of instances: every round is followed by a wait
    # (a new invocation), so no invocation runs the rounds of several nodes held by their PDBs
    ops = steps(result)
    for i in drains:
        assert ops[i + 1]["type"] == "WAIT", order[i : i + 2]
    waited = next(op for op in steps(result) if op["name"] == "until-lead-time")
    # the wait ends at the window's start minus the lead time (the runner's clock skips it)
    assert abs(waited["scheduled_end"] - (time.time() + starts_in - lead)) < 120, waited
    for node in three_nodes:
        unschedulable, taints = node_state(scenes, node.node_name)
        assert unschedulable
        assert "serverless-nth/scheduled-change" in taints
        # as kubectl drain: the DaemonSet's and the mirror pod stay, every other pod is gone
        assert pods_left(scenes, node) == {node.pods["daemonset"][0]: False, node.pods["mirror"][0]: False}


def test_a_health_event_naming_an_unknown_and_a_foreign_instance_changes_nothing_for_them(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    ours = scenes.worker_node()
    foreign = scenes.worker_node(cluster="another-cluster")
    unknown = "i-0123456789abcdef0"
    event = health_event([unknown, foreign.instance_id, ours.instance_id], 3 * 3600)
    result = deliver(SCHEDULED, event, cluster_env)
    assert result.exit_code == 0, result.output[-3000:]
    outcomes = result.result["result"]["outcomes"]
    assert outcomes == {
        unknown: "instance-not-found",
        foreign.instance_id: "not-this-cluster",
        ours.instance_id: "drained",
    }, outcomes
    # neither is drained, and the foreign instance's node (a scene's) is left as it was
    assert not named(result, f"drain-{foreign.instance_id}")
    assert not named(result, f"drain-{unknown}")
    assert node_state(scenes, foreign.node_name) == (False, {})


def test_a_lifecycle_action_completed_by_someone_else_mid_drain_stops_the_execution(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scaling = scale_in_under_budget(cluster_env, scenes, "taken")
    group, event = scaling.group, scaling.event

    def operator_completes() -> None:
        # the drain is under way, held by the PDB; an operator (or another tool) says CONTINUE
        wait_leased(scenes, group.node_name, settle=2.0)
        group.complete()

    threading.Thread(target=operator_completes, daemon=True).start()
    result = deliver(LIFECYCLE, event, cluster_env)
    out = result.result["result"]
    assert out["outcome"] == "action-ended", out
    assert out["completed"] is False
    # the drain's end is told (the node's Event, the lease let go); nothing was completed twice
    assert named(result, "drained")
    assert not named(result, "complete")
    assert [c["outcome"] for c in group.calls("CompleteLifecycleAction")] == ["ok"]
    lost = [r for r in read_emf(result.output.splitlines()) if r["name"] == "LifecycleActionsLost"]
    assert lost
    assert lost[0]["dimensions"]["outcome"] == "action-ended"  # the alarm's dimensions


def test_every_metric_of_the_long_drains_was_emitted_by_the_executions_above() -> None:
    """Runs last: the metrics only the long drains emit (tests/integration/test_observability.py
    covers the others) each came out of an execution of this module with a value."""
    ours = {"long_drain.py", "lifecycle_drain.py"}
    wanted = {name for name, files in names_the_code_emits().items() if set(files) & ours}
    # the volume-detach step's: tests/integration/test_volume_detach.py runs the step against real
    # VolumeAttachments and checks its count (none is attached in this module's scenes)
    wanted -= {"VolumesStillAttached"}
    valued = {r["name"] for r in EMITTED if r["value"]}
    assert EMITTED, "run the whole module: this test reads the metrics of the executions above"
    assert wanted <= valued, f"never emitted with a value: {sorted(wanted - valued)}"


def test_a_dry_run_of_a_lifecycle_action_completes_nothing(cluster_env: dict[str, str], scenes: Scenes) -> None:
    """`make invoke ... PARAMS="DryRun=true"` of the durable function (issue 19): a dry run changes
    nothing in the cluster, so it must not let the group terminate the instance either."""
    group = NodeGroup(cluster_env, scenes)
    result = deliver(LIFECYCLE, group.scale_in(), cluster_env, {"DryRun": "true"})
    assert result.exit_code == 0, result.output[-3000:]
    assert result.result["result"]["outcome"] == "dry-run", result.result
    assert result.result["result"]["completed"] is False
    assert group.calls("CompleteLifecycleAction") == []
    assert group.calls("RecordLifecycleActionHeartbeat") == []
    (action,) = group.actions()
    assert action["state"] == "pending", "the group still waits: its own timeout decides, as without this stack"
    unschedulable, _ = node_state(scenes, group.node_name)
    assert not unschedulable, "a dry run cordons nothing"


def test_a_lifecycle_event_of_another_region_changes_nothing(cluster_env: dict[str, str], scenes: Scenes) -> None:
    """Checks before side effects (issue 20.8): an event for another region (a bus that receives
    other regions' events, or a forged one) gets no heartbeat and no completion, only its outcome."""
    group = NodeGroup(cluster_env, scenes)
    event = group.scale_in()
    event["region"] = "eu-west-1"
    result = deliver(LIFECYCLE, event, cluster_env)
    assert result.exit_code == 0, result.output[-3000:]
    assert result.result["result"]["outcome"] == "other-account", result.result
    assert group.calls("RecordLifecycleActionHeartbeat") == []
    assert group.calls("CompleteLifecycleAction") == []
    (action,) = group.actions()
    assert action["state"] == "pending"


def test_a_lifecycle_event_stamped_ahead_gets_no_heartbeat(cluster_env: dict[str, str], scenes: Scenes) -> None:
    """Checks before side effects (issue 20.8): the envelope's time is checked before the first
    heartbeat. A time ahead of now (only a forger writes one) changes nothing: no heartbeat, no
    cordon, no completion; the event is counted as malformed and the group's own timeout decides."""
    group = NodeGroup(cluster_env, scenes)
    event = group.scale_in()
    event["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    result = deliver(LIFECYCLE, event, cluster_env)
    assert result.result["status"] == "SUCCEEDED", result.output[-3000:]
    assert result.result["result"]["outcome"] == "malformed", result.result
    assert group.calls("RecordLifecycleActionHeartbeat") == []
    assert group.calls("CompleteLifecycleAction") == []
    (action,) = group.actions()
    assert action["state"] == "pending"
    assert node_state(scenes, group.node_name) == (False, {})
    assert "MalformedEvents" in {r["name"] for r in read_emf(result.output.splitlines()) if r["value"]}
