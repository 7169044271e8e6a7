"""The long-drain starter (LongDrainStartFunction), run as template.yaml defines it against the
local Lambda (moto with the local durable-execution extension, localeks/durable_lambda.py): every
new event starts its durable execution on a version that holds what was deployed last, a duplicate
starts nothing, a running execution keeps its version, and a malformed event starts nothing.

The durable functions are created in moto under their logical IDs, which is what the local invoke
gives the starter's LIFECYCLE_ACTION_FUNCTION, SCHEDULED_CHANGE_FUNCTION and CAPACITY_BLOCK_FUNCTION."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localeks import durable_lambda
from localeks.cluster import REPO, moto_client
from localeks.invoke import invoke, prepare_event

STARTER = "LongDrainStartFunction"
DURABLE = ("LifecycleActionFunction", "ScheduledChangeFunction", "CapacityBlockExpiryFunction")


@pytest.fixture
def durable_functions(cluster_env: dict[str, str]) -> Iterator[Any]:
    """The durable functions, as a deploy creates them (DurableConfig, no version yet)."""
    client = moto_client(cluster_env, "lambda")
    for name in DURABLE:
        durable_lambda.create_durable_function(client, name, cluster_env["FUNCTION_ROLE_ARN"])
    yield client
    for name in DURABLE:
        client.delete_function(FunctionName=name)


def _event(name: str) -> dict[str, Any]:
    return prepare_event(json.loads((REPO / "events" / name).read_text()), now=True)


def _executions(env: dict[str, str], function: str) -> list[dict[str, Any]]:
    return [e for e in durable_lambda.executions(env["AWS_ENDPOINT_URL"]) if e["FunctionName"] == function]


def _versions(client: Any, function: str) -> list[str]:
    return [v["Version"] for v in client.list_versions_by_function(FunctionName=function)["Versions"]]


def _deploy(client: Any, function: str, value: str) -> None:
    """What a `sam deploy` that changes the function does to it: a new configuration on $LATEST."""
    client.update_function_configuration(FunctionName=function, Environment={"Variables": {"DEPLOY": value}})


def test_each_event_runs_on_the_version_deployed_last_and_old_versions_go_when_nothing_runs_on_them(
    cluster_env: dict[str, str], durable_functions: Any
) -> None:
    client, function = durable_functions, "LifecycleActionFunction"
    first = _event("asg-lifecycle-action.json")
    started = invoke(STARTER, first, cluster_env)
    assert started.exit_code == 0, started.output
    assert started.result["outcome"] == "started"
    assert started.result["version"] == "1"
    assert started.result["execution_name"] == first["id"]
    (execution,) = _executions(cluster_env, function)
    assert execution["Version"] == "1"
    assert json.loads(execution["Payload"]) == first
    assert execution["DurableExecutionArn"] == started.result["execution_arn"]

    again = invoke(STARTER, first, cluster_env)  # EventBridge delivers at least once
    assert again.exit_code == 0, again.output
    assert again.result["execution_arn"] == execution["DurableExecutionArn"]
    assert len(_executions(cluster_env, function)) == 1
    assert _versions(client, function) == ["$LATEST", "1"]

    _deploy(client, function, "2")
    second = invoke(STARTER, _event("asg-lifecycle-action.json"), cluster_env)
    assert second.exit_code == 0, second.output
    assert second.result["version"] == "2", "a new event must run what was deployed last"
    assert second.result["versions_deleted"] == [], "version 1 still has a running execution"
    assert _versions(client, function) == ["$LATEST", "1", "2"]

    durable_lambda.set_status(cluster_env["AWS_ENDPOINT_URL"], execution["DurableExecutionArn"], "SUCCEEDED")
    third = invoke(STARTER, _event("asg-lifecycle-action.json"), cluster_env)
    assert third.exit_code == 0, third.output
    assert third.result["version"] == "2", "nothing changed: no new version"
    assert third.result["versions_deleted"] == ["1"]
    assert _versions(client, function) == ["$LATEST", "2"]

    _deploy(client, function, "3")
    fourth = invoke(STARTER, _event("asg-lifecycle-action.json"), cluster_env)
    assert fourth.result["version"] == "3", "a version number is never used twice"


def test_a_health_event_starts_the_scheduled_change_function(
    cluster_env: dict[str, str], durable_functions: Any
) -> None:
    event = _event("scheduled-change.json")
    started = invoke(STARTER, event, cluster_env)
    assert started.exit_code == 0, started.output
    assert started.result["function"] == "ScheduledChangeFunction"
    assert [e["DurableExecutionName"] for e in _executions(cluster_env, "ScheduledChangeFunction")] == [event["id"]]
    assert _executions(cluster_env, "LifecycleActionFunction") == []


@pytest.mark.parametrize(
    "detail_type", ["Capacity Block Expiration Warning", "Capacity Block Reservation Expiration Warning"]
)
def test_a_capacity_block_warning_of_either_spelling_starts_the_capacity_block_function(
    cluster_env: dict[str, str], durable_functions: Any, detail_type: str
) -> None:
    event = {**_event("capacity-block-expiry.json"), "detail-type": detail_type}
    started = invoke(STARTER, event, cluster_env)
    assert started.exit_code == 0, started.output
    assert started.result["function"] == "CapacityBlockExpiryFunction"
    names = [e["DurableExecutionName"] for e in _executions(cluster_env, "CapacityBlockExpiryFunction")]
    assert names == [event["id"]]
    assert _executions(cluster_env, "ScheduledChangeFunction") == []


def test_another_ec2_event_starts_nothing(cluster_env: dict[str, str], durable_functions: Any) -> None:
    event = {**_event("capacity-block-expiry.json"), "detail-type": "Capacity Block Delivered"}
    failed = invoke(STARTER, event, cluster_env)
    assert failed.exit_code == 1
    assert failed.result["errorType"] == "MalformedEvent"
    assert _executions(cluster_env, "CapacityBlockExpiryFunction") == []


def test_a_malformed_event_publishes_and_starts_nothing(cluster_env: dict[str, str], durable_functions: Any) -> None:
    event = _event("asg-lifecycle-action.json")
    del event["detail"]["LifecycleActionToken"]
    failed = invoke(STARTER, event, cluster_env)
    assert failed.exit_code == 1
    assert failed.result["errorType"] == "MalformedEvent"
    assert '"outcome":"malformed"' in failed.output.replace(" ", "")
    assert _versions(durable_functions, "LifecycleActionFunction") == ["$LATEST"]
    assert _executions(cluster_env, "LifecycleActionFunction") == []


def test_the_local_lambda_answers_durable_calls_as_the_api_reference_says(
    cluster_env: dict[str, str], durable_functions: Any
) -> None:
    client, function = durable_functions, "ScheduledChangeFunction"
    config = client.get_function_configuration(FunctionName=function)
    assert config["DurableConfig"]["ExecutionTimeout"] == 180000
    with pytest.raises(ClientError) as unqualified:
        client.invoke(FunctionName=function, InvocationType="Event", DurableExecutionName="x1", Payload=b"{}")
    assert unqualified.value.response["Error"]["Code"] == "InvalidParameterValueException"
    version = client.publish_version(FunctionName=function)["Version"]
    assert client.publish_version(FunctionName=function)["Version"] == version, "nothing changed, nothing published"
    reply = client.invoke(
        FunctionName=function, Qualifier=version, InvocationType="Event", DurableExecutionName="x1", Payload=b"{}"
    )
    assert reply["StatusCode"] == 202
    assert reply["DurableExecutionArn"].endswith(
        f":{version}/durable-execution/x1/" + reply["DurableExecutionArn"][-36:]
    )
    same = client.invoke(
        FunctionName=function, Qualifier=version, InvocationType="Event", DurableExecutionName="x1", Payload=b"{}"
    )
    assert same["DurableExecutionArn"] == reply["DurableExecutionArn"]
    with pytest.raises(ClientError) as taken:
        client.invoke(
            FunctionName=function, Qualifier=version, InvocationType="Event", DurableExecutionName="x1", Payload=b"[]"
        )
    assert taken.value.response["Error"]["Code"] == "DurableExecutionAlreadyStartedException"
    assert taken.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(ClientError) as missing:
        client.invoke(
            FunctionName=function, Qualifier="99", InvocationType="Event", DurableExecutionName="x2", Payload=b"{}"
        )
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    running = client.list_durable_executions_by_function(FunctionName=function, Qualifier=version, Statuses=["RUNNING"])
    assert [e["DurableExecutionName"] for e in running["DurableExecutions"]] == ["x1"]
    ended = client.list_durable_executions_by_function(FunctionName=function, Statuses=["SUCCEEDED"])
    assert ended["DurableExecutions"] == []
