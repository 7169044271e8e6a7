"""The drain on the cases kubectl drain knows (k8s.io/kubectl/pkg/drain), against the local EKS:
terminating namespaces, deletions held by a finalizer, orphaned DaemonSet pods; and the checks
that keep a drain on the right node of the right account."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from localeks.invoke import Invocation
from localeks.scenes import NodeScene, Scenes
from tests.integration.support import PodWatcher, aged_event, node_state, pods_left, run, wait_draining

HOLD = "serverless-nth.test/hold"


@pytest.fixture
def scene(scenes: Scenes) -> NodeScene:
    return scenes.node_with_workloads(grace=5, long_grace=30)


def test_pods_of_a_namespace_being_deleted_are_waited_for_not_failed(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scene = scenes.worker_node()
    scenes.worker_node(spot=False)  # room for replacements
    ns = scenes.namespace("doomed")
    # a budget that refuses every eviction, so the drain is still retrying when the namespace goes
    pods = scenes.deployment(ns, "api", scene.node_name, 2, grace=30, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    results: dict[str, Invocation] = {}
    drain = threading.Thread(
        target=lambda: results.__setitem__(
            "r", run(cluster_env, "rebalance-recommendation", scene.instance_id, params={"DrainOnRebalance": "true"})
        )
    )
    drain.start()
    wait_draining(scenes, scene.node_name)  # the evictions are being refused by the PDB now
    scenes.core.delete_namespace(ns)
    drain.join()
    result = results["r"]
    assert result.exit_code == 0, result.output
    out = result.result
    assert out["outcome"] == "drained", out["drain"]
    assert out["drain"]["failed"] == 0
    fates = {ref.split("/")[1]: fate for ref, fate in out["drain"]["pods"].items()}
    assert set(fates) == set(pods)
    assert "namespace-terminating" in fates.values()
    assert set(fates.values()) <= {"namespace-terminating", "gone", "already-terminating"}
    assert out["drain"]["namespace_terminating"] >= 1


def test_a_pod_whose_deletion_a_finalizer_holds_is_not_waited_for(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node()
    ns = scenes.namespace("held")
    scenes.bare_pod(ns, "worker", scene.node_name, grace=1)
    scenes.core.patch_namespaced_pod("worker", ns, {"metadata": {"finalizers": [HOLD]}})
    scenes.wait_running(ns, ["worker"])
    try:
        result = run(cluster_env, "spot-interruption", scene.instance_id, params={"SkipWaitForDeleteSeconds": "3"})
    finally:
        scenes.core.patch_namespaced_pod("worker", ns, {"metadata": {"finalizers": None}})
    assert result.exit_code == 0, result.output
    out = result.result
    # kubectl drain --skip-wait-for-delete-timeout: its grace period ended long ago, it stays
    assert out["outcome"] == "drained", out["drain"]
    assert out["drain"]["pods"] == {f"{ns}/worker": "stuck-terminating"}
    assert out["drain"]["stuck_terminating"] == 1
    assert out["drain"]["duration_seconds"] < 20  # not the whole 120 s
    assert "PodsStuckTerminating" in result.output


def test_an_orphaned_daemonset_pod_is_evicted_and_a_live_one_left(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node()
    ns = scenes.namespace("orphans")
    agent = scenes.daemonset_pod(ns, "agent", scene.node_name)
    # a DaemonSet pod whose DaemonSet was deleted and not yet collected
    orphan = scenes.bare_pod(ns, "old-agent-x1", scene.node_name, grace=1)
    owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "old-agent", "uid": str(uuid.uuid4())}
    scenes.core.patch_namespaced_pod(orphan, ns, {"metadata": {"ownerReferences": [{**owner, "controller": True}]}})
    scenes.wait_running(ns, [agent, orphan])
    result = run(cluster_env, "spot-interruption", scene.instance_id)
    assert result.exit_code == 0, result.output
    out = result.result
    assert out["outcome"] == "drained"
    assert out["drain"]["pods"] == {f"{ns}/{orphan}": "evicted"}
    assert out["drain"]["skipped"] == {"daemonset": 1}
    assert set(pods_left(scenes, NodeScene("", scene.node_name, "", "", "", ns))) == {agent}


@pytest.mark.parametrize(("key", "value"), [("account", "999999999999"), ("region", "eu-west-1")])
def test_an_event_of_another_account_or_region_changes_nothing(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene, key: str, value: str
) -> None:
    event = aged_event("spot-interruption", scene.instance_id)
    event[key] = value
    version = scenes.core.read_node(scene.node_name).metadata.resource_version
    result = run(cluster_env, "spot-interruption", scene.instance_id, event=event)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "other-account"
    assert result.result["api_requests"] == 0
    assert scenes.core.read_node(scene.node_name).metadata.resource_version == version
    assert "EventsFromOtherAccount" in result.output


def _node_without_provider_id(scenes: Scenes, instance: dict[str, Any], internal_ip: str) -> str:
    name = instance["PrivateDnsName"]
    scenes.core.create_node(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        }
    )
    # kwok initialises the node's status once; the address is set after that, as a kubelet would
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        conditions = scenes.core.read_node_status(name).status.conditions or []
        if any(c.type == "Ready" for c in conditions):
            break
        time.sleep(0.2)
    scenes.core.patch_node_status(name, {"status": {"addresses": [{"type": "InternalIP", "address": internal_ip}]}})
    addresses = scenes.core.read_node_status(name).status.addresses or []
    assert [(a.type, a.address) for a in addresses] == [("InternalIP", internal_ip)]
    return name


@pytest.mark.parametrize("internal_ip", ["instance", "192.168.77.7"], ids=["same-ip", "other-ip"])
def test_a_node_with_the_instance_name_but_no_provider_id_is_left_alone_as_unproven(
    cluster_env: dict[str, str], scenes: Scenes, internal_ip: str
) -> None:
    # The same private DNS name, and even the same InternalIP, in another VPC: the default name is
    # made of the address, so neither proves this node is the instance (issue 25, item 6)
    instance = scenes.instance()
    address = instance["PrivateIpAddress"] if internal_ip == "instance" else internal_ip
    name = _node_without_provider_id(scenes, instance, address)
    version = scenes.core.read_node(name).metadata.resource_version
    result = run(cluster_env, "spot-interruption", instance["InstanceId"])
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "identity-unproven"
    assert "NodeNotFound" in result.output
    assert scenes.core.read_node(name).metadata.resource_version == version
    assert node_state(scenes, name)[0] is False


def test_a_drain_held_by_a_pdb_reacts_when_the_budget_frees_not_by_polling(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scene = scenes.worker_node()
    scenes.worker_node(spot=False)
    ns = scenes.namespace("held-budget")
    pods = scenes.deployment(ns, "api", scene.node_name, 2, grace=5, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    results: dict[str, Invocation] = {}
    blocked_for = 12.0
    with PodWatcher(scenes, ns) as seen:
        drain = threading.Thread(
            target=lambda: results.__setitem__(
                "r",
                run(cluster_env, "rebalance-recommendation", scene.instance_id, params={"DrainOnRebalance": "true"}),
            )
        )
        drain.start()
        time.sleep(blocked_for)
        scenes.policy.patch_namespaced_pod_disruption_budget("api", ns, {"spec": {"maxUnavailable": 2}})
        freed_at = None
        while freed_at is None:  # when the disruption controller says the budget allows it
            status = scenes.policy.read_namespaced_pod_disruption_budget_status("api", ns).status
            if (status.disruptions_allowed or 0) > 0:
                freed_at = time.time()
            time.sleep(0.02)
        drain.join()
    result = results["r"]
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "drained"
    reaction = min(seen.deletion_seen_at[p] for p in pods) - freed_at
    refusals_per_pod_minute = result.result["drain"]["pdb_refusals"] / len(pods) / (blocked_for / 60)
    print(
        f"budget freed -> eviction seen: {reaction:.3f} s; refusals per blocked pod per minute: "
        f"{refusals_per_pod_minute:.1f}"
    )
    assert reaction < 1.0
    # a watch, with a 10 s backstop, instead of a retry every second: at most 2 refusals in 12 s
    assert result.result["drain"]["pdb_refusals"] <= 2 * len(pods)


def test_concurrent_duplicates_count_each_eviction_once(
    cluster_env: dict[str, str], scenes: Scenes, scene: NodeScene
) -> None:
    event = aged_event("spot-interruption", scene.instance_id)
    results: dict[int, Invocation] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, run(cluster_env, "", "", event=event)))
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.exit_code == 0 for r in results.values()), [r.output[-1500:] for r in results.values()]
    assert {r.result["outcome"] for r in results.values()} == {"drained"}
    evictable = len(scene.all_pods()) - 2  # all but the DaemonSet and the mirror pod
    assert sum(r.result["drain"]["evicted"] for r in results.values()) == evictable
