"""The local extension of moto's Auto Scaling for instance lifecycle policies
(localeks/lifecycle_retention.py), in process on moto's mock: the policy is kept and answered, and
an abandoned terminate action of a group that retains leaves its instance in Terminating:Retained,
running, where a CONTINUE or a group without the policy terminates it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from localeks import autoscaling

RETAIN = {"RetentionTriggers": {"TerminateHookAbandon": "retain"}}


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[Any, Any]]:
    from moto import mock_aws

    autoscaling.install()
    with mock_aws():
        keys = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
        ec2, asg = boto3.client("ec2", **keys), boto3.client("autoscaling", **keys)
        ec2.create_launch_template(
            LaunchTemplateName="retention", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"}
        )
        yield ec2, asg


def _group(asg: Any, policy: dict[str, Any] | None, default_result: str = "CONTINUE") -> tuple[str, str]:
    name = f"g-{uuid.uuid4().hex[:8]}"
    extra = {"InstanceLifecyclePolicy": policy} if policy else {}
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": "retention"},
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=1,
        AvailabilityZones=["us-east-1a"],
        **extra,
    )
    asg.put_lifecycle_hook(
        AutoScalingGroupName=name,
        LifecycleHookName="drain",
        LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
        HeartbeatTimeout=30,
        DefaultResult=default_result,
    )
    instance = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"][0]
    asg.terminate_instance_in_auto_scaling_group(InstanceId=instance["InstanceId"], ShouldDecrementDesiredCapacity=True)
    return name, instance["InstanceId"]


def _state(asg: Any, ec2: Any, group: str, instance_id: str) -> tuple[str | None, str]:
    found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]
    lifecycle = next((i["LifecycleState"] for i in found if i["InstanceId"] == instance_id), None)
    ec2_state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
    return lifecycle, ec2_state


def _complete(asg: Any, group: str, instance_id: str, result: str) -> None:
    asg.complete_lifecycle_action(
        AutoScalingGroupName=group, LifecycleHookName="drain", LifecycleActionResult=result, InstanceId=instance_id
    )


def test_the_policy_is_kept_and_answered(clients: tuple[Any, Any]) -> None:
    _, asg = clients
    group, _ = _group(asg, RETAIN)
    described = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    assert described["InstanceLifecyclePolicy"] == RETAIN
    asg.update_auto_scaling_group(
        AutoScalingGroupName=group, InstanceLifecyclePolicy={"RetentionTriggers": {"TerminateHookAbandon": "terminate"}}
    )
    described = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    assert described["InstanceLifecyclePolicy"]["RetentionTriggers"]["TerminateHookAbandon"] == "terminate"
    with pytest.raises(ClientError) as error:
        asg.update_auto_scaling_group(
            AutoScalingGroupName=group, InstanceLifecyclePolicy={"RetentionTriggers": {"TerminateHookAbandon": "keep"}}
        )
    assert error.value.response["Error"]["Code"] == "ValidationError"


def test_an_abandoned_action_of_a_retaining_group_keeps_the_instance(clients: tuple[Any, Any]) -> None:
    ec2, asg = clients
    group, instance_id = _group(asg, RETAIN)
    assert _state(asg, ec2, group, instance_id) == ("Terminating:Wait", "running")
    _complete(asg, group, instance_id, "ABANDON")
    assert _state(asg, ec2, group, instance_id) == ("Terminating:Retained", "running")


@pytest.mark.parametrize(("policy", "result"), [(RETAIN, "CONTINUE"), (None, "ABANDON")])
def test_continue_or_a_group_without_the_policy_terminates(
    clients: tuple[Any, Any], policy: dict[str, Any] | None, result: str
) -> None:
    ec2, asg = clients
    group, instance_id = _group(asg, policy)
    _complete(asg, group, instance_id, result)
    lifecycle, ec2_state = _state(asg, ec2, group, instance_id)
    assert lifecycle is None  # out of the group
    assert ec2_state in ("shutting-down", "terminated")


def test_an_expiry_with_default_result_abandon_retains(
    clients: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ec2, asg = clients
    group, instance_id = _group(asg, RETAIN, default_result="ABANDON")
    later = autoscaling._now() + 31
    monkeypatch.setattr(autoscaling, "_now", lambda: later)
    autoscaling.expire_due()
    assert _state(asg, ec2, group, instance_id) == ("Terminating:Retained", "running")
