"""Drains that a PodDisruptionBudget holds until a certain end: what ``BlockedPodPolicy`` does with
the blocked pods, and how an incomplete drain is reported (outcome, metrics, the node's Event, the
pods named), checked against what the API server recorded, not only what the handler says.

Every pod here is under a budget that never allows a disruption (``maxUnavailable: 0``), on a Spot
node whose warning came a while ago, so that little time is left before the instance ends."""

from __future__ import annotations

import time
from typing import Any

import pytest

from localeks.dashboard import read_emf
from localeks.invoke import Invocation
from localeks.scenes import NodeScene, Scenes
from serverless_nth.observability import Metric
from tests.integration.support import PodWatcher, aged_event, pods_left, run

GRACE = 5


def metrics_of(invocation: Invocation) -> dict[str, list[float]]:
    """Metric name -> every value the invocation emitted for it (EMF lines)."""
    values: dict[str, list[float]] = {}
    for record in read_emf(invocation.output.splitlines()):
        values.setdefault(record["name"], []).append(record["value"])
    return values


def node_events(scenes: Scenes, node_name: str) -> list[Any]:
    return scenes.core.list_namespaced_event("default", field_selector=f"involvedObject.name={node_name}").items


@pytest.fixture
def held(scenes: Scenes) -> tuple[NodeScene, list[str]]:
    """A Spot node with two pods of a Deployment whose budget refuses every eviction."""
    scene = scenes.worker_node()
    scenes.worker_node(spot=False)  # room for replacements
    scene.namespace = scenes.namespace("held")
    scene.pods["held"] = scenes.deployment(
        scene.namespace, "api", scene.node_name, 2, grace=GRACE, pdb_max_unavailable=0
    )
    scenes.wait_pdbs(scene.namespace)
    return scene, scene.pods["held"]


def test_respect_pdb_leaves_the_blocked_pods_and_reports_the_drain_incomplete(
    cluster_env: dict[str, str], scenes: Scenes, held: tuple[NodeScene, list[str]]
) -> None:
    scene, pods = held
    # of the 120 s a Spot warning gives, 20 s are left
    event = aged_event("spot-interruption", scene.instance_id, age_seconds=100)
    with PodWatcher(scenes, scene.namespace) as seen:
        result = run(
            cluster_env, "", "", event=event, params={"BlockedPodPolicy": "respect-pdb", "DeadlineMarginSeconds": "5"}
        )
    assert result.exit_code == 0, result.output[-3000:]  # PDBs, not errors: nothing for Lambda to retry
    out = result.result
    assert out["basis"] == "event"  # the deadline is certain and still ahead: the policy applies
    assert out["outcome"] == "drain-incomplete", out["drain"]
    drain = out["drain"]
    refs = sorted(f"{scene.namespace}/{p}" for p in pods)
    assert drain["completed"] is False
    assert drain["pods"] == dict.fromkeys(refs, "blocked")
    assert drain["remaining"] == refs
    assert drain["blocked"] == 2
    assert drain["deleted_past_pdb"] == 0
    assert drain["pdb_refusals"] >= 2
    # respect-pdb: the API server saw no deletion of any of them, and they are all still there
    assert seen.deletion_grace == {}
    assert pods_left(scenes, scene) == dict.fromkeys(pods, False)
    metrics = metrics_of(result)
    assert metrics[Metric.DRAINS_INCOMPLETE] == [1]
    assert Metric.NODES_DRAINED not in metrics
    assert metrics[Metric.PODS_REMAINING_AT_DEADLINE] == [2]
    assert metrics[Metric.PODS_DELETED_PAST_PDB] == [0]
    assert metrics[Metric.EVICTIONS_REFUSED_BY_PDB] == [drain["pdb_refusals"]]
    # kubectl describe node says so, naming the pods left behind, as a Warning
    incomplete = [e for e in node_events(scenes, scene.node_name) if e.reason == "DrainIncomplete"]
    assert len(incomplete) == 1, [e.reason for e in node_events(scenes, scene.node_name)]
    assert incomplete[0].type == "Warning"
    assert "2 remaining" in incomplete[0].message
    for ref in refs:
        assert ref in incomplete[0].message
    assert "DrainCompleted" not in {e.reason for e in node_events(scenes, scene.node_name)}


def test_delete_before_deadline_deletes_a_blocked_pod_when_only_its_grace_period_is_left(
    cluster_env: dict[str, str], scenes: Scenes, held: tuple[NodeScene, list[str]]
) -> None:
    scene, pods = held
    # 30 s left, 25 s before the margin: time to be refused first, whatever the cold start costs
    event = aged_event("spot-interruption", scene.instance_id, age_seconds=90)
    deadline = time.time() + 30  # a little later than the real one, by the time it took to build
    started = time.time()
    with PodWatcher(scenes, scene.namespace) as seen:
        result = run(cluster_env, "", "", event=event, params={"DeadlineMarginSeconds": "5"})  # the default policy
    assert result.exit_code == 0, result.output[-3000:]
    out = result.result
    assert out["basis"] == "event"
    assert out["outcome"] == "drained", out["drain"]
    drain = out["drain"]
    refs = sorted(f"{scene.namespace}/{p}" for p in pods)
    assert drain["pods"] == dict.fromkeys(refs, "deleted-past-pdb")
    assert drain["deleted_past_pdb"] == 2
    assert drain["evicted"] == 0
    assert drain["remaining"] == []
    assert drain["completed"] is True
    assert drain["pdb_refusals"] >= 2
    # What the API server recorded: both pods deleted (graceful, never 0), not at the first refusal
    # but once no more than their grace period (and a retry's second) was left before the deadline
    # less the margin, and before that.
    timing = {p: round(seen.deletion_seen_at[p] - started, 2) for p in seen.deletion_seen_at}
    assert set(seen.deletion_grace) == set(pods), (seen.deletion_grace, timing, drain)
    for pod in pods:
        assert 1 <= seen.deletion_grace[pod] <= GRACE, (seen.deletion_grace, timing, drain)
        assert seen.deletion_seen_at[pod] < deadline - 5 + 1, (timing, drain)
        assert seen.deletion_seen_at[pod] - started > 8, ("deleted too early", timing, drain)
    metrics = metrics_of(result)
    assert metrics[Metric.PODS_DELETED_PAST_PDB] == [2]
    assert metrics[Metric.PODS_EVICTED] == [0]
    assert metrics[Metric.NODES_DRAINED] == [1]
    # each pod says why it went, and with which grace period, for kubectl describe pod
    notes = {
        e.involved_object.name: e.message
        for e in scenes.core.list_namespaced_event(scene.namespace).items
        if e.reason == "DeletedPastDisruptionBudget"
    }
    assert set(notes) == set(pods)
    for pod in pods:
        assert f"grace period {seen.deletion_grace[pod]} s" in notes[pod]


def test_the_pods_with_emptydir_data_and_without_a_controller_are_counted(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scene = scenes.worker_node()
    scenes.worker_node(spot=False)
    ns = scenes.namespace("local-data")
    scene.namespace = ns
    scene.pods["cache"] = scenes.deployment(
        ns, "cache", scene.node_name, 3, grace=1, pdb_max_unavailable=None, emptydir=True
    )
    scene.pods["web"] = scenes.deployment(ns, "web", scene.node_name, 2, grace=1, pdb_max_unavailable=None)
    scene.pods["bare"] = [
        scenes.bare_pod(ns, "scratch-shell", scene.node_name, grace=1, emptydir=True),
        scenes.bare_pod(ns, "debug-shell", scene.node_name, grace=1),
    ]
    scenes.wait_running(ns, scene.all_pods())
    result = run(cluster_env, "spot-interruption", scene.instance_id)
    assert result.exit_code == 0, result.output[-3000:]
    assert result.result["outcome"] == "drained"
    assert result.result["drain"]["evicted"] == 7
    metrics = metrics_of(result)
    assert metrics[Metric.PODS_WITH_LOCAL_DATA] == [4]  # three cache pods and the scratch shell
    assert metrics[Metric.PODS_WITHOUT_CONTROLLER] == [2]  # the two bare pods
    assert metrics[Metric.PODS_EVICTED] == [7]
