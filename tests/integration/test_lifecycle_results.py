"""How a lifecycle action whose drain could not finish is completed (issue 20.6), against the local
EKS and the local Auto Scaling extension, whose instance lifecycle policy (local,
localeks/lifecycle_retention.py) keeps an abandoned instance in Terminating:Retained.

A drain becomes unfinished when the hook's global timeout (less 60 s) comes while a budget still
holds a pod. The global timeout counts from the event's time, so the event is delivered as if the
scale-in had begun 49 minutes ago (a 30 s hook's global timeout is 3000 s): the first round meets
the end, as an execution that had heartbeated that long would."""

from __future__ import annotations

import time
from typing import Any

import pytest

from localeks.cluster import moto_client
from localeks.invoke import invoke
from localeks.scenes import Scenes
from tests.integration.long_drains import LIFECYCLE, scale_in_under_budget
from tests.integration.support import node_state

RETAIN = {"RetentionTriggers": {"TerminateHookAbandon": "retain"}}


def _state(cluster_env: dict[str, str], group: str, instance_id: str) -> tuple[str | None, str]:
    found = moto_client(cluster_env, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    lifecycle = next(
        (i["LifecycleState"] for i in found["AutoScalingGroups"][0]["Instances"] if i["InstanceId"] == instance_id),
        None,
    )
    ec2 = moto_client(cluster_env, "ec2").describe_instances(InstanceIds=[instance_id])
    return lifecycle, ec2["Reservations"][0]["Instances"][0]["State"]["Name"]


@pytest.mark.parametrize(
    ("policy", "setting", "result", "kept"),
    [
        (RETAIN, "auto", "ABANDON", True),  # the group keeps it for inspection
        (None, "auto", "CONTINUE", False),  # the default: the group's other hooks run
        (RETAIN, "CONTINUE", "CONTINUE", False),  # the user's word
        (None, "ABANDON", "ABANDON", False),  # the user's word; terminated all the same
    ],
    ids=["retaining-group", "default", "continue", "abandon"],
)
def test_an_unfinished_drain_is_completed_as_the_group_and_the_setting_say(
    cluster_env: dict[str, str],
    scenes: Scenes,
    policy: dict[str, Any] | None,
    setting: str,
    result: str,
    kept: bool,
) -> None:
    scaling = scale_in_under_budget(cluster_env, scenes, "unfinished")
    group = scaling.group
    if policy:
        group.asg.update_auto_scaling_group(AutoScalingGroupName=group.name, InstanceLifecyclePolicy=policy)
    event = dict(scaling.event)
    event["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 49 * 60))
    run = invoke(LIFECYCLE, event, cluster_env, {"UnfinishedDrainResult": setting})
    assert run.result["status"] == "SUCCEEDED", run.output[-3000:]
    out = run.result["result"]
    assert (out["outcome"], out["completed"]) == ("drain-incomplete", True), out
    sent = [(c["parameters"]["LifecycleActionResult"], c["outcome"]) for c in group.calls("CompleteLifecycleAction")]
    assert sent == [(result, "ok")], sent
    (action,) = group.actions()
    assert (action["state"], action["result"]) == ("completed", result), action
    lifecycle, ec2_state = _state(cluster_env, group.name, group.instance_id)
    if kept:
        assert (lifecycle, ec2_state) == ("Terminating:Retained", "running")
    else:
        assert lifecycle is None
        assert ec2_state in ("shutting-down", "terminated")
    assert node_state(scenes, group.node_name)[0]  # still cordoned: the pods the budget held are there
