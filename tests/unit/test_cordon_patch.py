"""The cordon and its undoing, as the patches sent: one merge-patch guarded by the node's
resourceVersion, recording what this product added (with the event id) so that exactly that is
undone when the instance comes back; a 409 re-reads the node and tries again, five times at most."""

from __future__ import annotations

import datetime
import time
from typing import Any
from unittest.mock import ANY

import pytest

from serverless_nth.config import TaintEffect
from serverless_nth.kube.client import Conflict
from serverless_nth.kube.cordon import LB_EXCLUSION_LABEL, CordonResult, cordon_and_taint, restore
from serverless_nth.kube.nodes import (
    CORDON_ATTEMPT_ANNOTATION,
    CORDONED_BY_ANNOTATION,
    LB_EXCLUDED_BY_ANNOTATION,
    NEWEST_EVENT_TIME_ANNOTATION,
    OUT_OF_SERVICE_BY_ANNOTATION,
    Node,
)
from serverless_nth.policy import OUT_OF_SERVICE_KEY, Taint
from tests.unit.fake_api import FakeApi, Request

NODE = "/api/v1/nodes/n1"
SPOT = Taint("serverless-nth/spot-interruption", "terminate", TaintEffect.NO_SCHEDULE)
OUT_OF_SERVICE = Taint(OUT_OF_SERVICE_KEY, "nodeshutdown", TaintEffect.NO_EXECUTE)
FOREIGN = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
MERGE_PATCH = "application/merge-patch+json"
EVENT_TIME = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
RUNNING_TIME = EVENT_TIME + datetime.timedelta(minutes=5)  # the instance came back after the event
STAMP = {NEWEST_EVENT_TIME_ANNOTATION: "2026-11-27T12:00:00+00:00"}  # EVENT_TIME, as recorded
ATTEMPT = {CORDON_ATTEMPT_ANNOTATION: ANY}  # a nonce per cordon call


def node(
    *,
    version: str = "10",
    unschedulable: bool = False,
    taints: tuple[dict[str, Any], ...] = (),
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Node:
    return Node("n1", "u1", version, "aws:///us-east-1b/i-1", unschedulable, taints, labels or {}, annotations or {})


def as_object(n: Node) -> dict[str, Any]:
    return {
        "metadata": {
            "name": n.name,
            "uid": n.uid,
            "resourceVersion": n.resource_version,
            "labels": n.labels,
            "annotations": n.annotations,
        },
        "spec": {"providerID": n.provider_id, "unschedulable": n.unschedulable, "taints": list(n.taints)},
    }


def applied(current: Node, version: str = "11") -> Any:
    """An API server's answer to a merge patch of ``current``: the node as patched."""

    def answer(request: Request) -> dict[str, Any]:
        patch = request.body
        labels = {**current.labels, **patch["metadata"].get("labels", {})}
        annotations = {**current.annotations, **patch["metadata"].get("annotations", {})}
        obj = as_object(current)
        obj["metadata"].update(
            resourceVersion=version,
            labels={k: v for k, v in labels.items() if v is not None},
            annotations={k: v for k, v in annotations.items() if v is not None},
        )
        obj["spec"].update(patch["spec"])
        return obj

    return answer


def patches(api: FakeApi) -> list[Request]:
    return [r for r in api.sent if r.method == "PATCH"]


def assert_recent(stamp: str) -> None:
    added = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert abs((datetime.datetime.now(datetime.UTC) - added).total_seconds()) < 60


def test_a_fresh_node_is_cordoned_tainted_and_labelled_in_one_guarded_patch() -> None:
    fresh = node(taints=(FOREIGN,))
    api = FakeApi({("PATCH", NODE): [applied(fresh)]})
    result = cordon_and_taint(
        api, fresh, (SPOT,), exclude_from_lb=True, dry_run=False, event_id="event-1", event_time=EVENT_TIME
    )
    [sent] = api.sent
    assert (sent.method, sent.path, sent.query, sent.content_type, sent.stage) == (
        "PATCH",
        NODE,
        None,
        MERGE_PATCH,
        "cordon",
    )
    added = sent.body["spec"]["taints"][1]
    assert_recent(added.pop("timeAdded"))
    assert sent.body == {
        "metadata": {
            "resourceVersion": "10",
            "labels": {LB_EXCLUSION_LABEL: "true"},
            "annotations": {
                CORDONED_BY_ANNOTATION: "event-1",
                LB_EXCLUDED_BY_ANNOTATION: "event-1",
                **STAMP,
                **ATTEMPT,
            },
        },
        "spec": {
            "unschedulable": True,
            "taints": [FOREIGN, {"key": SPOT.key, "value": "terminate", "effect": "NoSchedule"}],
        },
    }
    assert result.cordoned is True
    assert result.taints_added == (SPOT.key,)
    assert result.lb_excluded is True
    assert result.node.resource_version == "11"  # the node as the server answered
    assert result.node.cordoned_by == "event-1"


def test_a_node_that_already_has_it_all_costs_no_request() -> None:
    done = node(
        unschedulable=True,
        taints=({"key": SPOT.key, "value": "terminate", "effect": "NoSchedule"},),
        labels={LB_EXCLUSION_LABEL: "true"},
        annotations=STAMP,  # recorded by the first delivery of the same event
    )
    api = FakeApi()
    result = cordon_and_taint(
        api, done, (SPOT,), exclude_from_lb=True, dry_run=False, event_id="e", event_time=EVENT_TIME
    )
    assert api.sent == []
    assert result == CordonResult(done, cordoned=False, taints_added=())


def test_an_operators_cordon_is_not_recorded_as_ours_and_only_the_missing_parts_are_added() -> None:
    cordoned = node(unschedulable=True, labels={LB_EXCLUSION_LABEL: "true"})
    api = FakeApi({("PATCH", NODE): [applied(cordoned)]})
    result = cordon_and_taint(
        api, cordoned, (SPOT,), exclude_from_lb=True, dry_run=False, event_id="e", event_time=EVENT_TIME
    )
    body = patches(api)[0].body
    # no label, no cordon record: only the event's time is ours
    assert body["metadata"] == {"resourceVersion": "10", "annotations": {**STAMP, **ATTEMPT}}
    assert [t["key"] for t in body["spec"]["taints"]] == [SPOT.key]
    assert (result.cordoned, result.taints_added, result.lb_excluded) == (False, (SPOT.key,), False)


def test_without_the_load_balancer_setting_no_label_is_added() -> None:
    fresh = node()
    api = FakeApi({("PATCH", NODE): [applied(fresh)]})
    result = cordon_and_taint(
        api, fresh, (SPOT,), exclude_from_lb=False, dry_run=False, event_id="e", event_time=EVENT_TIME
    )
    metadata = patches(api)[0].body["metadata"]
    assert "labels" not in metadata
    assert metadata["annotations"] == {CORDONED_BY_ANNOTATION: "e", **STAMP, **ATTEMPT}
    assert result.lb_excluded is False


def test_the_out_of_service_taint_is_recorded_with_the_event() -> None:
    cordoned = node(unschedulable=True, taints=({"key": SPOT.key, "value": "terminate", "effect": "NoSchedule"},))
    api = FakeApi({("PATCH", NODE): [applied(cordoned)]})
    result = cordon_and_taint(
        api,
        cordoned,
        (SPOT, OUT_OF_SERVICE),
        exclude_from_lb=False,
        dry_run=False,
        event_id="e7",
        event_time=EVENT_TIME,
    )
    body = patches(api)[0].body
    assert body["metadata"]["annotations"] == {OUT_OF_SERVICE_BY_ANNOTATION: "e7", **STAMP, **ATTEMPT}
    assert [(t["key"], t["value"], t["effect"]) for t in body["spec"]["taints"]] == [
        (SPOT.key, "terminate", "NoSchedule"),
        (OUT_OF_SERVICE_KEY, "nodeshutdown", "NoExecute"),
    ]
    assert result.taints_added == (OUT_OF_SERVICE_KEY,)


def test_a_dry_run_sends_the_same_patch_for_the_server_to_validate_only() -> None:
    fresh = node()
    api = FakeApi({("PATCH", NODE): [as_object(fresh)]})
    cordon_and_taint(api, fresh, (SPOT,), exclude_from_lb=True, dry_run=True, event_id="e", event_time=EVENT_TIME)
    assert patches(api)[0].query == {"dryRun": "All"}


def test_a_conflict_re_reads_the_node_and_keeps_what_changed_meanwhile() -> None:
    stale = node(version="10")
    # meanwhile another event added its taint and someone a label
    other = {"key": "serverless-nth/rebalance-recommendation", "value": "true", "effect": "NoSchedule"}
    now = node(version="12", taints=(other,), labels={"team": "a"})
    api = FakeApi(
        {
            ("PATCH", NODE): [Conflict(409, "the object has been modified"), applied(now, version="13")],
            ("GET", NODE): [as_object(now)],
        }
    )
    result = cordon_and_taint(
        api, stale, (SPOT,), exclude_from_lb=False, dry_run=False, event_id="e", event_time=EVENT_TIME
    )
    assert [(r.method, r.stage) for r in api.sent] == [("PATCH", "cordon"), ("GET", "cordon"), ("PATCH", "cordon")]
    retried = patches(api)[1].body
    assert retried["metadata"]["resourceVersion"] == "12"
    assert [t["key"] for t in retried["spec"]["taints"]] == [other["key"], SPOT.key]
    assert result.node.resource_version == "13"
    assert result.cordoned is True


def test_a_conflict_after_which_the_node_has_it_all_ends_without_a_write() -> None:
    done = node(
        version="12", unschedulable=True, taints=({"key": SPOT.key, "effect": "NoSchedule"},), annotations=STAMP
    )
    api = FakeApi({("PATCH", NODE): [Conflict(409, "modified")], ("GET", NODE): [as_object(done)]})
    result = cordon_and_taint(
        api, node(), (SPOT,), exclude_from_lb=False, dry_run=False, event_id="e", event_time=EVENT_TIME
    )
    assert len(patches(api)) == 1
    assert result.cordoned is False
    assert result.taints_added == ()
    assert result.node.resource_version == "12"


def test_a_node_that_keeps_changing_fails_after_five_attempts() -> None:
    api = FakeApi({("PATCH", NODE): [Conflict(409, "modified")], ("GET", NODE): [as_object(node())]})
    with pytest.raises(Conflict) as caught:
        cordon_and_taint(
            api, node(), (SPOT,), exclude_from_lb=False, dry_run=False, event_id="e", event_time=EVENT_TIME
        )
    assert len(patches(api)) == 5
    assert caught.value.status == 409
    assert caught.value.stage == "cordon"
    assert "node n1 kept changing during 5 attempts" in str(caught.value)


# --- restore: the instance came back ------------------------------------------------------------


def ours_everywhere() -> Node:
    return node(
        version="20",
        unschedulable=True,
        taints=(
            {"key": SPOT.key, "value": "terminate", "effect": "NoSchedule"},
            FOREIGN,
            {"key": OUT_OF_SERVICE_KEY, "value": "nodeshutdown", "effect": "NoExecute"},
        ),
        labels={LB_EXCLUSION_LABEL: "true", "team": "a"},
        annotations={
            CORDONED_BY_ANNOTATION: "e1",
            LB_EXCLUDED_BY_ANNOTATION: "e1",
            OUT_OF_SERVICE_BY_ANNOTATION: "e2",
            "other": "x",
        },
    )


def test_restore_undoes_exactly_what_was_recorded_as_ours() -> None:
    api = FakeApi({("PATCH", NODE): [applied(ours_everywhere())]})
    undone = restore(api, ours_everywhere(), dry_run=False, event_time=RUNNING_TIME).undone
    assert undone == (SPOT.key, OUT_OF_SERVICE_KEY, "cordon", LB_EXCLUSION_LABEL)
    [sent] = api.sent
    assert (sent.method, sent.path, sent.query, sent.content_type, sent.stage) == (
        "PATCH",
        NODE,
        None,
        MERGE_PATCH,
        "restore",
    )
    assert sent.body == {
        "metadata": {
            "resourceVersion": "20",
            "labels": {LB_EXCLUSION_LABEL: None},
            "annotations": {
                CORDONED_BY_ANNOTATION: None,
                LB_EXCLUDED_BY_ANNOTATION: None,
                OUT_OF_SERVICE_BY_ANNOTATION: None,
            },
        },
        "spec": {"taints": [FOREIGN], "unschedulable": None},
    }


def test_an_out_of_service_taint_someone_else_set_stays() -> None:
    theirs = node(taints=({"key": OUT_OF_SERVICE_KEY, "value": "nodeshutdown", "effect": "NoExecute"},))
    api = FakeApi()
    assert restore(api, theirs, dry_run=False, event_time=RUNNING_TIME).undone == ()
    assert api.sent == []


def test_when_every_taint_was_ours_the_taints_are_removed_not_emptied() -> None:
    mine = node(taints=({"key": SPOT.key, "effect": "NoSchedule"},))
    api = FakeApi({("PATCH", NODE): [applied(mine)]})
    assert restore(api, mine, dry_run=False, event_time=RUNNING_TIME).undone == (SPOT.key,)
    assert api.sent[0].body == {"metadata": {"resourceVersion": "10"}, "spec": {"taints": None}}


def test_an_operators_cordon_stays() -> None:
    operator = node(unschedulable=True, taints=({"key": SPOT.key, "effect": "NoSchedule"},))
    api = FakeApi({("PATCH", NODE): [applied(operator)]})
    assert restore(api, operator, dry_run=False, event_time=RUNNING_TIME).undone == (SPOT.key,)
    assert "unschedulable" not in api.sent[0].body["spec"]


def test_records_left_after_someone_undid_our_changes_are_cleared() -> None:
    # uncordoned and unlabelled by hand since: only the annotations remain to remove
    uncordoned = node(annotations={CORDONED_BY_ANNOTATION: "e1", LB_EXCLUDED_BY_ANNOTATION: "e1"})
    api = FakeApi({("PATCH", NODE): [applied(uncordoned)]})
    assert restore(api, uncordoned, dry_run=False, event_time=RUNNING_TIME).undone == ("records",)
    assert api.sent[0].body == {
        "metadata": {
            "resourceVersion": "10",
            "annotations": {CORDONED_BY_ANNOTATION: None, LB_EXCLUDED_BY_ANNOTATION: None},
        },
        "spec": {},
    }


def test_a_label_we_did_not_record_stays() -> None:
    labelled = node(labels={LB_EXCLUSION_LABEL: "true"})
    api = FakeApi()
    assert restore(api, labelled, dry_run=False, event_time=RUNNING_TIME).undone == ()
    assert api.sent == []


def test_restore_in_a_dry_run_is_validated_only() -> None:
    api = FakeApi({("PATCH", NODE): [as_object(ours_everywhere())]})
    restore(api, ours_everywhere(), dry_run=True, event_time=RUNNING_TIME)
    assert api.sent[0].query == {"dryRun": "All"}


def test_restore_re_reads_the_node_after_a_conflict() -> None:
    newer = node(version="21", taints=({"key": SPOT.key, "effect": "NoSchedule"},))
    api = FakeApi({("PATCH", NODE): [Conflict(409, "modified"), applied(newer)], ("GET", NODE): [as_object(newer)]})
    assert restore(api, ours_everywhere(), dry_run=False, event_time=RUNNING_TIME).undone == (SPOT.key,)
    assert [(r.method, r.stage) for r in api.sent] == [("PATCH", "restore"), ("GET", "restore"), ("PATCH", "restore")]
    assert api.sent[2].body["metadata"]["resourceVersion"] == "21"


def test_restore_of_a_node_that_keeps_changing_fails_after_five_attempts() -> None:
    api = FakeApi({("PATCH", NODE): [Conflict(409, "modified")], ("GET", NODE): [as_object(ours_everywhere())]})
    with pytest.raises(Conflict) as caught:
        restore(api, ours_everywhere(), dry_run=False, event_time=RUNNING_TIME)
    assert len(patches(api)) == 5
    assert (caught.value.status, caught.value.stage) == (409, "restore")
    assert "node n1 kept changing during 5 attempts" in str(caught.value)


def test_the_time_a_taint_was_added_is_utc_whatever_the_hosts_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30, no daylight saving
    time.tzset()
    try:
        fresh = node()
        api = FakeApi({("PATCH", NODE): [applied(fresh)]})
        cordon_and_taint(api, fresh, (SPOT,), exclude_from_lb=False, dry_run=False, event_id="e", event_time=EVENT_TIME)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert_recent(patches(api)[0].body["spec"]["taints"][0]["timeAdded"])
