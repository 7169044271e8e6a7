"""The local moto extension for Auto Scaling terminate lifecycle hooks (localeks/autoscaling.py),
against the running local moto server: Terminating:Wait and the recorded EventBridge event,
heartbeats, CompleteLifecycleAction, the real errors, and expiry after HeartbeatTimeout."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from localeks import autoscaling
from localeks.cluster import moto_client

# under pytest-xdist, on one worker in their order: the in-process moto mock of the last tests
# (a module fixture) must not be active while another test of this module runs against the cluster
pytestmark = pytest.mark.xdist_group("local-autoscaling")

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"


def _at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


class Group:
    """A launch template, a group of ``size`` instances and terminate hooks, deleted afterwards."""

    def __init__(self, env: dict[str, str], size: int = 1) -> None:
        self.env = env
        self.name = f"h11-{uuid.uuid4().hex[:8]}"
        self.ec2 = moto_client(env, "ec2")
        self.asg = moto_client(env, "autoscaling")
        self.ec2.create_launch_template(
            LaunchTemplateName=self.name, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"}
        )
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=self.name,
            LaunchTemplate={"LaunchTemplateName": self.name},
            MinSize=0,
            MaxSize=size + 1,
            DesiredCapacity=size,
            AvailabilityZones=["us-east-1a"],
        )

    def hook(
        self, name: str = "drain", timeout: int = 30, default: str | None = None, metadata: str | None = None
    ) -> str:
        params: dict[str, Any] = {
            "AutoScalingGroupName": self.name,
            "LifecycleHookName": name,
            "LifecycleTransition": TERMINATING,
            "HeartbeatTimeout": timeout,
        }
        if default:
            params["DefaultResult"] = default
        if metadata:
            params["NotificationMetadata"] = metadata
        self.asg.put_lifecycle_hook(**params)
        return name

    def instances(self) -> dict[str, str]:
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])["AutoScalingGroups"][0]
        return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}

    def lifecycle_state(self, instance_id: str) -> str | None:
        found = self.asg.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
        return found[0]["LifecycleState"] if found else None

    def ec2_state(self, instance_id: str) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]["State"]["Name"]

    def actions(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        return [
            a
            for a in autoscaling.actions(self.env["AWS_ENDPOINT_URL"])
            if a["group"] == self.name and instance_id in (None, a["instance_id"])
        ]

    def calls(self, operation: str) -> list[dict[str, Any]]:
        return [
            c
            for c in autoscaling.calls(self.env["AWS_ENDPOINT_URL"], operation)
            if c["parameters"].get("AutoScalingGroupName") == self.name
        ]

    def delete(self) -> None:
        self.asg.delete_auto_scaling_group(AutoScalingGroupName=self.name, ForceDelete=True)
        self.ec2.delete_launch_template(LaunchTemplateName=self.name)


@pytest.fixture
def group(cluster_env: dict[str, str]) -> Iterator[Group]:
    made = Group(cluster_env, size=2)
    yield made
    made.delete()


@pytest.fixture
def function_asg(cluster_env: dict[str, str], function_session: boto3.Session) -> Any:
    """Auto Scaling as the functions call it: with the function role's credentials."""
    return function_session.client("autoscaling", endpoint_url=cluster_env["AWS_ENDPOINT_URL"])


def error(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    answer = raised.value.response
    return {"status": answer["ResponseMetadata"]["HTTPStatusCode"], **answer["Error"]}


def test_a_terminated_instance_waits_with_one_action_per_hook_and_its_event(group: Group) -> None:
    group.hook("drain", metadata="cluster=local-eks")
    group.hook("audit", timeout=60, default="CONTINUE")
    hooks = group.asg.describe_lifecycle_hooks(AutoScalingGroupName=group.name)["LifecycleHooks"]
    assert {h["LifecycleHookName"]: (h["HeartbeatTimeout"], h["GlobalTimeout"], h["DefaultResult"]) for h in hooks} == {
        "drain": (30, 3000, "ABANDON"),
        "audit": (60, 6000, "CONTINUE"),
    }
    assert next(h for h in hooks if h["LifecycleHookName"] == "drain")["NotificationMetadata"] == "cluster=local-eks"
    victim, other = sorted(group.instances())

    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    activity = group.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=victim, ShouldDecrementDesiredCapacity=True
    )
    assert activity["Activity"]["Description"] == f"Terminating EC2 instance: {victim}"

    assert group.instances() == {victim: "Terminating:Wait", other: "InService"}
    assert group.lifecycle_state(victim) == "Terminating:Wait"
    assert group.ec2_state(victim) == "running"
    actions = {a["hook"]: a for a in group.actions(victim)}
    assert set(actions) == {"drain", "audit"}
    drain = actions["drain"]
    assert uuid.UUID(drain["token"]).version == 4
    assert drain["token"] != actions["audit"]["token"]
    assert (drain["state"], drain["result"], drain["heartbeats"]) == ("pending", None, [])
    started = _at(drain["started"])
    assert _at(drain["heartbeat_deadline"]) - started == datetime.timedelta(seconds=30)
    assert _at(drain["global_deadline"]) - started == datetime.timedelta(seconds=3000)

    event = drain["event"]
    group_arn = group.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group.name])["AutoScalingGroups"][0][
        "AutoScalingGroupARN"
    ]
    assert {k: v for k, v in event.items() if k not in ("id", "time")} == {
        "version": "0",
        "detail-type": "EC2 Instance-terminate Lifecycle Action",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": [group_arn],
        "detail": {
            "LifecycleActionToken": drain["token"],
            "AutoScalingGroupName": group.name,
            "LifecycleHookName": "drain",
            "EC2InstanceId": victim,
            "LifecycleTransition": TERMINATING,
            "NotificationMetadata": "cluster=local-eks",
            "Origin": "AutoScalingGroup",
            "Destination": "EC2",
        },
    }
    assert uuid.UUID(event["id"])
    assert event["time"].endswith("Z")
    assert _at(event["time"]) >= before
    assert "NotificationMetadata" not in actions["audit"]["event"]["detail"]

    # the instance is already terminating: the group refuses a second termination
    refused = error(
        group.asg.terminate_instance_in_auto_scaling_group, InstanceId=victim, ShouldDecrementDesiredCapacity=True
    )
    assert (refused["status"], refused["Code"]) == (400, "ScalingActivityInProgress")


def test_heartbeat_extends_and_continue_terminates_once(group: Group, function_asg: Any) -> None:
    group.hook("drain")
    victim = sorted(group.instances())[0]
    group.asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
    assert len(group.instances()) == 3  # not decremented: a replacement is launched
    (action,) = group.actions(victim)
    token = action["token"]

    time.sleep(1.5)
    function_asg.record_lifecycle_action_heartbeat(
        AutoScalingGroupName=group.name, LifecycleHookName="drain", LifecycleActionToken=token, InstanceId=victim
    )
    function_asg.record_lifecycle_action_heartbeat(
        AutoScalingGroupName=group.name, LifecycleHookName="drain", InstanceId=victim
    )
    (action,) = group.actions(victim)
    assert len(action["heartbeats"]) == 2
    last = _at(action["heartbeats"][-1])
    assert _at(action["heartbeat_deadline"]) == last + datetime.timedelta(seconds=30)
    assert last - _at(action["started"]) >= datetime.timedelta(seconds=1.5)
    assert group.lifecycle_state(victim) == "Terminating:Wait"

    complete = {
        "AutoScalingGroupName": group.name,
        "LifecycleHookName": "drain",
        "LifecycleActionToken": token,
        "InstanceId": victim,
        "LifecycleActionResult": "CONTINUE",
    }
    function_asg.complete_lifecycle_action(**complete)
    assert group.lifecycle_state(victim) is None
    assert victim not in group.instances()
    assert group.ec2_state(victim) in ("shutting-down", "terminated")
    (action,) = group.actions(victim)
    assert (action["state"], action["result"], action["ended_by"]) == (
        "completed",
        "CONTINUE",
        "CompleteLifecycleAction",
    )

    again = error(function_asg.complete_lifecycle_action, **complete)
    assert again == {
        "status": 400,
        "Type": "Sender",
        "Code": "ValidationError",
        "Message": f"No active Lifecycle Action found with token {token}",
    }
    by_instance = error(
        function_asg.record_lifecycle_action_heartbeat,
        AutoScalingGroupName=group.name,
        LifecycleHookName="drain",
        InstanceId=victim,
    )
    assert by_instance["Message"] == f"No active Lifecycle Action found with instance ID {victim}"

    recorded = group.calls("CompleteLifecycleAction")
    assert [(c["outcome"], c["error_code"]) for c in recorded] == [("ok", None), ("error", "ValidationError")]
    assert recorded[0]["parameters"]["LifecycleActionToken"] == token
    assert [c["outcome"] for c in group.calls("RecordLifecycleActionHeartbeat")] == ["ok", "ok", "error"]


def test_wrong_group_hook_token_or_result_get_the_real_errors(group: Group, function_asg: Any) -> None:
    group.hook("drain")
    victim = sorted(group.instances())[0]
    group.asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    (action,) = group.actions(victim)
    good = {
        "AutoScalingGroupName": group.name,
        "LifecycleHookName": "drain",
        "LifecycleActionToken": action["token"],
        "LifecycleActionResult": "CONTINUE",
    }
    wrong_token = str(uuid.uuid4())
    cases = {
        "token": (
            {**good, "LifecycleActionToken": wrong_token},
            f"No active Lifecycle Action found with token {wrong_token}",
        ),
        "hook": (
            {**good, "LifecycleHookName": "other"},
            f"No active Lifecycle Action found with token {action['token']}",
        ),
        "instance": (
            {**{k: v for k, v in good.items() if k != "LifecycleActionToken"}, "InstanceId": "i-0123456789abcdef0"},
            "No active Lifecycle Action found with instance ID i-0123456789abcdef0",
        ),
        "group": (
            {**good, "AutoScalingGroupName": "no-such-group"},
            "AutoScalingGroup name not found - AutoScalingGroup 'no-such-group' not found",
        ),
        "result": ({**good, "LifecycleActionResult": "RETRY"}, "LifecycleActionResult must be CONTINUE or ABANDON"),
        "neither": (
            {k: v for k, v in good.items() if k != "LifecycleActionToken"},
            "Either LifecycleActionToken or InstanceId must be specified",
        ),
    }
    for case, (params, message) in cases.items():
        answer = error(function_asg.complete_lifecycle_action, **params)
        assert (answer["status"], answer["Code"], answer["Message"]) == (400, "ValidationError", message), case
    heartbeat = {k: v for k, v in cases["token"][0].items() if k != "LifecycleActionResult"}
    assert error(function_asg.record_lifecycle_action_heartbeat, **heartbeat)["Message"] == cases["token"][1]

    (action,) = group.actions(victim)
    assert action["state"] == "pending"
    assert group.lifecycle_state(victim) == "Terminating:Wait"
    gone = error(
        group.asg.terminate_instance_in_auto_scaling_group,
        InstanceId="i-0123456789abcdef0",
        ShouldDecrementDesiredCapacity=True,
    )
    assert gone["Message"] == "Instance Id not found - No managed instance found for instance ID: i-0123456789abcdef0"
    bad_timeout = error(
        group.asg.put_lifecycle_hook,
        AutoScalingGroupName=group.name,
        LifecycleHookName="short",
        LifecycleTransition=TERMINATING,
        HeartbeatTimeout=29,
    )
    assert (bad_timeout["Code"], bad_timeout["Message"]) == (
        "ValidationError",
        "HeartbeatTimeout must be between 30 and 7200 seconds",
    )


def test_abandon_ends_the_other_hooks_and_terminates(group: Group, function_asg: Any) -> None:
    group.hook("drain")
    group.hook("audit")
    victim = sorted(group.instances())[0]
    group.asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    function_asg.complete_lifecycle_action(
        AutoScalingGroupName=group.name, LifecycleHookName="audit", InstanceId=victim, LifecycleActionResult="CONTINUE"
    )
    assert group.lifecycle_state(victim) == "Terminating:Wait"  # "drain" still pending
    function_asg.complete_lifecycle_action(
        AutoScalingGroupName=group.name, LifecycleHookName="drain", InstanceId=victim, LifecycleActionResult="ABANDON"
    )
    assert group.lifecycle_state(victim) is None
    assert group.ec2_state(victim) in ("shutting-down", "terminated")
    assert {a["hook"]: (a["state"], a["result"]) for a in group.actions(victim)} == {
        "audit": ("completed", "CONTINUE"),
        "drain": ("completed", "ABANDON"),
    }

    # ABANDON with two pending hooks: the other one is stopped, the instance goes at once
    group.hook("third")
    survivor = next(i for i, s in group.instances().items() if s == "InService")
    group.asg.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=0)  # scale-in
    assert group.lifecycle_state(survivor) == "Terminating:Wait"
    function_asg.complete_lifecycle_action(
        AutoScalingGroupName=group.name, LifecycleHookName="third", InstanceId=survivor, LifecycleActionResult="ABANDON"
    )
    assert group.lifecycle_state(survivor) is None
    states = {a["hook"]: (a["state"], a["result"]) for a in group.actions(survivor)}
    assert states == {"drain": ("cancelled", None), "audit": ("cancelled", None), "third": ("completed", "ABANDON")}


def test_an_action_without_heartbeat_expires_with_the_default_result(cluster_env: dict[str, str]) -> None:
    group = Group(cluster_env, size=1)
    try:
        group.hook("drain", timeout=30, default="CONTINUE")
        (victim,) = group.instances()
        group.asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
        (action,) = group.actions(victim)
        deadline = _at(action["heartbeat_deadline"])
        # only EC2 and the local route are called meanwhile: the supervisor's timer must do it alone
        while group.ec2_state(victim) == "running" and datetime.datetime.now(
            datetime.UTC
        ) < deadline + datetime.timedelta(seconds=5):
            time.sleep(0.5)
        (action,) = group.actions(victim)
        assert (action["state"], action["result"], action["ended_by"]) == ("expired", "CONTINUE", "HeartbeatTimeout")
        assert deadline <= _at(action["ended"]) < deadline + datetime.timedelta(seconds=1)
        assert group.ec2_state(victim) in ("shutting-down", "terminated")
        assert group.lifecycle_state(victim) is None
        late = error(
            group.asg.complete_lifecycle_action,
            AutoScalingGroupName=group.name,
            LifecycleHookName="drain",
            LifecycleActionToken=action["token"],
            LifecycleActionResult="CONTINUE",
        )
        assert late["Message"] == f"No active Lifecycle Action found with token {action['token']}"
    finally:
        group.delete()


# --- in process, on a fake clock: the same module on moto's in-process mock, no cluster ----------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def mock_clients() -> Iterator[tuple[Any, Any]]:
    """moto's in-process mock, once for these tests (starting it costs seconds)."""
    from moto import mock_aws

    autoscaling.install()  # idempotent; patches this process's moto
    with mock_aws():
        keys = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
        ec2, asg = boto3.client("ec2", **keys), boto3.client("autoscaling", **keys)
        ec2.create_launch_template(
            LaunchTemplateName="h11-mock", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"}
        )
        yield ec2, asg


@pytest.fixture
def mocked(mock_clients: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, Clock, str]:
    """A fresh group of two instances on the mock, and the module's clock under the test's control."""
    ec2, asg = mock_clients
    clock = Clock()
    monkeypatch.setattr(autoscaling, "_now", clock)
    name = f"g-{uuid.uuid4().hex[:8]}"
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": "h11-mock"},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=2,
        AvailabilityZones=["us-east-1a"],
    )
    return ec2, asg, clock, name


def _mock_actions(instance_id: str) -> list[autoscaling.Action]:
    return [a for a in autoscaling._actions if a.instance_id == instance_id]


def _states(asg: Any, group: str) -> dict[str, str]:
    found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]
    return {i["InstanceId"]: i["LifecycleState"] for i in found}


def test_heartbeats_never_pass_the_global_timeout(mocked: tuple[Any, Any, Clock, str]) -> None:
    _, asg, clock, g = mocked
    asg.put_lifecycle_hook(
        AutoScalingGroupName=g, LifecycleHookName="h", LifecycleTransition=TERMINATING, HeartbeatTimeout=30
    )
    victim = sorted(_states(asg, g))[0]
    asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    (action,) = _mock_actions(victim)
    start = action.started
    for _ in range(103):  # a heartbeat every 29 s: the 103rd, at 2987 s, would reach 3017 s
        clock.now += 29
        asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=g, LifecycleHookName="h", InstanceId=victim)
        assert action.heartbeat_deadline == min(clock.now + 30, start + 3000)
    assert action.state == "pending"
    assert action.heartbeat_deadline == start + 3000  # capped by GlobalTimeout = 100 x 30
    assert len(action.heartbeats) == 103
    clock.now = start + 2999.5
    asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=g, LifecycleHookName="h", InstanceId=victim)
    assert action.heartbeat_deadline == start + 3000
    clock.now = start + 3000
    gone = error(
        asg.record_lifecycle_action_heartbeat, AutoScalingGroupName=g, LifecycleHookName="h", InstanceId=victim
    )
    assert gone["Message"] == f"No active Lifecycle Action found with instance ID {victim}"
    assert (action.state, action.result, action.ended_by) == ("expired", "ABANDON", "GlobalTimeout")
    assert victim not in _states(asg, g)


def test_scale_in_through_update_waits_and_deleting_the_hook_continues(mocked: tuple[Any, Any, Clock, str]) -> None:
    ec2, asg, _, g = mocked
    asg.put_lifecycle_hook(
        AutoScalingGroupName=g, LifecycleHookName="h", LifecycleTransition=TERMINATING, HeartbeatTimeout=300
    )
    protected, victim = sorted(_states(asg, g))
    asg.set_instance_protection(AutoScalingGroupName=g, InstanceIds=[protected], ProtectedFromScaleIn=True)
    asg.update_auto_scaling_group(AutoScalingGroupName=g, MinSize=0, DesiredCapacity=0)
    assert _states(asg, g) == {protected: "InService", victim: "Terminating:Wait"}
    assert not _mock_actions(protected)
    asg.update_auto_scaling_group(AutoScalingGroupName=g, DesiredCapacity=1)  # no new instance: InService counts
    assert len(_states(asg, g)) == 2

    # "If there are any outstanding lifecycle actions, they are completed first (... CONTINUE for
    # terminating instances)."
    asg.delete_lifecycle_hook(AutoScalingGroupName=g, LifecycleHookName="h")
    (action,) = _mock_actions(victim)
    assert (action.state, action.result, action.ended_by) == ("completed", "CONTINUE", "DeleteLifecycleHook")
    assert _states(asg, g) == {protected: "InService"}
    state = ec2.describe_instances(InstanceIds=[victim])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")


def test_without_a_terminate_hook_moto_terminates_at_once(mocked: tuple[Any, Any, Clock, str]) -> None:
    _, asg, _, g = mocked
    asg.put_lifecycle_hook(
        AutoScalingGroupName=g,
        LifecycleHookName="launch",
        LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
        HeartbeatTimeout=60,
    )
    victim = sorted(_states(asg, g))[0]
    asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    assert victim not in _states(asg, g)
    assert not _mock_actions(victim)
