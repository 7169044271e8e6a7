"""The instance-status backstop (issue 22.2) against the local EKS: InstanceStatusFunction as
template.yaml defines it, reading DescribeInstanceStatus from the local moto server (scheduled
events and failed checks are the local extension localeks/instance_status.py, tested first here),
handing scheduled events to the long-drain starter (an asynchronous Invoke, recorded by the local
extension localeks/durable_lambda.py), the starter and the durable Health workflow then run on the
recorded payload.

The backstop reads every instance of the region: each pytest-xdist worker has a cluster (and a moto)
of its own, where tests run one at a time, and each test clears the statuses it set."""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localeks import durable_lambda, instance_status
from localeks.cluster import moto_client
from localeks.dashboard import read_emf
from localeks.invoke import Invocation, invoke
from localeks.scenes import Scenes
from tests.eventfiles import load_event, schedule_payload
from tests.integration.long_drains import free_the_budget, hand_back_after_reboot, named, wait_leased
from tests.integration.support import node_state, pods_left

FUNCTION = "InstanceStatusFunction"
STARTER, SCHEDULED = "LongDrainStartFunction", "ScheduledChangeFunction"
# the starter and the durable function this module creates in moto, under names of its own (the
# starter's tests create theirs under the logical IDs)
OURS = {"LONG_DRAIN_START_FUNCTION": "BackstopTestStarter", "SCHEDULED_CHANGE_FUNCTION": "BackstopTestScheduled"}
PARAMS = {"InstanceStatusChecks": "true"}
IMPAIRED_TAINT, SCHEDULED_TAINT = "serverless-nth/instance-impaired", "serverless-nth/scheduled-change"


def iso(seconds_from_now: float) -> str:
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds_from_now)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


@pytest.fixture
def statuses(cluster_env: dict[str, str]) -> Iterator[Any]:
    """Sets what EC2 reports of an instance; whatever was set is cleared at the end."""
    touched: list[str] = []

    def set_status(instance_id: str, **status: Any) -> dict[str, Any]:
        touched.append(instance_id)
        return instance_status.set_status(cluster_env["AWS_ENDPOINT_URL"], instance_id, **status)

    yield set_status
    for instance_id in touched:
        instance_status.set_status(
            cluster_env["AWS_ENDPOINT_URL"], instance_id, events=[], instance_check={}, system_check={}
        )


@pytest.fixture
def functions(cluster_env: dict[str, str]) -> Iterator[Any]:
    client = moto_client(cluster_env, "lambda")
    role = cluster_env["FUNCTION_ROLE_ARN"]
    durable_lambda.create_durable_function(client, OURS["LONG_DRAIN_START_FUNCTION"], role, durable=False)
    durable_lambda.create_durable_function(client, OURS["SCHEDULED_CHANGE_FUNCTION"], role)
    yield client
    for name in OURS.values():
        client.delete_function(FunctionName=name)


def check(cluster_env: dict[str, str], **params: str) -> Invocation:
    result = invoke(FUNCTION, schedule_payload(), cluster_env, {**PARAMS, **params}, OURS)
    assert result.exit_code == 0, result.output[-3000:]
    return result


def queued(cluster_env: dict[str, str]) -> list[dict[str, Any]]:
    found = durable_lambda.queued_invocations(cluster_env["AWS_ENDPOINT_URL"])
    return [q for q in found if q["FunctionName"] == OURS["LONG_DRAIN_START_FUNCTION"]]


def test_the_local_describe_instance_status_filters_pages_and_refuses_as_ec2_does(
    cluster_env: dict[str, str], scenes: Scenes, statuses: Any
) -> None:
    ec2 = scenes.ec2
    sick, maintained, well = (scenes.instance(spot=False)["InstanceId"] for _ in range(3))
    statuses(sick, system_check={"status": "failed", "since": iso(-300)})
    (event,) = statuses(maintained, events=[{"Code": "instance-retirement", "NotBefore": iso(86400)}])["events"]
    impaired = ec2.describe_instance_status(Filters=[{"Name": "system-status.status", "Values": ["impaired"]}])
    (answer,) = [s for s in impaired["InstanceStatuses"] if s["InstanceId"] in (sick, maintained, well)]
    assert answer["InstanceId"] == sick
    assert answer["SystemStatus"]["Details"][0]["Status"] == "failed"
    assert answer["SystemStatus"]["Details"][0]["ImpairedSince"] < datetime.datetime.now(datetime.UTC)
    assert answer["InstanceStatus"]["Status"] == "ok"
    codes = ec2.describe_instance_status(Filters=[{"Name": "event.code", "Values": ["instance-retirement"]}])
    (answer,) = [s for s in codes["InstanceStatuses"] if s["InstanceId"] in (sick, maintained, well)]
    assert answer["Events"][0]["InstanceEventId"] == event["InstanceEventId"]
    assert event["InstanceEventId"].startswith("instance-event-")
    asked = ec2.describe_instance_status(InstanceIds=[well])["InstanceStatuses"]
    assert [s.get("Events") for s in asked] == [None]
    # pages of MaxResults, each instance once (six running at least)
    for _ in range(3):
        scenes.instance(spot=False)
    pages, token = [], ""
    while True:
        page = ec2.describe_instance_status(MaxResults=5, **({"NextToken": token} if token else {}))
        pages.append([s["InstanceId"] for s in page["InstanceStatuses"]])
        token = page.get("NextToken", "")
        if not token:
            break
    listed = [i for p in pages for i in p]
    assert len(pages) > 1
    assert all(len(p) <= 5 for p in pages)
    assert len(listed) == len(set(listed))
    assert {sick, maintained, well} <= set(listed)
    for request, code in (
        ({"InstanceIds": [well], "MaxResults": 5}, "InvalidParameterCombination"),
        ({"MaxResults": 4}, "InvalidParameterValue"),
        ({"NextToken": "not-issued"}, "InvalidPaginationToken"),
        ({"Filters": [{"Name": "no-such-filter", "Values": ["x"]}]}, "InvalidParameterValue"),
        ({"InstanceIds": ["i-00000000000000000"]}, "InvalidInstanceID.NotFound"),
    ):
        with pytest.raises(ClientError) as refused:
            ec2.describe_instance_status(**request)
        assert refused.value.response["Error"]["Code"] == code, request


def test_an_instance_impaired_long_enough_is_cordoned_and_tainted_at_once_and_never_drained_by_default(
    cluster_env: dict[str, str], scenes: Scenes, statuses: Any
) -> None:
    sick = scenes.node_with_workloads(spot=False)
    lately = scenes.worker_node(spot=False)
    foreign = scenes.worker_node(spot=False, cluster="another-cluster")
    statuses(sick.instance_id, system_check={"status": "failed", "since": iso(-200)})
    statuses(lately.instance_id, instance_check={"status": "failed", "since": iso(-30)})
    statuses(foreign.instance_id, instance_check={"status": "failed", "since": iso(-600)})
    pods_before = pods_left(scenes, sick)

    result = check(cluster_env)
    outcomes = result.result["outcomes"]
    assert outcomes[sick.instance_id] == "cordoned", outcomes
    assert outcomes[lately.instance_id] == "impaired-too-shortly"
    assert foreign.instance_id not in outcomes  # another cluster's: not even looked up
    # three queries and one DescribeInstances for the two found; the cordon takes those facts
    assert result.result["ec2_requests"] == 4, result.result
    assert node_state(scenes, sick.node_name) == (True, {IMPAIRED_TAINT: "NoSchedule"})
    taint = {t.key: t.value for t in scenes.core.read_node(sick.node_name).spec.taints}
    assert taint == {IMPAIRED_TAINT: "system-status"}  # no out-of-service: EC2 says it runs
    assert pods_left(scenes, sick) == pods_before  # not drained: DrainOnImpaired is off
    assert node_state(scenes, lately.node_name) == (False, {})
    assert node_state(scenes, foreign.node_name) == (False, {})
    events = scenes.core.list_namespaced_event("default", field_selector=f"involvedObject.name={sick.node_name}")
    assert [e.reason for e in events.items], "no Kubernetes Event on the node"
    emitted = {(r["name"], r["dimensions"].get("event_kind")) for r in read_emf(result.output.splitlines())}
    assert ("InstancesImpaired", "instance-impaired") in emitted
    assert ("NodesCordoned", "instance-impaired") in emitted

    # the next run, a minute later: the same impairment is the same event, nothing is written again
    version = scenes.core.read_node(sick.node_name).metadata.resource_version
    again = check(cluster_env)
    assert again.result["outcomes"][sick.instance_id] == "cordoned"
    assert scenes.core.read_node(sick.node_name).metadata.resource_version == version


def test_with_drain_on_impaired_the_node_is_drained_with_its_pods_own_grace_periods(
    cluster_env: dict[str, str], scenes: Scenes, statuses: Any
) -> None:
    sick = scenes.worker_node(spot=False)
    scenes.worker_node(spot=False)  # room for the replacements
    namespace = scenes.namespace("impaired")
    scenes.deployment(namespace, "api", sick.node_name, 2, grace=1, pdb_max_unavailable=1)
    scenes.wait_pdbs(namespace)
    statuses(sick.instance_id, instance_check={"status": "failed", "since": iso(-180)})
    result = check(cluster_env, DrainOnImpaired="true")
    assert result.result["outcomes"][sick.instance_id] == "drained", result.output[-3000:]
    assert result.result["ec2_requests"] == 4  # neither the cordon nor the drain asks EC2 again
    assert [p for p in scenes.pods_on(sick.node_name) if p.metadata.namespace == namespace] == []


def test_a_scheduled_event_health_did_not_deliver_starts_one_drain_and_a_later_health_event_changes_nothing(
    cluster_env: dict[str, str], scenes: Scenes, statuses: Any, functions: Any
) -> None:
    node = scenes.node_with_workloads(spot=False)
    (event,) = statuses(node.instance_id, events=[{"Code": "instance-retirement", "NotBefore": iso(3 * 3600)}])[
        "events"
    ]
    before = len(queued(cluster_env))

    first = check(cluster_env)
    assert first.result["outcomes"] == {event["InstanceEventId"]: "started"}, first.output[-3000:]
    (handed,) = queued(cluster_env)[before:]
    payload = json.loads(handed["Payload"])
    assert payload["id"] == event["InstanceEventId"]
    assert payload["detail"]["not-before"] == event["NotBefore"].replace("+00:00", "Z")
    assert any(r["name"] == "ScheduledEventsStarted" for r in read_emf(first.output.splitlines()))

    # the starter starts the Health workflow's durable function, the execution named after the event
    started = invoke(STARTER, payload, cluster_env, env_overrides=OURS)
    assert started.exit_code == 0, started.output[-3000:]
    assert started.result["execution_name"] == event["InstanceEventId"]
    assert started.result["function"] == OURS["SCHEDULED_CHANGE_FUNCTION"]
    # ... which cordons at once and drains at the lead time before NotBefore (the runner skips the wait)
    drained = invoke(SCHEDULED, payload, cluster_env)
    assert drained.result["result"]["outcomes"] == {node.instance_id: "drained"}, drained.output[-3000:]
    assert node_state(scenes, node.node_name)[1] == {SCHEDULED_TAINT: "NoSchedule"}

    # a minute later the event is still listed: its node is that drain's already, nothing is started
    second = check(cluster_env)
    assert second.result["outcomes"] == {event["InstanceEventId"]: "already-draining"}
    assert len(queued(cluster_env)) == before + 1

    # the Health event for the same maintenance, late (the backstop's drain has ended): the node keeps
    # its cordon and taint, no pod is evicted; only the records of the newest event and of the cordon call move
    before_health = scenes.core.read_node(node.node_name)
    time.sleep(1.1)  # event times have whole seconds
    health = load_event("scheduled-change", instance_id=node.instance_id, now=True)
    late = invoke(SCHEDULED, health, cluster_env)
    assert late.exit_code == 0, late.output[-3000:]
    assert node_state(scenes, node.node_name)[1] == {SCHEDULED_TAINT: "NoSchedule"}
    assert late.result["result"]["outcomes"] == {node.instance_id: "drained"}, late.output[-3000:]
    after_health = scenes.core.read_node(node.node_name)
    assert after_health.spec == before_health.spec
    assert after_health.metadata.labels == before_health.metadata.labels
    changed = {
        k
        for k in {**before_health.metadata.annotations, **after_health.metadata.annotations}
        if before_health.metadata.annotations.get(k) != after_health.metadata.annotations.get(k)
    }
    assert changed <= {"serverless-nth/newest-event-time", "serverless-nth/cordon-attempt"}, changed


def test_a_health_event_for_a_node_the_backstop_s_execution_drains_stops_at_once(
    cluster_env: dict[str, str], scenes: Scenes, statuses: Any
) -> None:
    """While the backstop's execution drains (a budget holds), the Health event of the same
    maintenance names another drain (its eventArn) and finds the node's lease held: it stops, and
    the node's spec and pods are as the backstop's drain left them."""
    node = scenes.worker_node(spot=False)
    scenes.worker_node(spot=False)  # room for the replacements
    namespace = scenes.namespace("backstop")
    pods = scenes.deployment(namespace, "api", node.node_name, 2, grace=2, pdb_max_unavailable=0)
    scenes.wait_pdbs(namespace)
    (event,) = statuses(node.instance_id, events=[{"Code": "instance-stop", "NotBefore": iso(600)}])["events"]
    found = instance_status_payload(event, node.instance_id)
    params = {"ScheduledChangeLeadSeconds": "3600"}  # within the lead time: the drain starts at once
    done: list[Invocation] = []
    backstop = threading.Thread(target=lambda: done.append(invoke(SCHEDULED, found, cluster_env, params)), daemon=True)
    backstop.start()
    wait_leased(scenes, node.node_name)
    before = scenes.core.read_node(node.node_name)

    time.sleep(1.1)  # event times have whole seconds
    health = load_event("scheduled-change", instance_id=node.instance_id, now=True)
    late = invoke(SCHEDULED, health, cluster_env, params)
    assert late.result["result"]["outcomes"] == {node.instance_id: "held-by-another-event"}, late.output[-3000:]
    assert not named(late, "drain-")
    after = scenes.core.read_node(node.node_name)
    assert after.spec == before.spec
    assert set(pods) <= {p.metadata.name for p in scenes.core.list_namespaced_pod(namespace).items}

    free_the_budget(scenes, namespace)
    backstop.join(timeout=150)
    assert done, "the backstop's execution did not end"
    assert done[0].result["result"]["outcomes"] == {node.instance_id: "drained"}, done[0].output[-3000:]


def instance_status_payload(event: dict[str, Any], instance_id: str) -> dict[str, Any]:
    """The event the backstop hands the starter for ``event`` (as the local EC2 recorded it), now."""
    payload = load_event("instance-scheduled-event", instance_id=instance_id, now=True)
    payload["id"] = payload["detail"]["instance-event-id"] = event["InstanceEventId"]
    payload["detail"].update(code=event["Code"], **{"not-before": event["NotBefore"].replace("+00:00", "Z")})
    return payload


def test_a_scheduled_event_whose_node_health_already_cordoned_starts_nothing(
    cluster_env: dict[str, str], scenes: Scenes, statuses: Any, functions: Any
) -> None:
    node = scenes.worker_node(spot=False)
    health = load_event("scheduled-change", instance_id=node.instance_id, now=True)
    assert invoke(SCHEDULED, health, cluster_env).exit_code == 0
    (event,) = statuses(node.instance_id, events=[{"Code": "instance-retirement", "NotBefore": iso(86400)}])["events"]
    before = len(queued(cluster_env))
    result = check(cluster_env)
    assert result.result["outcomes"] == {event["InstanceEventId"]: "already-draining"}
    assert len(queued(cluster_env)) == before


def test_the_calls_per_run_do_not_grow_with_the_fleet(cluster_env: dict[str, str], scenes: Scenes) -> None:
    """1,000 instances of another region (so that no other test's instance counts), four of them
    impaired or with an event, all of another cluster (so that nothing needs the API server there)."""
    region = "eu-west-1"
    ec2 = moto_client({**cluster_env, "AWS_DEFAULT_REGION": region}, "ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "kubernetes.io/cluster/another-cluster", "Value": "owned"}]}]
    fleet = [
        i["InstanceId"]
        for _ in range(4)
        for i in ec2.run_instances(ImageId=image, MinCount=250, MaxCount=250, TagSpecifications=tags)["Instances"]
    ]
    assert len(fleet) == 1000
    url = cluster_env["AWS_ENDPOINT_URL"]
    overrides = {**OURS, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}

    quiet = invoke(FUNCTION, schedule_payload(), cluster_env, PARAMS, overrides)
    assert quiet.exit_code == 0, quiet.output[-3000:]
    assert quiet.result["ec2_requests"] == 3  # one per filter: nothing matched
    for n, instance_id in enumerate(fleet[:4]):
        failed = {"system_check": {"status": "failed", "since": iso(-300)}}
        scheduled = {"events": [{"Code": "system-maintenance", "NotBefore": iso(7200)}]}
        instance_status.set_status(url, instance_id, region, **(failed if n % 2 else scheduled))
    busy = invoke(FUNCTION, schedule_payload(), cluster_env, PARAMS, overrides)
    assert busy.exit_code == 0, busy.output[-3000:]
    # three queries, then one DescribeInstances for the four found (another cluster's: no more)
    assert (busy.result["statuses"], busy.result["ec2_requests"]) == (4, 4)
    ec2.terminate_instances(InstanceIds=fleet)


def test_two_runs_before_the_cordon_start_one_execution(
    cluster_env: dict[str, str], scenes: Scenes, statuses: Any, functions: Any
) -> None:
    """A run a minute later that comes before the first execution cordoned the node hands the same
    EC2 event over again, stamped later: the starter finds its execution name (the InstanceEventId)
    taken by another payload and starts nothing."""
    node = scenes.worker_node(spot=False)
    (event,) = statuses(node.instance_id, events=[{"Code": "instance-reboot", "NotBefore": iso(86400)}])["events"]
    before = len(queued(cluster_env))
    check(cluster_env)
    time.sleep(1.1)  # the next run's event is stamped a second later at least
    check(cluster_env)
    payloads = [json.loads(q["Payload"]) for q in queued(cluster_env)[before:]]
    assert [p["id"] for p in payloads] == [event["InstanceEventId"]] * 2
    assert payloads[0] != payloads[1]
    outcomes = [invoke(STARTER, p, cluster_env, env_overrides=OURS).result["outcome"] for p in payloads]
    assert outcomes == ["started", "name-taken"]
    executions = [
        e
        for e in durable_lambda.executions(cluster_env["AWS_ENDPOINT_URL"])
        if e["DurableExecutionName"] == event["InstanceEventId"]
    ]
    assert len(executions) == 1


def test_after_a_reboot_event_the_backstop_found_the_node_is_handed_back_once_it_booted_again(
    cluster_env: dict[str, str], scenes: Scenes, statuses: Any
) -> None:
    """As after a Health reboot maintenance (test_health_followed.py): a system-reboot event that
    only the backstop saw drains the node before NotBefore, and hands it back once the machine has
    booted again (a new bootID, Ready) and EC2 says it runs. In real time."""
    node = scenes.worker_node(spot=False)
    scenes.worker_node(spot=False)  # room for the replacements
    namespace = scenes.namespace("reboot")
    scenes.deployment(namespace, "api", node.node_name, 1, grace=1, pdb_max_unavailable=None)
    (event,) = statuses(node.instance_id, events=[{"Code": "system-reboot", "NotBefore": iso(15)}])["events"]
    result = hand_back_after_reboot(
        cluster_env, scenes, node.node_name, instance_status_payload(event, node.instance_id)
    )
    assert result.result["result"]["outcomes"] == {node.instance_id: "handed-back"}, result.output[-3000:]
    assert node_state(scenes, node.node_name) == (False, {})
