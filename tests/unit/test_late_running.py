"""A `running` event undoes this product's marks only if it is newer than the newest event that
made them (issue 25, item 1); that event's time is recorded with the cordon, once per newer event."""

from __future__ import annotations

import datetime
from typing import Any
from unittest.mock import ANY

import pytest

from serverless_nth.kube.client import Conflict
from serverless_nth.kube.cordon import LB_EXCLUSION_LABEL, cordon_and_taint, restore
from serverless_nth.kube.nodes import CORDON_ATTEMPT_ANNOTATION, NEWEST_EVENT_TIME_ANNOTATION, Node
from serverless_nth.policy import OUT_OF_SERVICE_KEY
from tests.unit.fake_api import FakeApi, Request
from tests.unit.test_cordon_patch import (
    EVENT_TIME,
    NODE,
    RUNNING_TIME,
    SPOT,
    STAMP,
    applied,
    as_object,
    node,
    ours_everywhere,
    patches,
)


def test_a_newer_event_on_a_node_that_has_it_all_records_only_its_time() -> None:
    done = node(unschedulable=True, taints=({"key": SPOT.key, "effect": "NoSchedule"},), annotations=STAMP)
    api = FakeApi({("PATCH", NODE): [applied(done)]})
    later = EVENT_TIME + datetime.timedelta(seconds=30)
    cordon_and_taint(api, done, (SPOT,), exclude_from_lb=False, dry_run=False, event_id="e2", event_time=later)
    assert patches(api)[0].body == {
        "metadata": {
            "resourceVersion": "10",
            "annotations": {NEWEST_EVENT_TIME_ANNOTATION: later.isoformat(), CORDON_ATTEMPT_ANNOTATION: ANY},
        },
        "spec": {"unschedulable": True, "taints": [{"key": SPOT.key, "effect": "NoSchedule"}]},
    }


@pytest.mark.parametrize(
    ("running", "recorded"),
    [
        (EVENT_TIME - datetime.timedelta(seconds=100), STAMP[NEWEST_EVENT_TIME_ANNOTATION]),  # older: replayed
        (EVENT_TIME, STAMP[NEWEST_EVENT_TIME_ANNOTATION]),  # as old: not proven newer
        (RUNNING_TIME, "yesterday"),  # unreadable: not proven newer
    ],
    ids=["older", "same-time", "unreadable"],
)
def test_a_running_event_not_newer_than_the_event_that_holds_the_node_undoes_nothing(
    running: datetime.datetime, recorded: str
) -> None:
    held = ours_everywhere()
    held = Node(**{**held.__dict__, "annotations": {**held.annotations, NEWEST_EVENT_TIME_ANNOTATION: recorded}})
    api = FakeApi()
    result = restore(api, held, dry_run=False, event_time=running)
    assert result.undone == ()
    assert result.held_since == recorded
    assert api.sent == []


def test_a_running_event_newer_than_the_event_that_holds_the_node_undoes_it_and_its_time() -> None:
    held = ours_everywhere()
    held = Node(**{**held.__dict__, "annotations": {**held.annotations, **STAMP}})
    api = FakeApi({("PATCH", NODE): [applied(held)]})
    result = restore(api, held, dry_run=False, event_time=RUNNING_TIME)
    assert result.undone == (SPOT.key, OUT_OF_SERVICE_KEY, "cordon", LB_EXCLUSION_LABEL)
    assert api.sent[0].body["metadata"]["annotations"][NEWEST_EVENT_TIME_ANNOTATION] is None


def test_a_cordon_whose_answer_was_lost_still_says_what_it_did() -> None:
    """Issue 25, item 4: the PATCH was served and its answer lost; the client's retry of it ends in
    409 (the resourceVersion moved on), the node is re-read, and it carries this call's nonce: the
    cordon is this call's (NodesCordoned), not a concurrent duplicate's."""
    fresh = node(taints=())
    served: list[dict[str, Any]] = []

    def served_then_conflict(request: Request) -> dict[str, Any]:
        served.append(applied(fresh)(request))
        raise Conflict(409, "the object has been modified")

    api = FakeApi({("PATCH", NODE): [served_then_conflict], ("GET", NODE): [lambda _: served[0]]})
    result = cordon_and_taint(
        api, fresh, (SPOT,), exclude_from_lb=True, dry_run=False, event_id="e", event_time=EVENT_TIME
    )
    assert (result.cordoned, result.taints_added, result.lb_excluded) == (True, (SPOT.key,), True)
    assert [r.method for r in api.sent] == ["PATCH", "GET"]


def test_a_concurrent_duplicate_that_cordoned_first_is_not_counted_twice() -> None:
    fresh = node()
    theirs = node(
        version="11",
        unschedulable=True,
        taints=({"key": SPOT.key, "value": "terminate", "effect": "NoSchedule"},),
        labels={LB_EXCLUSION_LABEL: "true"},
        annotations={**STAMP, CORDON_ATTEMPT_ANNOTATION: "another-call"},
    )
    api = FakeApi({("PATCH", NODE): [Conflict(409, "modified")], ("GET", NODE): [as_object(theirs)]})
    result = cordon_and_taint(
        api, fresh, (SPOT,), exclude_from_lb=True, dry_run=False, event_id="e", event_time=EVENT_TIME
    )
    assert (result.cordoned, result.taints_added, result.lb_excluded) == (False, (), False)
