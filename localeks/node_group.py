"""A self-managed node group for scenes: an Auto Scaling group of one instance that is a node of the
local EKS, with a terminate lifecycle hook. The local moto extension (localeks/autoscaling.py)
plays the group: a scale-in holds the instance in Terminating:Wait and records the event Auto
Scaling would send, which the demo and the tests deliver to the function."""

from __future__ import annotations

import uuid
from typing import Any

from localeks import autoscaling
from localeks.cluster import moto_client
from localeks.scenes import Scenes

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
HEARTBEAT_TIMEOUT = 30  # the smallest Auto Scaling accepts


class NodeGroup:
    """An Auto Scaling group of one instance that is a node of the cluster, with this stack's
    terminate hook (serverless-nth-<cluster>, the template's default)."""

    def __init__(
        self,
        cluster_env: dict[str, str],
        scenes: Scenes,
        hook: str | None = None,
        node: bool = True,
        heartbeat_timeout: int = HEARTBEAT_TIMEOUT,
    ) -> None:
        self.env = cluster_env
        self.asg = moto_client(cluster_env, "autoscaling")
        ec2 = moto_client(cluster_env, "ec2")
        self.name = f"eks-workers-{uuid.uuid4().hex[:8]}"
        ec2.create_launch_template(
            LaunchTemplateName=self.name, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"}
        )
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=self.name,
            LaunchTemplate={"LaunchTemplateName": self.name},
            MinSize=0,
            MaxSize=2,
            DesiredCapacity=1,
            AvailabilityZones=["us-east-1b"],
        )
        self.hook = hook or f"serverless-nth-{cluster_env['CLUSTER_NAME']}"
        self.asg.put_lifecycle_hook(
            AutoScalingGroupName=self.name,
            LifecycleHookName=self.hook,
            LifecycleTransition=TERMINATING,
            HeartbeatTimeout=heartbeat_timeout,
            DefaultResult="CONTINUE",
        )
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])["AutoScalingGroups"][0]
        self.instance_id = group["Instances"][0]["InstanceId"]
        instance = ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"][0]["Instances"][0]
        self.instance: dict[str, Any] = instance
        self.node_name = scenes.node(instance, spot=False) if node else ""

    def scale_in(self) -> dict[str, Any]:
        """Terminates the instance through the group: the action waits; returns its event."""
        self.asg.terminate_instance_in_auto_scaling_group(
            InstanceId=self.instance_id, ShouldDecrementDesiredCapacity=True
        )
        (action,) = self.actions()
        return dict(action["event"])

    def complete(self, result: str = "CONTINUE") -> None:
        """Ends the waiting action as an operator (or another tool) would, not this product."""
        self.asg.complete_lifecycle_action(
            AutoScalingGroupName=self.name,
            LifecycleHookName=self.hook,
            LifecycleActionResult=result,
            InstanceId=self.instance_id,
        )

    def actions(self) -> list[dict[str, Any]]:
        return [a for a in autoscaling.actions(self.env["AWS_ENDPOINT_URL"]) if a["group"] == self.name]

    def calls(self, operation: str) -> list[dict[str, Any]]:
        found = autoscaling.calls(self.env["AWS_ENDPOINT_URL"], operation)
        return [c for c in found if c["parameters"].get("AutoScalingGroupName") == self.name]
