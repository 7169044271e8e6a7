"""The local moto extension's Running warm pool (localeks/warm_pools.py), against the running local
moto server: a scale-in of a group that reuses instances sends the instance to the pool once its
terminate action ends with CONTINUE, DescribeWarmPool lists it, and a scale-out takes it back with
the launch event Auto Scaling sends; without reuse, or on ABANDON, the instance is terminated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localeks.warm_pools import warm_pool_record
from tests.integration.test_local_autoscaling import Group

pytestmark = pytest.mark.xdist_group("local-autoscaling")
REUSE = {"ReuseOnScaleIn": True}


@pytest.fixture
def pooled(cluster_env: dict[str, str]) -> Iterator[Group]:
    made = Group(cluster_env, size=1)
    made.hook("drain")
    yield made
    made.delete()


def _complete(group: Group, instance_id: str, result: str) -> None:
    group.asg.complete_lifecycle_action(
        AutoScalingGroupName=group.name, LifecycleHookName="drain", InstanceId=instance_id, LifecycleActionResult=result
    )


def _record(group: Group, instance_id: str) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    record = warm_pool_record(group.env["AWS_ENDPOINT_URL"])
    moves = [(t["from"], t["to"]) for t in record["transitions"] if t["instance_id"] == instance_id]
    launches = [e for e in record["launch_events"] if e["detail"]["EC2InstanceId"] == instance_id]
    return moves, launches


def test_scale_in_to_a_running_pool_and_out_of_it(pooled: Group) -> None:
    group = pooled
    group.asg.put_warm_pool(AutoScalingGroupName=group.name, PoolState="Running", InstanceReusePolicy=REUSE)
    (victim,) = group.instances()
    assert group.asg.describe_warm_pool(AutoScalingGroupName=group.name)["Instances"] == []

    group.asg.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=0)
    (action,) = group.actions(victim)
    detail = action["event"]["detail"]
    assert (detail["Origin"], detail["Destination"]) == ("AutoScalingGroup", "WarmPool")
    assert group.instances() == {victim: "Terminating:Wait"}
    _complete(group, victim, "CONTINUE")
    assert group.instances() == {}  # the pool's instances are not the group's
    pool = group.asg.describe_warm_pool(AutoScalingGroupName=group.name)
    assert [(i["InstanceId"], i["LifecycleState"]) for i in pool["Instances"]] == [(victim, "Warmed:Running")]
    assert (pool["WarmPoolConfiguration"]["PoolState"], group.ec2_state(victim)) == ("Running", "running")

    group.asg.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=2)
    states = group.instances()
    assert states.pop(victim) == "InService"  # from the pool first; moto launches the rest
    assert list(states.values()) == ["InService"]
    assert group.asg.describe_warm_pool(AutoScalingGroupName=group.name)["Instances"] == []
    moves, (launch,) = _record(group, victim)
    assert moves == [
        ("Terminating:Wait", "Warmed:Pending"),
        ("Warmed:Pending", "Warmed:Running"),
        ("Warmed:Running", "Pending"),
        ("Pending", "InService"),
    ]
    assert (launch["source"], launch["detail-type"]) == ("aws.autoscaling", "EC2 Instance Launch Successful")
    assert (launch["detail"]["Origin"], launch["detail"]["Destination"]) == ("WarmPool", "AutoScalingGroup")
    assert launch["detail"]["AutoScalingGroupName"] == group.name
    assert launch["resources"][1].endswith(f":instance/{victim}")


@pytest.mark.parametrize(
    ("pool", "result"),
    [({"PoolState": "Running", "InstanceReusePolicy": REUSE}, "ABANDON"), ({"PoolState": "Running"}, "CONTINUE")],
    ids=["abandoned", "no-reuse"],
)
def test_abandoned_or_not_reused_the_instance_is_terminated(pooled: Group, pool: dict[str, Any], result: str) -> None:
    group = pooled
    group.asg.put_warm_pool(AutoScalingGroupName=group.name, **pool)
    (victim,) = group.instances()
    group.asg.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=0)
    (action,) = group.actions(victim)
    reused = "InstanceReusePolicy" in pool
    assert action["event"]["detail"]["Destination"] == ("WarmPool" if reused else "EC2")
    _complete(group, victim, result)
    assert group.instances() == {}
    assert group.asg.describe_warm_pool(AutoScalingGroupName=group.name)["Instances"] == []
    assert group.ec2_state(victim) in ("shutting-down", "terminated")
    assert _record(group, victim) == ([], [])
