"""A `running` event undoes this product's marks only if it is newer than the newest event that
made them (issue 25, item 1); that event's time is recorded with the cordon, once per newer event."""

from __future__ import annotations

import datetime

import pytest

from serverless_nth.kube.cordon import LB_EXCLUSION_LABEL, cordon_and_taint, restore
from serverless_nth.kube.nodes import NEWEST_EVENT_TIME_ANNOTATION, Node
from serverless_nth.policy import OUT_OF_SERVICE_KEY
from tests.unit.fake_api import FakeApi
from tests.unit.test_cordon_patch import (
    EVENT_TIME,
    NODE,
    RUNNING_TIME,
    SPOT,
    STAMP,
    applied,
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
        "metadata": {"resourceVersion": "10", "annotations": {NEWEST_EVENT_TIME_ANNOTATION: later.isoformat()}},
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
