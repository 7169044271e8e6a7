"""The drain against a scripted API server: what each failure of an eviction or a delete means for
the pod (temporary failures are retried until the drain's time is up; only then is a pod left,
and left as failed, not as blocked)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from serverless_nth.config import BlockedPodPolicy
from serverless_nth.kube.client import KubeApi
from serverless_nth.kube.drain import Drainer
from serverless_nth.kube.evict import DrainOptions, PodFate
from tests.unit.fake_http import serving

PDB_REFUSAL = {"message": "Cannot evict pod as it would violate the pod's disruption budget."}
TERMINATING = {
    "message": "unable to create new content in namespace ns because it is being terminated",
    "details": {"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]},
}


class FakeNode:
    """Pods on one node; per pod, the answers its evictions and deletes get, in order (the last
    one repeats). An accepted eviction or delete removes the pod."""

    def __init__(self, pods: dict[str, int]) -> None:
        self.pods = dict(pods)
        self.evictions: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.deletes: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.sent: list[tuple[str, str, int | None]] = []  # method, pod, grace period sent
        self.deleting: set[str] = set()  # pods another drain began to delete
        self.retry_after = ""  # sent with every 429
        self.sent_at: list[tuple[str, str, int | None, float]] = []
        self.evicted_by_another: set[str] = set()  # their 409 is another drain's eviction
        self.lock = threading.Lock()

    def answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if "poddisruptionbudgets" in path:  # no watch here: the drain's own backoff
                return 403, {"message": "forbidden"}
            if method == "GET":
                items = [
                    {
                        "metadata": {
                            "name": n,
                            "namespace": "ns",
                            "uid": f"uid-{n}",
                            "resourceVersion": "2" if n in self.deleting else "1",
                            **({"deletionTimestamp": "2099-01-01T00:00:00Z"} if n in self.deleting else {}),
                        },
                        "spec": {"terminationGracePeriodSeconds": g},
                        "status": {"phase": "Running"},
                    }
                    for n, g in self.pods.items()
                ]
                return 200, {"items": items, "metadata": {}}
            name = path.split("/")[6].split("?")[0]
            script = self.evictions if path.endswith("/eviction") else self.deletes
            options = body.get("deleteOptions", body)
            self.sent.append((method, name, options.get("gracePeriodSeconds")))
            self.sent_at.append((method, name, options.get("gracePeriodSeconds"), time.monotonic()))
            answers = script.get(name, [(201, {})])
            status, reply = answers.pop(0) if len(answers) > 1 else answers[0]
            if status == 409 and name in self.evicted_by_another:
                self.deleting.add(name)
            if status < 300:
                self.pods.pop(name, None)
            return status, reply


@pytest.fixture
def node() -> Iterator[tuple[str, FakeNode]]:
    fake = FakeNode({})

    def answer(method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        status, reply = fake.answer(method, path, body)
        headers = {"Retry-After": fake.retry_after} if status == 429 and fake.retry_after else {}
        return status, {"kind": "Status", **reply}, headers

    with serving(answer) as url:
        yield url, fake


def drain(
    endpoint: str, *, deadline_in: float | None, stop_in: float, concurrency: int = 8, poll_interval: float = 0.05
) -> Any:
    now = time.time()
    api = KubeApi(endpoint, b"", lambda: "t", lambda: None, 5, concurrency)
    options = DrainOptions(
        deadline=None if deadline_in is None else now + deadline_in,
        stop_by=now + stop_in,
        margin_seconds=1,
        concurrency=concurrency,
        blocked_pod_policy=BlockedPodPolicy.DELETE_BEFORE_DEADLINE,
        poll_interval_seconds=poll_interval,
        dry_run=False,
    )
    return Drainer(api, options, log=lambda *a, **k: None).drain("node-1")


def test_a_token_refused_for_a_while_loses_no_pod(node: tuple[str, FakeNode]) -> None:
    endpoint, fake = node
    fake.pods = {"a": 5, "b": 5}
    fake.evictions = {"a": [(401, {})] * 6 + [(201, {})], "b": [(401, {}), (201, {})]}
    result = drain(endpoint, deadline_in=None, stop_in=20)
    assert result.pods == {"ns/a": PodFate.EVICTED, "ns/b": PodFate.EVICTED}
    assert result.completed


def test_a_failing_delete_past_the_pdb_is_retried(node: tuple[str, FakeNode]) -> None:
    endpoint, fake = node
    fake.pods = {"a": 3}
    fake.evictions = {"a": [(429, PDB_REFUSAL)]}
    fake.deletes = {"a": [(503, {}), (500, {}), (200, {})]}
    result = drain(endpoint, deadline_in=6, stop_in=6)
    assert result.pods == {"ns/a": PodFate.DELETED_PAST_PDB}
    assert [m for m, _, _ in fake.sent].count("DELETE") == 3
    assert result.completed


def test_errors_until_the_end_leave_the_pod_failed_not_blocked(node: tuple[str, FakeNode]) -> None:
    endpoint, fake = node
    fake.pods = {"a": 5, "b": 5}
    fake.evictions = {"a": [(500, {})], "b": [(429, PDB_REFUSAL)]}
    result = drain(endpoint, deadline_in=None, stop_in=2)
    assert result.pods == {"ns/a": PodFate.FAILED, "ns/b": PodFate.BLOCKED}
    assert not result.completed
    assert result.count(PodFate.FAILED) == 1
    assert [m for m, p, _ in fake.sent if p == "a"].count("POST") > 2  # retried, not given up


def test_a_namespace_being_deleted_means_wait_for_the_pod(node: tuple[str, FakeNode]) -> None:
    endpoint, fake = node
    fake.pods = {"a": 5}
    fake.evictions = {"a": [(403, TERMINATING)]}
    threading.Timer(0.5, lambda: fake.pods.pop("a")).start()  # the namespace controller deletes it
    result = drain(endpoint, deadline_in=None, stop_in=5)
    assert result.pods == {"ns/a": PodFate.NAMESPACE_TERMINATING}
    assert result.completed
    assert result.duration_seconds >= 0.4


def test_no_grace_below_the_floor_even_at_the_deadline(node: tuple[str, FakeNode]) -> None:
    endpoint, fake = node
    fake.pods = {"a": 30, "b": 0}
    result = drain(endpoint, deadline_in=1.5, stop_in=1.5)  # 0.5 s left after the margin
    assert sorted(g for _, _, g in fake.sent) == [1, 1]
    assert result.grace_capped == 1


def test_a_pod_another_delivery_evicted_first_is_not_counted_as_ours(node: tuple[str, FakeNode]) -> None:
    endpoint, fake = node
    fake.pods = {"a": 5, "b": 5}
    # both evictions carry the listed resourceVersion; both pods changed meanwhile: "a" because a
    # duplicate delivery evicted it, "b" only because its status changed
    fake.evictions = {"a": [(409, {})], "b": [(409, {}), (201, {})]}
    fake.evicted_by_another = {"a"}
    threading.Timer(0.5, lambda: fake.pods.pop("a")).start()
    result = drain(endpoint, deadline_in=None, stop_in=5)
    assert result.pods == {"ns/a": PodFate.ALREADY_TERMINATING, "ns/b": PodFate.EVICTED}
    assert result.count(PodFate.EVICTED) == 1
    assert result.completed
    assert sorted(p for m, p, _ in fake.sent if m == "POST") == ["a", "b", "b"]


def test_an_eviction_throttled_by_the_api_server_waits_its_retry_after(node: tuple[str, FakeNode]) -> None:
    endpoint, fake = node
    fake.pods = {"a": 5}
    fake.evictions = {"a": [(429, {"message": "too many requests, please try again later"}), (201, {})]}
    fake.retry_after = "2"
    result = drain(endpoint, deadline_in=None, stop_in=10)
    assert result.pods == {"ns/a": PodFate.EVICTED}
    posts = [t for m, _, _, t in fake.sent_at if m == "POST"]
    assert posts[1] - posts[0] >= 1.95  # the drain's own backoff is 0.25 s, and at most 1 s


def test_the_longest_grace_periods_are_evicted_first(node: tuple[str, FakeNode]) -> None:
    """The drain cannot end before the pod with the longest grace period is gone, so its eviction
    goes out first (measured by make bench at real grace periods: sent with the others in list
    order, the 28 s pods' evictions were answered 1.6 s late, and the drain ended that much later)."""
    endpoint, fake = node
    fake.pods = {"a": 5, "b": 30, "c": 1, "d": 30, "e": 10}
    # one at a time: the order they are sent in is the order they were scheduled
    result = drain(endpoint, deadline_in=None, stop_in=10, concurrency=1)
    assert result.completed
    assert [name for method, name, _ in fake.sent if method == "POST"] == ["b", "d", "e", "a", "c"]


def test_the_end_of_the_longest_grace_period_is_seen_when_it_happens(node: tuple[str, FakeNode]) -> None:
    """Pods stay listed for their grace period after the eviction, as a kubelet keeps them; with a
    1 s poll interval the drain still sees the last one gone within a fast poll of its end."""
    endpoint, fake = node
    fake.pods = {"short": 1, "long": 2}
    gone_at: dict[str, float] = {}
    answer = fake.answer

    def lingering(method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "POST":  # the eviction: the pod goes when its grace period has run out
            name = path.split("/")[6]
            grace = fake.pods[name]
            status, reply = answer(method, path, body)
            fake.pods[name] = grace
            gone_at[name] = time.monotonic() + grace + 0.5  # the kubelet takes half a second more
            return status, reply
        for name, at in list(gone_at.items()):
            if time.monotonic() >= at:
                fake.pods.pop(name, None)
        return answer(method, path, body)

    fake.answer = lingering  # type: ignore[method-assign]
    result = drain(endpoint, deadline_in=None, stop_in=10, poll_interval=1.0)
    assert result.completed
    seen_late = time.monotonic() - gone_at["long"]
    assert seen_late < 0.35, seen_late  # with the 1 s poll alone: about 0.5 s here
