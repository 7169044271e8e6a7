"""EC2 Auto Scaling terminate lifecycle action: a group (scale-in, instance refresh, AZ rebalance)
holds the instance in ``Terminating:Wait`` until the hook's owner says CONTINUE, the hook's
heartbeat timeout passes, or its global timeout does.

    {"version": "0", "id": "...", "detail-type": "EC2 Instance-terminate Lifecycle Action",
     "source": "aws.autoscaling", "account": "123456789012", "time": "2026-11-27T10:00:00Z",
     "region": "us-east-1", "resources": ["arn:aws:autoscaling:...:autoScalingGroupName/my-asg"],
     "detail": {"LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
                "AutoScalingGroupName": "my-asg", "LifecycleHookName": "serverless-nth",
                "EC2InstanceId": "i-1234567890abcdef0",
                "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
                "NotificationMetadata": "additional-info", "Origin": "AutoScalingGroup",
                "Destination": "EC2"}}

(docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-event-reference.html;
aws-node-termination-handler pkg/monitor/sqsevent/asg-lifecycle-event.go). ``NotificationMetadata``,
``Origin`` and ``Destination`` are optional; ``Destination`` ``WarmPool`` means the instance is
stopped into a warm pool rather than terminated: its node goes away just the same.
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, InterruptionEvent, LifecycleHookRef
from serverless_nth.events.parsing import INSTANCE_ID, parse_eventbridge

SOURCE = "aws.autoscaling"
DETAIL_TYPE = "EC2 Instance-terminate Lifecycle Action"
# Auto Scaling's own limits (API reference: ResourceName 1-255, LifecycleActionToken 36 characters)
_NAME = r"^[\x20-\x7e]{1,255}$"
_HOOK_NAME = r"^[A-Za-z0-9\-_/]{1,255}$"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class LifecycleActionDetail(BaseModel):
    token: str = Field(alias="LifecycleActionToken", pattern=_UUID)
    group: str = Field(alias="AutoScalingGroupName", pattern=_NAME)
    hook: str = Field(alias="LifecycleHookName", pattern=_HOOK_NAME)
    instance_id: str = Field(alias="EC2InstanceId", pattern=INSTANCE_ID)
    transition: Literal["autoscaling:EC2_INSTANCE_TERMINATING"] = Field(alias="LifecycleTransition")
    destination: str = Field(default="", alias="Destination", max_length=64)


class LifecycleActionEvent(EventBridgeModel):
    detail: LifecycleActionDetail


def normalise(event: Any) -> InterruptionEvent:
    parsed = parse_eventbridge(event, LifecycleActionEvent, SOURCE, DETAIL_TYPE)
    detail = parsed.detail
    return InterruptionEvent(
        kind=EventKind.ASG_TERMINATING,
        event_id=parsed.id,
        instance_id=detail.instance_id,
        region=parsed.region,
        account=parsed.account,
        time=parsed.time,
        # the taint's value: where the instance goes (a label value, so no group or hook names)
        detail="warm-pool" if detail.destination == "WarmPool" else "terminate",
        lifecycle=LifecycleHookRef(group=detail.group, hook=detail.hook, token=detail.token),
    )
