"""What the functions tell operators, from real runs against the local EKS: EMF metrics with the
documented names, dimensions and units, every one of them emitted by some run of this module; JSON
logs with the fields that matter and no secret; an SNS notification per handled event."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import boto3
import pytest

from localeks.dashboard import read_emf
from localeks.invoke import Invocation, invoke
from localeks.scenes import Scenes
from serverless_nth.observability import (
    COLD_START,
    COLD_START_DIMENSIONS,
    ERROR_DIMENSIONS,
    EVENT_DIMENSIONS,
    NAMESPACE,
    Metric,
)
from tests.eventfiles import load_event
from tests.integration.support import aged_event, run, under_two_budgets, wait_draining
from tests.metric_names import names_the_code_emits

# under pytest-xdist, on one worker: the runs fixture (module scope) runs the events once for all of them
pytestmark = pytest.mark.xdist_group("observability")

SECONDS = {Metric.EVENT_TO_CORDON_LATENCY, Metric.DRAIN_DURATION}
HOLD = "serverless-nth.test/hold"
REBALANCE = "RebalanceRecommendationFunction"
# The durable long drains (Auto Scaling lifecycle actions, Health scheduled changes) emit their own
# metrics from this file only; they need an Auto Scaling group and the durable execution runner,
# which tests/integration/test_long_drains.py drives, so their runs belong there, not here. Left out
# by file (read from the source), never by name: a new metric anywhere else must come out below.
# The instance-status backstop's runs need its local DescribeInstanceStatus scenes:
# tests/integration/test_instance_status.py checks its metrics. A deployment of many clusters
# (fleet.py: ClusterTagsInvalid) needs the three-cluster local EKS: test_many_clusters.py checks it.
ELSEWHERE = {"long_drain.py", "lifecycle_drain.py", "instance_status.py", "fleet.py"}
Run = tuple[dict[str, Any], Invocation]  # the event, and what the function did with it


def _held_drain(
    cluster_env: dict[str, str], scenes: Scenes, params: dict[str, str], prefix: str, grace: int, age: float
) -> Run:
    """A Spot warning ``age`` seconds old for a node with two pods of a Deployment whose budget
    refuses every eviction (the deadline, less a 5 s margin, comes 115 - age seconds later)."""
    scene = scenes.worker_node()
    scenes.worker_node(spot=False)  # room for replacements
    ns = scenes.namespace(prefix)
    scenes.deployment(ns, "api", scene.node_name, 2, grace=grace, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    event = aged_event("spot-interruption", scene.instance_id, age_seconds=age)
    return event, run(cluster_env, "", "", event=event, params={"DeadlineMarginSeconds": "5", **params})


def _two_budgets(cluster_env: dict[str, str], scenes: Scenes) -> Run:
    """Two pods that two budgets select: the Eviction API cannot evict them (500), so they are
    named and counted, and the drain ends incomplete without retrying them."""
    scene = scenes.worker_node()
    ns = scenes.namespace("two-pdbs")
    under_two_budgets(scenes, ns, scene.node_name, grace=2)
    event = aged_event("spot-interruption", scene.instance_id)
    return event, run(cluster_env, "", "", event=event, params={"BlockedPodPolicy": "respect-pdb"})


def _finalizer_held_pod(cluster_env: dict[str, str], scenes: Scenes) -> Run:
    """A pod whose deletion a finalizer holds past its grace period: not waited for."""
    scene = scenes.worker_node()
    ns = scenes.namespace("stuck")
    scenes.bare_pod(ns, "worker", scene.node_name, grace=1)
    scenes.core.patch_namespaced_pod("worker", ns, {"metadata": {"finalizers": [HOLD]}})
    scenes.wait_running(ns, ["worker"])
    event = aged_event("spot-interruption", scene.instance_id)
    try:
        return event, run(cluster_env, "", "", event=event, params={"SkipWaitForDeleteSeconds": "3"})
    finally:
        scenes.core.patch_namespaced_pod("worker", ns, {"metadata": {"finalizers": None}})


def _namespace_deleted_mid_drain(cluster_env: dict[str, str], scenes: Scenes) -> Run:
    """Pods a budget holds, whose namespace is deleted while the drain retries them."""
    scene = scenes.worker_node()
    scenes.worker_node(spot=False)
    ns = scenes.namespace("doomed")
    scenes.deployment(ns, "api", scene.node_name, 2, grace=30, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    results: dict[str, Invocation] = {}
    event = aged_event("rebalance-recommendation", scene.instance_id)
    params = {"DrainOnRebalance": "true"}
    drain = threading.Thread(
        target=lambda: results.__setitem__("r", run(cluster_env, "", "", event=event, params=params))
    )
    drain.start()
    wait_draining(scenes, scene.node_name)  # the evictions are being refused by the PDB now
    scenes.core.delete_namespace(ns)
    drain.join()
    return event, results["r"]


@pytest.fixture(scope="module")
def runs(cluster_env: dict[str, str], scenes: Scenes) -> dict[str, Run]:
    """One run per path that emits a metric of its own; together they emit every name the code can."""
    scene = scenes.node_with_workloads(grace=2, long_grace=5)
    malformed = load_event("spot-interruption", instance_id=scene.instance_id, now=True)
    del malformed["detail"]["instance-action"]
    other_account = aged_event("spot-interruption", scene.instance_id)
    other_account["account"] = "999999999999"
    events = {
        "drain": ("SpotInterruptionFunction", load_event("spot-interruption", instance_id=scene.instance_id, now=True)),
        "unknown": (
            "StateChangeFunction",
            load_event("state-change-terminated", instance_id="i-00000000000000bad", now=True),
        ),
        "malformed": ("SpotInterruptionFunction", malformed),
        "other-account": ("SpotInterruptionFunction", other_account),
        "pending": ("StateChangeFunction", aged_event("state-change-pending", scene.instance_id)),
        "outdated": ("StateChangeFunction", aged_event("state-change-stopped", scenes.worker_node().instance_id)),
        "other-cluster": (
            "SpotInterruptionFunction",
            aged_event("spot-interruption", scenes.worker_node(cluster="someone-elses-cluster").instance_id),
        ),
        "no-node": (
            "SpotInterruptionFunction",
            aged_event("spot-interruption", scenes.worker_node(cluster=None).instance_id),
        ),
    }
    done = {name: (event, invoke(function, event, cluster_env)) for name, (function, event) in events.items()}
    # a cordon whose SNS notification cannot be sent (no such topic), then the node comes back
    node = scenes.worker_node()
    topic = f"arn:aws:sns:{cluster_env['AWS_DEFAULT_REGION']}:123456789012:no-such-topic-{uuid.uuid4().hex[:6]}"
    rebalance = aged_event("rebalance-recommendation", node.instance_id)
    done["notification-lost"] = (rebalance, invoke(REBALANCE, rebalance, cluster_env, {"NotificationTopicArn": topic}))
    # someone uncordons it (kubectl uncordon), and a new recommendation comes: told, and cordoned again
    scenes.core.patch_node(node.node_name, {"spec": {"unschedulable": None}})
    again = aged_event("rebalance-recommendation", node.instance_id)
    done["uncordoned-by-other"] = (again, invoke(REBALANCE, again, cluster_env))
    # events are stamped to the second; a running event undoes only marks of strictly older events
    time.sleep(1.1)
    running = aged_event("state-change-running", node.instance_id)
    done["running"] = (running, invoke("StateChangeFunction", running, cluster_env))
    # drains that end otherwise than all evicted
    drains = {
        "respect-pdb": lambda: _held_drain(
            cluster_env, scenes, {"BlockedPodPolicy": "respect-pdb"}, "held", grace=5, age=108
        ),
        "deleted-past-pdb": lambda: _held_drain(cluster_env, scenes, {}, "forced", grace=5, age=108),
        "stuck-terminating": lambda: _finalizer_held_pod(cluster_env, scenes),
        "namespace-terminating": lambda: _namespace_deleted_mid_drain(cluster_env, scenes),
        "multiple-pdbs": lambda: _two_budgets(cluster_env, scenes),
    }
    for name, drive in drains.items():
        done[name] = drive()
    for name, (_, invocation) in done.items():
        assert invocation.exit_code == 0 or name == "malformed", (name, invocation.output[-3000:])
    return done


def emf(invocation: Invocation) -> list[dict[str, Any]]:
    return read_emf(invocation.output.splitlines())


def log_lines(invocation: Invocation) -> list[dict[str, Any]]:
    lines = []
    for line in invocation.output.splitlines():
        if line.startswith("{") and not line.startswith('{"_aws"'):
            lines.append(json.loads(line))
    return lines


def test_metrics_have_the_documented_names_dimensions_and_units(
    runs: dict[str, Run],
) -> None:
    documented = {v for k, v in vars(Metric).items() if k.isupper()} | {COLD_START}
    dimension_sets = {frozenset(EVENT_DIMENSIONS), frozenset(ERROR_DIMENSIONS), frozenset(COLD_START_DIMENSIONS)}
    records = [r for _, invocation in runs.values() for r in emf(invocation)]
    assert records
    for record in records:
        assert record["namespace"] == NAMESPACE
        assert record["name"] in documented, record
        assert frozenset(record["dimensions"]) in dimension_sets, record
        assert record["unit"] == ("Seconds" if record["name"] in SECONDS else "Count"), record
        assert "node" not in record["dimensions"]
        assert "pod" not in record["dimensions"]


def test_the_runs_took_the_paths_they_are_named_after(runs: dict[str, Run]) -> None:
    outcomes = {name: invocation.result.get("outcome") for name, (_, invocation) in runs.items()}
    assert outcomes == {
        "drain": "drained",
        "unknown": "instance-not-found",
        "malformed": None,  # the entry point's error, retried by Lambda
        "other-account": "other-account",
        "pending": "ignored",
        "outdated": "outdated",
        "other-cluster": "not-this-cluster",
        "no-node": "node-not-found",
        "notification-lost": "cordoned",
        "uncordoned-by-other": "cordoned",
        "running": "restored",
        "respect-pdb": "drain-incomplete",
        "deleted-past-pdb": "drained",
        "stuck-terminating": "drained",
        "namespace-terminating": "drained",
        "multiple-pdbs": "drain-incomplete",
    }


def test_every_metric_the_code_can_emit_is_emitted_with_a_value(runs: dict[str, Run]) -> None:
    """Not a list kept by hand: the names are read from the core's source, and each must come out
    of some run above, with a value other than 0 at least once (a count stuck at 0 is not emitted
    in any sense that matters)."""
    emitted_by = names_the_code_emits()
    declared = {v for k, v in vars(Metric).items() if k.isupper()} | {COLD_START}
    assert set(emitted_by) == declared, f"declared but never emitted by the code: {declared - set(emitted_by)}"
    code = {name for name, files in emitted_by.items() if not set(files) <= ELSEWHERE}
    seen: dict[str, dict[str, list[float]]] = {}
    for name, (_, invocation) in runs.items():
        for record in emf(invocation):
            seen.setdefault(record["name"], {}).setdefault(name, []).append(record["value"])
    never = sorted(set(code) - set(seen))
    zero = {m: seen[m] for m in sorted(set(code) & set(seen)) if not any(v for vs in seen[m].values() for v in vs)}
    assert never == [], f"never emitted: {never}"
    assert zero == {}, f"only ever 0: {zero}"


def test_a_drain_emits_what_it_did(runs: dict[str, Run]) -> None:
    _event, invocation = runs["drain"]
    records = emf(invocation)
    by_name = {r["name"]: r for r in records}
    for name in (
        Metric.EVENTS_RECEIVED,
        Metric.NODES_CORDONED,
        Metric.NODES_TAINTED,
        Metric.NODES_DRAINED,
        Metric.PODS_EVICTED,
        Metric.EVICTIONS_REFUSED_BY_PDB,
        Metric.PODS_REMAINING_AT_DEADLINE,
        Metric.DRAIN_DURATION,
        Metric.EVENT_TO_CORDON_LATENCY,
        COLD_START,
    ):
        assert name in by_name, name
    assert by_name[Metric.PODS_EVICTED]["value"] == invocation.result["drain"]["evicted"] == 6
    assert by_name[Metric.EVENTS_RECEIVED]["dimensions"] == {
        "cluster": invocation.result["cluster"],
        "event_kind": "spot-interruption",
        "outcome": "drained",
        "service": "serverless-nth",
    }
    assert 0 <= by_name[Metric.EVENT_TO_CORDON_LATENCY]["value"] < 30


def test_quiet_and_failed_events_are_counted(runs: dict[str, Run]) -> None:
    unknown = {r["name"]: r for r in emf(runs["unknown"][1])}
    assert unknown[Metric.INSTANCE_NOT_FOUND]["dimensions"]["outcome"] == "instance-not-found"
    malformed = {r["name"]: r for r in emf(runs["malformed"][1])}
    assert malformed[Metric.MALFORMED_EVENTS]["dimensions"]["outcome"] == "malformed"
    assert malformed[Metric.ERRORS]["dimensions"]["stage"] == "parse"


def test_logs_carry_the_fields_that_matter(runs: dict[str, Run]) -> None:
    event, invocation = runs["drain"]
    lines = log_lines(invocation)
    assert lines
    assert all(line["correlation_id"] == event["id"] for line in lines)
    with_outcome = [line for line in lines if "outcome" in line]
    assert {line["outcome"] for line in with_outcome} >= {"cordoned", "drained"}
    for line in with_outcome:
        assert line["cluster"] == invocation.result["cluster"]
        assert line["instance_id"] == event["detail"]["instance-id"]
        assert line["event_kind"] == "spot-interruption"
        assert line["node"] == invocation.result["node"]
    malformed_event, malformed = runs["malformed"]
    error_lines = [line for line in log_lines(malformed) if line.get("outcome") == "malformed"]
    assert len(error_lines) == 1
    assert error_lines[0]["correlation_id"] == malformed_event["id"]
    assert "instance-action" in error_lines[0]["reason"]


def test_no_token_or_credential_appears_in_the_output(runs: dict[str, Run]) -> None:
    for _, invocation in runs.values():
        text = invocation.output
        for secret in ("k8s-aws-v1.", "X-Amz-Signature", "X-Amz-Security-Token", "Bearer ", "aws_secret_access_key"):
            assert secret not in text


def test_one_sns_notification_per_handled_event(cluster_env: dict[str, str], scenes: Scenes) -> None:
    aws = {
        "endpoint_url": cluster_env["AWS_ENDPOINT_URL"],
        "region_name": cluster_env["AWS_DEFAULT_REGION"],
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sns, sqs = boto3.client("sns", **aws), boto3.client("sqs", **aws)
    suffix = uuid.uuid4().hex[:8]
    topic = sns.create_topic(Name=f"serverless-nth-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"notifications-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    scene = scenes.worker_node(spot=True)
    result = invoke(
        "RebalanceRecommendationFunction",
        load_event("rebalance-recommendation", instance_id=scene.instance_id, now=True),
        cluster_env,
        {"NotificationTopicArn": topic},
    )
    assert result.exit_code == 0, result.output
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["node"] == scene.node_name
    assert body["outcome"] == "cordoned"
    assert body["event_kind"] == "rebalance-recommendation"
    assert body["cluster"] == cluster_env["CLUSTER_NAME"]
