"""Warm pools (issue 20.7), against the local EKS and the local Auto Scaling extension's Running
warm pool (local, localeks/warm_pools.py): a node scaled in to the pool is drained by the lifecycle
workflow as any scale-in is; when the scale-out takes its instance back (no stop, no start, so no
`running` event), the "EC2 Instance Launch Successful" event from the pool hands the node back
uncordoned and untainted. An operator's cordon, there before the scale-in, stays."""

from __future__ import annotations

import time

import pytest

from localeks.invoke import invoke
from localeks.node_group import NodeGroup
from localeks.scenes import Scenes
from localeks.warm_pools import warm_pool_record
from tests.integration.long_drains import LIFECYCLE
from tests.integration.support import ec2_state, node_state

WARM_POOL_RETURN = "WarmPoolReturnFunction"
TAINT = "serverless-nth/asg-terminating"


def _lifecycle_state(group: NodeGroup) -> str | None:
    found = group.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group.name])["AutoScalingGroups"][0]
    return next((i["LifecycleState"] for i in found["Instances"] if i["InstanceId"] == group.instance_id), None)


@pytest.mark.parametrize("operator_cordon", [False, True], ids=["ours", "operators-cordon"])
def test_a_node_back_from_the_warm_pool_is_handed_back(
    cluster_env: dict[str, str], scenes: Scenes, operator_cordon: bool
) -> None:
    group = NodeGroup(cluster_env, scenes)
    group.asg.put_warm_pool(
        AutoScalingGroupName=group.name, PoolState="Running", InstanceReusePolicy={"ReuseOnScaleIn": True}
    )
    scenes.worker_node(spot=False)  # room for the replacements
    namespace = scenes.namespace("warm-pool")
    pods = scenes.deployment(namespace, "api", group.node_name, 2, grace=5, pdb_max_unavailable=1)
    scenes.wait_pdbs(namespace)
    if operator_cordon:
        scenes.core.patch_node(group.node_name, {"spec": {"unschedulable": True}})  # kubectl cordon

    # scale-in: the instance waits for this stack's hook, bound for the pool
    group.asg.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=0)
    (action,) = group.actions()
    assert action["event"]["detail"]["Destination"] == "WarmPool", action["event"]
    drained = invoke(LIFECYCLE, action["event"], cluster_env)
    assert drained.result["status"] == "SUCCEEDED", drained.output[-3000:]
    assert drained.result["result"]["outcome"] == "drained", drained.result["result"]
    assert node_state(scenes, group.node_name) == (True, {TAINT: "NoSchedule"})
    assert not {p.metadata.name for p in scenes.pods_on(group.node_name)} & set(pods)
    pool = group.asg.describe_warm_pool(AutoScalingGroupName=group.name)["Instances"]
    assert [(i["InstanceId"], i["LifecycleState"]) for i in pool] == [(group.instance_id, "Warmed:Running")]
    assert ec2_state(scenes, group.instance_id) == "running"  # a Running pool: no stop, no start

    # scale-out: the pool's instance returns to service; its launch event reaches the new function
    time.sleep(1.1)  # event times have whole seconds: the launch is newer than the scale-in
    group.asg.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=1)
    assert _lifecycle_state(group) == "InService"
    assert node_state(scenes, group.node_name) == (True, {TAINT: "NoSchedule"})  # what the event must undo
    launches = [
        e
        for e in warm_pool_record(cluster_env["AWS_ENDPOINT_URL"])["launch_events"]
        if e["detail"]["AutoScalingGroupName"] == group.name
    ]
    (launch,) = launches
    assert (launch["detail"]["Origin"], launch["detail"]["Destination"]) == ("WarmPool", "AutoScalingGroup")
    assert launch["detail"]["EC2InstanceId"] == group.instance_id
    back = invoke(WARM_POOL_RETURN, launch, cluster_env)
    assert back.exit_code == 0, back.output[-3000:]
    assert (back.result["outcome"], back.result["basis"]) == ("restored", "came-back"), back.result
    # ours: uncordoned and untainted; the operator's cordon is not ours to undo
    assert node_state(scenes, group.node_name) == (operator_cordon, {})

    # and round again: nothing of the first trip (drain lease, marks) keeps the next scale-in from draining
    group.asg.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=0)
    second = next(a for a in group.actions() if a["state"] == "pending")
    again = invoke(LIFECYCLE, second["event"], cluster_env)
    assert again.result["status"] == "SUCCEEDED", again.output[-3000:]
    assert again.result["result"]["outcome"] == "drained", again.result["result"]
    assert node_state(scenes, group.node_name) == (True, {TAINT: "NoSchedule"})
