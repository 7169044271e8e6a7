"""Drain order against a scripted API server whose evicted pods stay, deleting, for their grace
period (times a speed factor, as kwok does) and then go: ordinary pods first, critical ones once
the ordinary ones are gone, and before a certain end the critical pods' share of the time kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from serverless_nth.config import BlockedPodPolicy
from serverless_nth.kube.client import KubeApi
from serverless_nth.kube.drain import Drainer
from serverless_nth.kube.evict import DrainOptions, PodFate
from serverless_nth.kube.pods import PodToEvict, critical_reserve
from tests.unit.fake_http import serving

PDB_REFUSAL = {"message": "Cannot evict pod as it would violate the pod's disruption budget."}


@dataclass
class Pod:
    grace: int
    priority_class: str = ""
    priority: int = 0
    refused: bool = False  # a PDB refuses its evictions
    slow: bool = False  # its kubelet never ends it (it stays deleting)
    evicted_at: float | None = None
    grace_sent: int | None = None
    gone_at: float | None = None


@dataclass
class FakeNode:
    pods: dict[str, Pod]
    speed: float = 0.1  # a deleting pod goes after grace * speed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            now = time.time()
            for pod in self.pods.values():
                ends = None if pod.evicted_at is None else pod.evicted_at + (pod.grace_sent or 0) * self.speed
                if ends is not None and pod.gone_at is None and not pod.slow and now >= ends:
                    pod.gone_at = now
            if "poddisruptionbudgets" in path:  # no watch: the drain's own backoff
                return 403, {"message": "forbidden"}
            if method == "GET":
                return 200, {"items": [self._item(n, p) for n, p in self.pods.items() if p.gone_at is None]}
            name = path.split("/")[6]
            pod = self.pods[name]
            if pod.refused:
                return 429, PDB_REFUSAL
            if pod.evicted_at is None:
                pod.evicted_at, pod.grace_sent = now, body["deleteOptions"]["gracePeriodSeconds"]
            return 201, {}

    @staticmethod
    def _item(name: str, pod: Pod) -> dict[str, Any]:
        spec: dict[str, Any] = {"terminationGracePeriodSeconds": pod.grace, "priority": pod.priority}
        if pod.priority_class:
            spec["priorityClassName"] = pod.priority_class
        metadata: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1"}
        if pod.evicted_at is not None:
            metadata["deletionTimestamp"] = "2099-01-01T00:00:00Z"
        return {"metadata": metadata, "spec": spec, "status": {"phase": "Running"}}


@pytest.fixture
def served() -> Iterator[tuple[str, dict[str, FakeNode]]]:
    box: dict[str, FakeNode] = {}

    def answer(method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        status, reply = box["node"].answer(method, path.split("?")[0], body)
        return status, {"kind": "Status", **reply} if status >= 300 else reply, {}

    with serving(answer) as url:
        yield url, box


def drain(endpoint: str, *, deadline_in: float | None, stop_in: float, share: int = 50) -> Any:
    now = time.time()
    options = DrainOptions(
        deadline=None if deadline_in is None else now + deadline_in,
        stop_by=now + stop_in,
        margin_seconds=1,
        concurrency=8,
        blocked_pod_policy=BlockedPodPolicy.RESPECT_PDB,
        poll_interval_seconds=0.05,
        dry_run=False,
        critical_share_percent=share,
    )
    api = KubeApi(endpoint, b"", lambda: "t", lambda: None, 5, 8)
    return Drainer(api, options, log=lambda *a, **k: None).drain("node-1")


def critical_pods(grace: int = 3) -> dict[str, Pod]:
    return {
        "dns": Pod(grace=grace, priority_class="system-cluster-critical", priority=2_000_000_000),
        "cni": Pod(grace=grace, priority_class="system-node-critical", priority=2_000_001_000),
        "mine": Pod(grace=grace, priority=2_000_000_000),  # a class of the user's at the threshold
    }


def test_critical_pods_are_evicted_once_the_ordinary_pods_are_gone(served: tuple[str, dict[str, FakeNode]]) -> None:
    endpoint, box = served
    ordinary = {f"app-{i}": Pod(grace=10, priority=1_000_000) for i in range(6)}  # below the threshold
    box["node"] = node = FakeNode({**ordinary, **critical_pods()})
    result = drain(endpoint, deadline_in=None, stop_in=20)
    assert result.completed, result
    gone = max(node.pods[n].gone_at or 0 for n in ordinary)
    evicted = [node.pods[n].evicted_at for n in critical_pods()]
    assert all(e is not None and e >= gone for e in evicted), (gone, evicted)
    assert result.critical_after_seconds is not None
    assert {node.pods[n].grace_sent for n in node.pods} == {10, 3}  # no deadline: their own grace periods


def test_before_a_certain_end_the_critical_pods_keep_their_grace_periods(
    served: tuple[str, dict[str, FakeNode]],
) -> None:
    """A deadline 8 s ahead (margin 1 s): the critical pods' 2 s and a second are kept, so the
    ordinary pods' 30 s are capped to the 4 s left for them less the 2 s a kubelet takes to report
    them gone (1 once truncated); their kubelet is slow (they stay deleting), and the critical pods
    are evicted all the same when only their share is left, with their own 2 s."""
    endpoint, box = served
    ordinary = {f"app-{i}": Pod(grace=30, slow=True) for i in range(4)}
    box["node"] = node = FakeNode({**ordinary, **critical_pods(grace=2)})
    started = time.time()
    drain(endpoint, deadline_in=8, stop_in=8)
    assert {node.pods[n].grace_sent for n in ordinary} == {1}
    for name in critical_pods():
        pod = node.pods[name]
        assert pod.evicted_at is not None
        assert pod.grace_sent == 2
        assert 4.0 <= pod.evicted_at - started < 5.0  # when only 3 s (the reserve) were left before 7 s


def test_an_ordinary_pod_a_pdb_holds_past_the_switch_is_retried_beside_the_critical_ones(
    served: tuple[str, dict[str, FakeNode]],
) -> None:
    endpoint, box = served
    box["node"] = node = FakeNode({"held": Pod(grace=5, refused=True), **critical_pods(grace=1)})
    result = drain(endpoint, deadline_in=4, stop_in=4)
    assert result.pods["ns/held"] is PodFate.BLOCKED  # respect-pdb: asked until the end
    assert all(node.pods[n].evicted_at is not None for n in critical_pods())
    assert result.pods["ns/dns"] is PodFate.EVICTED


def test_without_a_certain_end_critical_pods_wait_for_ordinary_pods_a_pdb_holds(
    served: tuple[str, dict[str, FakeNode]],
) -> None:
    endpoint, box = served
    box["node"] = node = FakeNode({"held": Pod(grace=5, refused=True), **critical_pods()})
    result = drain(endpoint, deadline_in=None, stop_in=2)
    assert all(node.pods[n].evicted_at is None for n in critical_pods())
    assert {result.pods[f"ns/{n}"] for n in critical_pods()} == {PodFate.CRITICAL_HELD}
    assert sorted(result.remaining) == ["ns/cni", "ns/dns", "ns/held", "ns/mine"]
    assert not result.completed


def target(grace: int) -> PodToEvict:
    return PodToEvict("ns", "p", "u", "1", grace, False, True, critical=True)


@pytest.mark.parametrize(
    ("graces", "left", "share", "reserve"),
    [
        ([30, 10], 115.0, 50, 31.0),  # the longest grace period and a second for the request
        ([90], 115.0, 50, 57.5),  # at most the share of the time left
        ([30], 115.0, 0, 0.0),  # share 0: the whole time is the ordinary pods'
        ([0], 115.0, 50, 2.0),  # a grace period of 0 is sent as the floor, 1 s
        ([30], -3.0, 50, 0.0),  # past the deadline: nothing to keep
        ([30], None, 50, None),  # no certain end: the critical pods wait for the ordinary ones
    ],
)
def test_the_critical_pods_reserve(graces: list[int], left: float | None, share: int, reserve: float | None) -> None:
    assert critical_reserve([target(g) for g in graces], left, share) == reserve
