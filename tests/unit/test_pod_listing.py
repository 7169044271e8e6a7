"""The drain's reads: the node's pods (one field-selected LIST, its pages followed), whether a
DaemonSet pod's DaemonSet still exists (orphans are evicted, as ``kubectl drain --force`` does), and
what a pod object says about its deletion."""

from __future__ import annotations

from typing import Any

import pytest

from serverless_nth.config import Settings
from serverless_nth.kube.client import KubePermanentError, KubeTemporaryError, NotFound
from serverless_nth.kube.pods import deletion_time, list_node_pods, orphaned_daemonset_pods, skip_reason, to_evict
from tests.unit.fake_api import FakeApi

SYSTEM_CRITICAL = Settings.critical_pod_priority  # the default threshold of a critical pod


PODS = ("GET", "/api/v1/pods")


def pod(name: str, namespace: str = "ns", owner: dict[str, Any] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"metadata": metadata, "spec": {}, "status": {"phase": "Running"}}


def daemonset(name: str, uid: str | None = "ds-uid") -> dict[str, Any]:
    owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "controller": True}
    if uid is not None:
        owner["uid"] = uid
    return owner


def ds_path(namespace: str, name: str) -> tuple[str, str]:
    return ("GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}")


def test_the_node_pods_are_listed_by_field_selector_page_by_page() -> None:
    api = FakeApi(
        {PODS: [{"items": [pod("a"), pod("b")], "metadata": {"continue": "next-page"}}, {"items": [pod("c")]}]}
    )
    assert [p["metadata"]["name"] for p in list_node_pods(api, "node-1")] == ["a", "b", "c"]
    first = {"fieldSelector": "spec.nodeName=node-1", "limit": "500"}
    assert [(r.method, r.path, r.query, r.stage) for r in api.sent] == [
        ("GET", "/api/v1/pods", first, "drain"),
        ("GET", "/api/v1/pods", {**first, "continue": "next-page"}, "drain"),
    ]


def test_a_node_without_pods_is_one_request() -> None:
    api = FakeApi({PODS: [{"metadata": {"continue": ""}}]})
    assert list_node_pods(api, "node-1") == []
    assert len(api.sent) == 1


def test_a_daemonset_pod_is_an_orphan_when_its_daemonset_is_gone_or_another_object() -> None:
    alive, deleted, replaced = (
        pod("agent-1", "a", daemonset("agent")),
        pod("old-1", "b", daemonset("old")),
        pod("new-1", "c", daemonset("new", uid="uid-before")),
    )
    api = FakeApi(
        {
            ds_path("a", "agent"): [{"metadata": {"name": "agent", "uid": "ds-uid"}}],
            ds_path("b", "old"): [NotFound(404, "not found")],
            ds_path("c", "new"): [{"metadata": {"name": "new", "uid": "uid-after"}}],
        }
    )
    assert orphaned_daemonset_pods(api, [alive, pod("web-1"), deleted, replaced]) == [deleted, replaced]
    assert sorted(r.path for r in api.sent) == sorted(
        p for _, p in (ds_path("a", "agent"), ds_path("b", "old"), ds_path("c", "new"))
    )
    assert {r.method for r in api.sent} == {"GET"}


@pytest.mark.parametrize("error", [KubePermanentError(403, "forbidden"), KubeTemporaryError(503, "unavailable")])
def test_a_daemonset_that_cannot_be_read_keeps_its_pod_left_alone(error: Exception) -> None:
    api = FakeApi({ds_path("a", "agent"): [error]})
    assert orphaned_daemonset_pods(api, [pod("agent-1", "a", daemonset("agent"))]) == []


def test_an_owner_reference_without_uid_trusts_the_name() -> None:
    found, gone = pod("agent-1", "a", daemonset("agent", uid=None)), pod("old-1", "a", daemonset("old", uid=None))
    api = FakeApi(
        {
            ds_path("a", "agent"): [{"metadata": {"name": "agent", "uid": "whatever"}}],
            ds_path("a", "old"): [NotFound(404, "not found")],
        }
    )
    assert orphaned_daemonset_pods(api, [found, gone]) == [gone]


def test_pods_of_one_daemonset_share_one_request() -> None:
    one, two = pod("agent-1", "a", daemonset("agent")), pod("agent-2", "a", daemonset("agent"))
    api = FakeApi({ds_path("a", "agent"): [NotFound(404, "not found")]})
    assert orphaned_daemonset_pods(api, [one, two]) == [one, two]
    assert len(api.sent) == 1


def test_without_daemonset_pods_nothing_is_asked() -> None:
    api = FakeApi()
    assert orphaned_daemonset_pods(api, [pod("web-1"), pod("web-2", owner={"kind": "ReplicaSet", "name": "r"})]) == []
    assert api.sent == []


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2027-01-15T08:00:20Z", 1_800_000_020.0),
        ("2027-01-15T09:00:20+01:00", 1_800_000_020.0),
        ("not a time", None),
        ("", None),
        (None, None),
    ],
)
def test_a_deletion_timestamp_is_read_as_a_clock_time(stamp: str | None, expected: float | None) -> None:
    obj = pod("p")
    if stamp is not None:
        obj["metadata"]["deletionTimestamp"] = stamp
    assert deletion_time(obj) == expected
    assert deletion_time({}) is None


def test_a_pod_object_with_only_its_identity_reads_with_defaults() -> None:
    target = to_evict({"metadata": {"name": "p", "namespace": "n"}}, SYSTEM_CRITICAL)
    assert (target.uid, target.resource_version, target.grace_seconds) == ("", "", 30)
    assert (target.has_emptydir, target.has_controller, target.deleting_since) == (False, False, None)
    assert skip_reason({"metadata": {"name": "p", "namespace": "n"}}, 0.0, 30) is None


def test_the_pod_is_evicted_with_the_identity_and_version_it_was_listed_with() -> None:
    target = to_evict(
        {"metadata": {"name": "p", "namespace": "n", "uid": "u-7", "resourceVersion": "981"}}, SYSTEM_CRITICAL
    )
    assert (target.ref, target.uid, target.resource_version) == ("n/p", "u-7", "981")


def test_a_deletion_exactly_as_old_as_the_limit_is_still_waited_for() -> None:
    terminating = pod("p")
    terminating["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"  # 1_800_000_000
    assert skip_reason(terminating, 1_800_000_030.0, 30) is None
    assert skip_reason(terminating, 1_800_000_030.5, 30) == "stuck-terminating"


def test_a_partial_pod_object_is_judged_by_what_it_has() -> None:
    assert skip_reason({"status": {"phase": "Failed"}}, 0.0, 30) == "finished"
    assert skip_reason({"metadata": {"name": "p"}}, 0.0, 30) is None
