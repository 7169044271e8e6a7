"""Local extension of moto (labelled local): an Auto Scaling group's instance lifecycle policy,
which moto 5.2.5 neither stores nor applies.

botocore's autoscaling model (CreateAutoScalingGroup, UpdateAutoScalingGroup, the AutoScalingGroup
shape) documents ``InstanceLifecyclePolicy.RetentionTriggers.TerminateHookAbandon``: "Specifies the
action when a termination lifecycle hook is abandoned due to failure, timeout, or explicit
abandonment (calling CompleteLifecycleAction). Set to ``retain`` to move instances to a retained
state. Set to ``terminate`` for default termination behavior. Retained instances don't count toward
desired capacity and remain until you call ``TerminateInstanceInAutoScalingGroup``." The
LifecycleState enum has ``Terminating:Retained``.

So this module:
- keeps the policy given to CreateAutoScalingGroup / UpdateAutoScalingGroup on the group (a value
  other than retain or terminate: ValidationError, inferred wording) and answers it in
  DescribeAutoScalingGroups (moto's model-driven serializer reads the attribute);
- when a terminate action of a group that retains ends with ABANDON (CompleteLifecycleAction, or
  its timeout's DefaultResult), leaves the instance running in ``Terminating:Retained`` instead of
  terminating it (``retained`` below, called by lifecycle_actions._end). It is no longer InService,
  so moto's capacity arithmetic does not count it.
Not modelled: TerminateInstanceInAutoScalingGroup of a retained instance (moto's own, no hooks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RETAINED = "Terminating:Retained"
_PARAM = "InstanceLifecyclePolicy"


def retains(group: Any) -> bool:
    """Whether the group keeps an instance whose terminate action was abandoned."""
    policy = getattr(group, "instance_lifecycle_policy", None) or {}
    return bool(policy.get("RetentionTriggers", {}).get("TerminateHookAbandon") == "retain")


def retained(backend: Any, group_name: str, instance_id: str) -> bool:
    """Moves the instance to Terminating:Retained when its group retains; False when it does not
    (the caller terminates it)."""
    group = backend.autoscaling_groups.get(group_name)
    if group is None or not retains(group):
        return False
    for state in group.instance_states:
        if state.instance.id == instance_id:
            state.lifecycle_state = RETAINED
    return True


def _keeping_policy(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call(response: Any) -> Any:
        from moto.autoscaling.exceptions import ValidationError

        policy = response._get_param(_PARAM)
        action = ((policy or {}).get("RetentionTriggers") or {}).get("TerminateHookAbandon")
        if action is not None and action not in ("retain", "terminate"):
            raise ValidationError(f"TerminateHookAbandon must be retain or terminate, got {action}")
        answer = original(response)
        if policy is not None:
            group = response.autoscaling_backend.autoscaling_groups.get(response._get_param("AutoScalingGroupName"))
            if group is not None:
                group.instance_lifecycle_policy = policy
        return answer

    call.__name__ = original.__name__
    return call


def install() -> None:
    """Patches moto's responses (called by localeks.autoscaling.install, under its lock, once)."""
    from moto.autoscaling.responses import AutoScalingResponse

    for name in ("create_auto_scaling_group", "update_auto_scaling_group"):
        setattr(AutoScalingResponse, name, _keeping_policy(getattr(AutoScalingResponse, name)))
