"""The Capacity Block expiration warning against the local EKS: CapacityBlockExpiryFunction as
template.yaml defines it, under the durable execution SDK's in-process runner, with the
reservation's instances listed from the local moto server (its capacity-reservation-id filter is the
local extension localeks/capacity_reservations.py, tested first here)."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from typing import Any

import pytest

from localeks.cluster import moto_client
from localeks.dashboard import read_emf
from localeks.invoke import Invocation, invoke, restamp
from localeks.scenes import Scenes
from tests.eventfiles import load_event
from tests.integration.long_drains import named, steps
from tests.integration.support import node_state, pods_left

FUNCTION = "CapacityBlockExpiryFunction"
TAINT = "serverless-nth/capacity-block-expiry"


def reservation() -> str:
    return "cr-" + uuid.uuid4().hex[:17]


def warning(reservation_id: str, sent_ago: float = 0) -> dict[str, Any]:
    """The sample warning for ``reservation_id``, sent ``sent_ago`` seconds ago (its end-date 40
    minutes after that, as AWS sends it)."""
    event = load_event("capacity-block-expiry", now=True)
    restamp(event, datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=sent_ago))
    event["detail"]["capacity-reservation-id"] = reservation_id
    event["resources"] = [r.rsplit("/", 1)[0] + "/" + reservation_id for r in event["resources"]]
    return event


def taint_value(scenes: Scenes, node_name: str) -> str | None:
    taints = scenes.core.read_node(node_name).spec.taints or []
    return next((t.value for t in taints if t.key == TAINT), None)


def deliver(event: dict[str, Any], cluster_env: dict[str, str]) -> Invocation:
    result = invoke(FUNCTION, event, cluster_env)
    assert result.exit_code == 0, result.output[-3000:]
    assert result.result["status"] == "SUCCEEDED", result.result
    return result


def test_the_local_ec2_records_a_reservation_s_instances_and_filters_and_pages_them(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    """localeks/capacity_reservations.py: RunInstances into a reservation, DescribeInstances with
    the capacity-reservation-id filter, page by page; an instance outside it has no such field."""
    ec2 = moto_client(cluster_env, "ec2")
    cr = reservation()
    inside = [scenes.instance(spot=False, capacity_reservation=cr)["InstanceId"] for _ in range(3)]
    outside = scenes.instance(spot=False)
    assert "CapacityReservationId" not in outside
    found: list[str] = []
    pages, token = 0, ""
    while True:
        asked: dict[str, Any] = {"Filters": [{"Name": "capacity-reservation-id", "Values": [cr]}], "MaxResults": 5}
        reply = ec2.describe_instances(**asked, **({"NextToken": token} if token else {}))
        pages += 1
        for instance in (i for r in reply["Reservations"] for i in r["Instances"]):
            assert instance["CapacityReservationId"] == cr
            assert instance["CapacityReservationSpecification"]["CapacityReservationTarget"] == {
                "CapacityReservationId": cr
            }
            found.append(instance["InstanceId"])
        token = reply.get("NextToken", "")
        if not token:
            break
    assert sorted(found) == sorted(inside)
    none = ec2.describe_instances(Filters=[{"Name": "capacity-reservation-id", "Values": [reservation()]}])
    assert none["Reservations"] == []


def test_a_warning_cordons_every_node_of_the_reservation_at_once_and_drains_each_leaving_the_others_alone(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    cr = reservation()
    ours = [scenes.node_with_workloads(grace=3, long_grace=5, capacity_reservation=cr) for _ in range(2)]
    foreign = scenes.worker_node(cluster="another-cluster", capacity_reservation=cr)  # same block, other cluster
    elsewhere = scenes.worker_node(spot=False, capacity_reservation=reservation())  # another block
    result = deliver(warning(cr), cluster_env)
    out = result.result["result"]
    assert out["reservation"] == cr
    assert out["outcomes"] == {
        ours[0].instance_id: "drained",
        ours[1].instance_id: "drained",
        foreign.instance_id: "not-this-cluster",
    }, out
    order = [op["name"] for op in steps(result)]
    assert order[0] == "instances"
    cordons = [i for i, name in enumerate(order) if name.startswith("cordon-")]
    drains = [i for i, name in enumerate(order) if name.startswith("drain-")]
    assert len(cordons) == 3, order
    assert max(cordons) < min(drains), order  # all cordoned before any drain
    assert "until-lead-time" not in order  # drained at once: the block's end is 40 minutes away
    assert not named(result, f"drain-{foreign.instance_id}")
    for node in ours:
        # once drained, the node's VolumeAttachments are waited for before its instance terminates
        detached = named(result, f"volumes-{node.instance_id}")
        assert [op["result"]["v"]["attached"]["v"] for op in detached] == [[]], detached  # the SDK types its JSON
        unschedulable, taints = node_state(scenes, node.node_name)
        assert unschedulable
        assert TAINT in taints, taints
        assert taint_value(scenes, node.node_name) == cr
        assert pods_left(scenes, node) == {node.pods["daemonset"][0]: False, node.pods["mirror"][0]: False}
    assert node_state(scenes, foreign.node_name) == (False, {})
    assert node_state(scenes, elsewhere.node_name) == (False, {})
    emitted = {r["name"] for r in read_emf(result.output.splitlines()) if r["value"]}
    assert {"NodesCordoned", "DrainRounds", "NodesDrained", "InstanceNotInCluster"} <= emitted, emitted


def test_before_the_instances_terminate_a_budget_is_respected_however_long_it_holds(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    """Checkpointing minutes: the budget refuses every eviction for 25 s; the drain waits, and the
    pods leave by eviction once it allows, with their own grace periods."""
    cr = reservation()
    node = scenes.worker_node(spot=False, capacity_reservation=cr)
    scenes.worker_node(spot=False)  # room for the replacements
    ns = scenes.namespace("cb-held")
    pods = scenes.deployment(ns, "trainer", node.node_name, 2, grace=5, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    hold = 25.0

    def free_later() -> None:
        time.sleep(hold)
        scenes.policy.patch_namespaced_pod_disruption_budget("trainer", ns, {"spec": {"maxUnavailable": 1}})

    threading.Thread(target=free_later, daemon=True).start()
    started = time.time()
    result = deliver(warning(cr), cluster_env)
    assert result.result["result"]["outcomes"] == {node.instance_id: "drained"}
    assert time.time() - started >= hold  # nothing was forced past the budget
    assert len(named(result, "drain-")) >= 1
    assert not any(p.metadata.name in pods for p in scenes.pods_on(node.node_name))
    emitted = {r["name"] for r in read_emf(result.output.splitlines()) if r["value"]}
    assert "PodsDeletedPastPdb" not in emitted, emitted


@pytest.mark.parametrize("detail_type", ["Capacity Block Reservation Expiration Warning"])
def test_once_the_instances_terminate_the_end_date_caps_grace_and_a_blocked_pod_goes_before_it(
    cluster_env: dict[str, str], scenes: Scenes, detail_type: str
) -> None:
    """A warning sent 39 minutes ago (a replay, a late delivery): the block ends in a minute and
    its instances have begun to terminate, so the Spot rules apply with the end-date as the
    deadline: a pod whose budget never allows is deleted gracefully before it."""
    cr = reservation()
    node = scenes.worker_node(spot=False, capacity_reservation=cr)
    scenes.worker_node(spot=False)
    ns = scenes.namespace("cb-late")
    pods = scenes.deployment(ns, "trainer", node.node_name, 1, grace=5, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    event = {**warning(cr, sent_ago=39 * 60), "detail-type": detail_type}
    started = time.time()
    result = deliver(event, cluster_env)
    assert result.result["result"]["outcomes"] == {node.instance_id: "drained"}, result.result
    assert time.time() - started < 90  # within the minute left, not after the budget
    assert not any(p.metadata.name in pods for p in scenes.pods_on(node.node_name))
    assert taint_value(scenes, node.node_name) == cr
    emitted = {r["name"] for r in read_emf(result.output.splitlines()) if r["value"]}
    assert "PodsDeletedPastPdb" in emitted, emitted


@pytest.mark.parametrize("case", ["another-region", "too-old", "empty-reservation"])
def test_a_warning_that_is_not_ours_or_not_current_lists_and_changes_nothing(
    cluster_env: dict[str, str], scenes: Scenes, case: str
) -> None:
    cr = reservation()
    node = scenes.worker_node(spot=False, capacity_reservation=cr if case != "empty-reservation" else None)
    event = warning(cr, sent_ago=16 * 86400 if case == "too-old" else 0)
    if case == "another-region":
        event["region"] = "eu-west-1"
        event["resources"] = [r.replace(":us-east-1:", ":eu-west-1:") for r in event["resources"]]
    result = deliver(event, cluster_env)
    out = result.result["result"]
    expected = {"another-region": "other-account", "too-old": "malformed", "empty-reservation": None}[case]
    assert out.get("outcome") == expected, out
    assert out["outcomes"] == {}, out
    assert [op["name"] for op in steps(result)] == ["instances"]
    assert node_state(scenes, node.node_name) == (False, {})
    metric = {"another-region": "EventsFromOtherAccount", "too-old": "MalformedEvents"}.get(case, "InstanceNotFound")
    emitted = {r["name"] for r in read_emf(result.output.splitlines()) if r["value"]}
    assert metric in emitted, emitted


def test_a_block_extended_after_its_warning_gets_no_deadline_and_its_budget_holds(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    """The warning came 39 minutes ago, but an extension paid since moved the reservation's end a
    day later (ModifyCapacityReservation stands in for it locally): the instance is not certain to
    go, so the blocked pod is not deleted past its budget; the drain ends at the warning's end-date,
    incomplete, and the node stays cordoned."""
    ec2 = moto_client(cluster_env, "ec2")
    ends = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=60)
    created = ec2.create_capacity_reservation(
        InstanceType="p5.48xlarge",
        InstancePlatform="Linux/UNIX",
        AvailabilityZone="us-east-1b",
        InstanceCount=1,
        EndDateType="limited",
        EndDate=ends,
    )
    cr = created["CapacityReservation"]["CapacityReservationId"]
    node = scenes.worker_node(spot=False, capacity_reservation=cr)
    scenes.worker_node(spot=False)
    ns = scenes.namespace("cb-extended")
    pods = scenes.deployment(ns, "trainer", node.node_name, 1, grace=5, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    ec2.modify_capacity_reservation(
        CapacityReservationId=cr, EndDateType="limited", EndDate=ends + datetime.timedelta(days=1)
    )
    result = deliver(warning(cr, sent_ago=39 * 60), cluster_env)
    assert result.result["result"]["outcomes"] == {node.instance_id: "drain-incomplete"}, result.result
    assert [p.metadata.name for p in scenes.pods_on(node.node_name) if p.metadata.name in pods] == pods
    assert node_state(scenes, node.node_name)[0]  # still cordoned: the operator decides
    emitted = {r["name"] for r in read_emf(result.output.splitlines()) if r["value"]}
    assert "PodsDeletedPastPdb" not in emitted, emitted
    assert "the Capacity Block was extended" in result.output
