"""What the functions tell operators, from real runs against the local EKS: EMF metrics with the
documented names, dimensions and units; JSON logs with the fields that matter and no secret; an SNS
notification per handled event."""

from __future__ import annotations

import json
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

SECONDS = {Metric.EVENT_TO_CORDON_LATENCY, Metric.DRAIN_DURATION}


@pytest.fixture(scope="module")
def runs(cluster_env: dict[str, str], scenes: Scenes) -> dict[str, tuple[dict[str, Any], Invocation]]:
    scene = scenes.node_with_workloads(grace=2, long_grace=5)
    malformed = load_event("spot-interruption", instance_id=scene.instance_id, now=True)
    del malformed["detail"]["instance-action"]
    events = {
        "drain": ("SpotInterruptionFunction", load_event("spot-interruption", instance_id=scene.instance_id, now=True)),
        "unknown": (
            "StateChangeFunction",
            load_event("state-change-terminated", instance_id="i-00000000000000bad", now=True),
        ),
        "malformed": ("SpotInterruptionFunction", malformed),
    }
    return {name: (event, invoke(function, event, cluster_env)) for name, (function, event) in events.items()}


def emf(invocation: Invocation) -> list[dict[str, Any]]:
    return read_emf(invocation.output.splitlines())


def log_lines(invocation: Invocation) -> list[dict[str, Any]]:
    lines = []
    for line in invocation.output.splitlines():
        if line.startswith("{") and not line.startswith('{"_aws"'):
            lines.append(json.loads(line))
    return lines


def test_metrics_have_the_documented_names_dimensions_and_units(
    runs: dict[str, tuple[dict[str, Any], Invocation]],
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


def test_a_drain_emits_what_it_did(runs: dict[str, tuple[dict[str, Any], Invocation]]) -> None:
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


def test_quiet_and_failed_events_are_counted(runs: dict[str, tuple[dict[str, Any], Invocation]]) -> None:
    unknown = {r["name"]: r for r in emf(runs["unknown"][1])}
    assert unknown[Metric.INSTANCE_NOT_FOUND]["dimensions"]["outcome"] == "instance-not-found"
    malformed = {r["name"]: r for r in emf(runs["malformed"][1])}
    assert malformed[Metric.MALFORMED_EVENTS]["dimensions"]["outcome"] == "malformed"
    assert malformed[Metric.ERRORS]["dimensions"]["stage"] == "parse"


def test_logs_carry_the_fields_that_matter(runs: dict[str, tuple[dict[str, Any], Invocation]]) -> None:
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


def test_no_token_or_credential_appears_in_the_output(runs: dict[str, tuple[dict[str, Any], Invocation]]) -> None:
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
