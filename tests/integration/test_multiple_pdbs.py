"""A pod that two PodDisruptionBudgets select: the Eviction API answers 500 "This pod has more than
one PodDisruptionBudget, which the eviction subresource does not support" for as long as both exist
(kube-apiserver's eviction REST handler). kubectl drain stops at it. Retrying cannot help, so the
drain must not (issue 23: it retried about once a second until its end, then failed the invocation
with DrainFailed, and the event went to the on-failure queue for a replay that cannot help either).

Here, against the real API server and its disruption controller: the pod is named in the result
and in a Warning Event on it, counted (PodsWithMultiplePdbs), asked once, and the invocation
succeeds (drain-incomplete); at a certain end with BlockedPodPolicy=delete-before-deadline it is
deleted gracefully with the time left, like a pod a single budget blocks."""

from __future__ import annotations

import time

import pytest

from localeks.dashboard import read_emf
from localeks.scenes import NodeScene, Scenes
from serverless_nth.observability import Metric
from tests.integration.support import PodWatcher, aged_event, pods_left, run, under_two_budgets

GRACE = 5


@pytest.fixture
def doubly_budgeted(scenes: Scenes) -> tuple[NodeScene, list[str]]:
    """A Spot node with two pods of a Deployment that two budgets select; each budget alone would
    allow the evictions."""
    scene = scenes.worker_node()
    scenes.worker_node(spot=False)  # room for replacements
    scene.namespace = scenes.namespace("two-pdbs")
    scene.pods["api"] = under_two_budgets(scenes, scene.namespace, scene.node_name, GRACE)
    return scene, scene.pods["api"]


def test_a_pod_under_two_budgets_is_named_counted_and_not_retried(
    cluster_env: dict[str, str], scenes: Scenes, doubly_budgeted: tuple[NodeScene, list[str]]
) -> None:
    scene, pods = doubly_budgeted
    event = aged_event("spot-interruption", scene.instance_id)  # 120 s ahead: plenty of time to retry
    started = time.time()
    result = run(cluster_env, "", "", event=event, params={"BlockedPodPolicy": "respect-pdb"})
    took = time.time() - started
    assert result.exit_code == 0, result.output[-3000:]  # nothing for Lambda to retry
    out = result.result
    refs = sorted(f"{scene.namespace}/{p}" for p in pods)
    assert out["outcome"] == "drain-incomplete", out["drain"]
    assert out["drain"]["pods"] == dict.fromkeys(refs, "multiple-pdbs")
    assert out["drain"]["remaining"] == refs
    assert out["drain"]["failed"] == 0
    assert took < 30, f"the drain waited {took:.0f} s for pods no eviction can move"
    assert pods_left(scenes, scene) == dict.fromkeys(pods, False)
    emitted = {r["name"]: r["value"] for r in read_emf(result.output.splitlines())}
    assert emitted[Metric.PODS_WITH_MULTIPLE_PDBS] == 2
    warnings = {
        e.involved_object.name: e
        for e in scenes.core.list_namespaced_event(scene.namespace).items
        if e.reason == "MultiplePodDisruptionBudgets"
    }
    assert set(warnings) == set(pods)
    assert all(w.type == "Warning" for w in warnings.values())
    assert "more than one PodDisruptionBudget" in next(iter(warnings.values())).message


def test_at_a_certain_end_a_pod_under_two_budgets_is_deleted_gracefully_with_the_time_left(
    cluster_env: dict[str, str], scenes: Scenes, doubly_budgeted: tuple[NodeScene, list[str]]
) -> None:
    scene, pods = doubly_budgeted
    event = aged_event("spot-interruption", scene.instance_id, age_seconds=90)  # 30 s left
    with PodWatcher(scenes, scene.namespace) as seen:
        result = run(cluster_env, "", "", event=event, params={"DeadlineMarginSeconds": "5"})  # the default policy
    assert result.exit_code == 0, result.output[-3000:]
    out = result.result
    refs = sorted(f"{scene.namespace}/{p}" for p in pods)
    assert out["drain"]["pods"] == dict.fromkeys(refs, "deleted-past-pdb"), out["drain"]
    assert out["outcome"] == "drained"
    assert set(seen.deletion_grace) == set(pods)
    assert all(1 <= g <= GRACE for g in seen.deletion_grace.values()), seen.deletion_grace
