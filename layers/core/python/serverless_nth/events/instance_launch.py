"""EC2 Auto Scaling "EC2 Instance Launch Successful": acted on only when the instance comes back into
service from a warm pool (``Origin`` ``WarmPool``, ``Destination`` ``AutoScalingGroup``).

    {"version": "0", "id": "...", "detail-type": "EC2 Instance Launch Successful",
     "source": "aws.autoscaling", "account": "123456789012", "time": "2026-12-03T10:05:00Z",
     "region": "us-east-1", "resources": ["arn:aws:autoscaling:...:autoScalingGroupName/my-asg",
     "arn:aws:ec2:...:instance/i-1234567890abcdef0"],
     "detail": {"StatusCode": "InProgress", "AutoScalingGroupName": "my-asg",
                "ActivityId": "...", "RequestId": "...", "EC2InstanceId": "i-1234567890abcdef0",
                "Details": {"Availability Zone": "us-east-1b", "Subnet ID": "subnet-12345678"},
                "Description": "...", "Cause": "...", "StartTime": "...", "EndTime": "...",
                "StatusMessage": "", "Origin": "WarmPool", "Destination": "AutoScalingGroup"}}

The envelope and detail as the Auto Scaling event reference's "Successful scaling events" show
them (docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-event-reference.html);
``Origin`` and ``Destination``, each ``EC2``, ``AutoScalingGroup`` or ``WarmPool``: the user guide's
"Warm pool example events and patterns" (warm-pools-eventbridge-events.html) has rules for
warm-pool events filter on these two ``detail`` fields, and the AWS CDK's generated pattern for this
detail-type (aws_cdk.mixins_preview.aws_autoscaling.events.EC2InstanceLaunchSuccessful) lists them.

An instance scaled in to a Running warm pool was cordoned, tainted and drained by the terminate
lifecycle action (its Destination was ``WarmPool``); it comes back without a stop and start, so no
EC2 ``running`` state change undoes that: this event does.
Any other launch (``Origin`` ``EC2``, or into the pool) is a valid event that needs nothing.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.events.parsing import INSTANCE_ID, parse_eventbridge

SOURCE = "aws.autoscaling"
DETAIL_TYPE = "EC2 Instance Launch Successful"
WARM_POOL = "WarmPool"
GROUP = "AutoScalingGroup"
_PLACE = r"^[A-Za-z0-9]{1,64}$"


class LaunchDetail(BaseModel):
    instance_id: str = Field(alias="EC2InstanceId", pattern=INSTANCE_ID)
    group: str = Field(alias="AutoScalingGroupName", pattern=r"^[\x20-\x7e]{1,255}$")
    origin: str = Field(default="", alias="Origin", pattern=_PLACE)
    destination: str = Field(default="", alias="Destination", pattern=_PLACE)


class LaunchEvent(EventBridgeModel):
    detail: LaunchDetail


def normalise(event: Any) -> InterruptionEvent:
    parsed = parse_eventbridge(event, LaunchEvent, SOURCE, DETAIL_TYPE)
    detail = parsed.detail
    from_pool = (detail.origin, detail.destination) == (WARM_POOL, GROUP)
    return InterruptionEvent(
        kind=EventKind.WARM_POOL_RETURN if from_pool else EventKind.INSTANCE_LAUNCHED,
        event_id=parsed.id,
        instance_id=detail.instance_id,
        region=parsed.region,
        account=parsed.account,
        time=parsed.time,
        detail=f"{detail.origin or 'unknown'}-to-{detail.destination or 'unknown'}",
    )
