"""What a long drain's outcomes and metrics say (issue 25, item 4): a Health event replayed after
the envelope's 15 days is `malformed`, counted in MalformedEvents, and ends the execution without
touching a node, not as an error that the dead-letter queue keeps forever; a node whose drain lease
another event's execution holds is `held-by-another-event`, not a duplicate."""

from __future__ import annotations

import datetime
import time
import uuid

from localeks.dashboard import read_emf
from localeks.invoke import invoke, restamp
from localeks.scenes import Scenes
from tests.eventfiles import load_event
from tests.integration.long_drains import LIFECYCLE, SCHEDULED, scale_in_under_budget
from tests.integration.support import node_state


def test_a_health_event_replayed_after_fifteen_days_is_malformed_not_an_error(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    node = scenes.worker_node()
    event = load_event("scheduled-change", instance_id=node.instance_id, now=True)
    sent = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=16)
    restamp(event, sent)
    # the window itself is still ahead: only the envelope's age makes the event unusable
    start = time.gmtime(time.time() + 3 * 3600)
    event["detail"]["startTime"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", start)
    event["detail"].pop("endTime", None)
    result = invoke(SCHEDULED, event, cluster_env)
    out = result.result
    assert out["status"] == "SUCCEEDED", result.output[-3000:]
    assert out["result"]["outcomes"] == {node.instance_id: "malformed"}, out["result"]
    names = {r["name"]: r for r in read_emf(result.output.splitlines()) if r["value"]}
    assert "MalformedEvents" in names
    assert names["MalformedEvents"]["dimensions"]["outcome"] == "malformed"
    assert "Errors" not in names
    assert node_state(scenes, node.node_name) == (False, {})


def test_a_node_drained_for_another_event_is_not_reported_as_a_duplicate(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    # a Health change's execution holds the node's drain lease when the group scales it in
    scaling = scale_in_under_budget(cluster_env, scenes, "held", max_unavailable=1)
    other = f"arn:aws:lambda:us-east-1:123456789012:function:health/durable-execution/x/y {uuid.uuid4()}"
    lease = {"serverless-nth/drain-lease": f"{other} {time.time():.0f}"}
    scenes.core.patch_node(scaling.group.node_name, {"metadata": {"annotations": lease}})
    result = invoke(LIFECYCLE, scaling.event, cluster_env)
    assert result.result["status"] == "SUCCEEDED", result.output[-3000:]
    assert result.result["result"]["outcome"] == "held-by-another-event", result.result
    emitted = {r["name"] for r in read_emf(result.output.splitlines()) if r["value"]}
    assert "DuplicateDrains" not in emitted


def health_event(entities: list[object], start: str | None = None) -> dict[str, object]:
    event = load_event("scheduled-change", now=True)
    event["detail"]["affectedEntities"] = entities
    event["detail"]["startTime"] = start or time.strftime(
        "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3 * 3600)
    )
    event["detail"].pop("endTime", None)
    return event


def test_odd_health_entities_are_left_out_and_told_while_the_instances_are_handled(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    node = scenes.worker_node()
    odd = [
        {"entityValue": ""},
        {"entityArn": "arn:aws:health:us-east-1::entity/x"},
        {"entityValue": "h-0123456789abcdef0"},
    ]
    result = invoke(SCHEDULED, health_event([*odd, {"entityValue": node.instance_id}]), cluster_env)
    out = result.result
    assert out["status"] == "SUCCEEDED", result.output[-3000:]
    assert out["result"]["outcomes"] == {node.instance_id: "drained"}, out["result"]
    ignored = [r for r in read_emf(result.output.splitlines()) if r["name"] == "EventsIgnored"]
    assert [(r["value"], r["dimensions"]["outcome"]) for r in ignored] == [(3, "not-an-instance")]
    assert "Health entities left out" in result.output
    assert node_state(scenes, node.node_name)[0]


def test_a_health_start_of_the_shape_of_a_date_that_is_no_date_is_malformed_and_told(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    node = scenes.worker_node()
    event = health_event([{"entityValue": node.instance_id}], start="2026-02-30T10:00:00Z")
    result = invoke(SCHEDULED, event, cluster_env)
    assert result.exit_code == 1
    names = {r["name"] for r in read_emf(result.output.splitlines()) if r["value"]}
    assert "MalformedEvents" in names, result.output[-3000:]
    assert "is not a date" in result.output
    assert node_state(scenes, node.node_name) == (False, {})
