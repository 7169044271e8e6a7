"""Local extension of moto (labelled local): an Auto Scaling group's Running warm pool that reuses
instances on scale-in, as far as this product's warm-pool path needs it.

moto 5.2.5 stores PutWarmPool's configuration (MaxGroupPreparedCapacity, MinSize, PoolState,
InstanceReusePolicy) and answers it in DescribeWarmPool, but always with no Instances ("Does not
create/return any Instances currently"), and never uses the pool: a scale-in terminates. With this
module (installed by localeks.autoscaling.install):

- the terminate lifecycle action of a group whose warm pool has PoolState ``Running`` and
  InstanceReusePolicy ``ReuseOnScaleIn`` true carries ``Destination`` ``WarmPool`` in its event
  (the Auto Scaling event reference: "Events that are delivered when an instance moves to the wait
  state on scale in have WarmPool as the value for Destination");
- once the instance's terminate actions end with CONTINUE (CompleteLifecycleAction or a
  DefaultResult), the instance leaves the group for the pool instead of being terminated:
  ``Warmed:Pending``, then ``Warmed:Running``; the EC2 instance keeps running (no state change);
- DescribeWarmPool lists the pool's instances (InstanceId, InstanceType, AvailabilityZone,
  LifecycleState, HealthStatus, LaunchTemplate, ProtectedFromScaleIn);
- a scale-out (SetDesiredCapacity, UpdateAutoScalingGroup, a scaling policy) takes ``Warmed:Running``
  instances back first, oldest first (``Pending`` -> ``InService``), and records the "EC2 Instance
  Launch Successful" event Auto Scaling sends for each, with ``Origin`` ``WarmPool`` and
  ``Destination`` ``AutoScalingGroup`` (the user guide's warm-pool events page has rules filter
  warm-pool events on the two); moto launches the rest. Nothing delivers the event: tests read it from
  ``GET {AWS_ENDPOINT_URL}/moto-api/localeks/autoscaling/warm-pools`` (``launch_events`` and every
  lifecycle ``transitions``), or with ``warm_pool_record(endpoint_url)`` below.

Not modelled: Stopped and Hibernated pools (their instances stop, so the EC2 ``running`` state
change already hands the node back), launches that fill the pool (Origin EC2, Destination
WarmPool), launch lifecycle hooks, MinSize and MaxGroupPreparedCapacity, a scale-in without a
terminate hook (moto's own termination), and ABANDON of a terminate action bound for the pool
(terminated here, as without a pool: inferred). The launch event's Description and Cause wording is
inferred; its fields are the event reference's "EC2 Instance Launch Successful" example's.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

RUNNING_POOL = "Running"
WARMED = "Warmed:Running"
LAUNCH_DETAIL_TYPE = "EC2 Instance Launch Successful"
ROUTE = "/moto-api/localeks/autoscaling/warm-pools"
# (id of the backend, group name) -> the instances in its pool, oldest first
_pools: dict[tuple[int, str], list[Any]] = {}
_launch_events: list[dict[str, Any]] = []
_transitions: list[dict[str, Any]] = []


def reuses(group: Any) -> bool:
    """Whether a scale-in of ``group`` returns the instance to a Running warm pool."""
    pool = getattr(group, "warm_pool", None)
    policy = (pool.instance_reuse_policy or {}) if pool else {}
    return bool(pool and pool.pool_state == RUNNING_POOL and str(policy.get("ReuseOnScaleIn")).lower() == "true")


def _move(state: Any, to: str, at: float) -> None:
    _transitions.append({"instance_id": state.instance.id, "from": state.lifecycle_state, "to": to, "at": at})
    state.lifecycle_state = to


def warmed(backend: Any, group_name: str, instance_id: str, at: float) -> bool:
    """Moves the instance, whose terminate actions ended with CONTINUE, from its group to the
    group's Running warm pool; False when the group does not reuse instances (the caller
    terminates it)."""
    group = backend.autoscaling_groups.get(group_name)
    state = next((s for s in group.instance_states if s.instance.id == instance_id), None) if group else None
    if state is None or not reuses(group):
        return False
    group.instance_states = [s for s in group.instance_states if s is not state]
    _move(state, "Warmed:Pending", at)
    _move(state, WARMED, at)
    _pools.setdefault((id(backend), group_name), []).append(state)
    backend.update_attached_elbs(group_name)
    backend.update_attached_target_groups(group_name)
    return True


def _launch_event(group: Any, state: Any, at: float) -> dict[str, Any]:
    from localeks.lifecycle_actions import _iso

    instance = state.instance
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": LAUNCH_DETAIL_TYPE,
        "source": "aws.autoscaling",
        "account": group.account_id,
        "time": _iso(at, ms=False),
        "region": group.region,
        "resources": [group.arn, f"arn:aws:ec2:{group.region}:{group.account_id}:instance/{instance.id}"],
        "detail": {
            "Origin": "WarmPool",
            "Destination": "AutoScalingGroup",
            "StatusCode": "InProgress",
            "Description": f"Launching a new EC2 instance from warm pool: {instance.id}",
            "AutoScalingGroupName": group.name,
            "ActivityId": str(uuid.uuid4()),
            "Details": {"Availability Zone": state.availability_zone, "Subnet ID": instance.subnet_id or ""},
            "RequestId": str(uuid.uuid4()),
            "StatusMessage": "",
            "EndTime": _iso(at, ms=False),
            "EC2InstanceId": instance.id,
            "StartTime": _iso(at, ms=False),
            "Cause": f"At {_iso(at, ms=False)} the desired capacity of {group.name} was raised to "
            f"{group.desired_capacity}: an instance from the warm pool returns to service.",
        },
    }


def _set_desired_capacity(original: Callable[..., Any]) -> Callable[..., Any]:
    def scale(group: Any, new_capacity: int | None) -> Any:
        from localeks.lifecycle_actions import current_time

        desired = group.min_size if new_capacity is None else new_capacity
        pool = _pools.get((id(group.autoscaling_backend), group.name), [])
        missing = (desired or 0) - len(group.active_instances())
        if missing > 0 and pool:
            # from the pool first: set desired before, so that moto launches only the rest
            group.desired_capacity = desired
            at = current_time()
            for state in pool[:missing]:
                pool.remove(state)
                _move(state, "Pending", at)
                _move(state, "InService", at)
                group.instance_states.append(state)
                _launch_events.append(_launch_event(group, state, at))
        return original(group, new_capacity)

    return scale


def _instance(state: Any) -> dict[str, Any]:
    answer = {
        "InstanceId": state.instance.id,
        "InstanceType": state.instance_type,
        "AvailabilityZone": state.availability_zone,
        "LifecycleState": state.lifecycle_state,
        "HealthStatus": state.health_status,
        "ProtectedFromScaleIn": bool(state.protected_from_scale_in),
    }
    if state.launch_template:
        answer["LaunchTemplate"] = state.launch_template
    return answer


def _describe_warm_pool(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def describe(response: Any) -> Any:
        from moto.core.responses import ActionResult

        answer = original(response)
        backend = response.autoscaling_backend
        name = response._get_param("AutoScalingGroupName")
        pool = _pools.get((id(backend), name), [])
        if not pool:
            return answer
        configuration = backend.describe_warm_pool(group_name=name)
        return ActionResult({"WarmPoolConfiguration": configuration, "Instances": [_instance(s) for s in pool]})

    describe.__name__ = original.__name__
    return describe


def _route(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    body = {"launch_events": _launch_events, "transitions": _transitions}
    return 200, {"Content-Type": "application/json"}, json.dumps(body, default=str)


def install() -> None:
    """Patches moto (called by localeks.autoscaling.install, under its lock, once, after its own
    patches, so that a scale-out reaches the pool before the lifecycle extension's scale-in)."""
    from moto.autoscaling.models import FakeAutoScalingGroup
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.moto_api._internal import urls

    FakeAutoScalingGroup.set_desired_capacity = _set_desired_capacity(FakeAutoScalingGroup.set_desired_capacity)  # type: ignore[method-assign]
    AutoScalingResponse.describe_warm_pool = _describe_warm_pool(AutoScalingResponse.describe_warm_pool)  # type: ignore[method-assign]
    urls.url_paths["{0}" + ROUTE] = _route


def warm_pool_record(endpoint_url: str) -> dict[str, list[dict[str, Any]]]:
    """The launch events from warm pools and every lifecycle transition of the local pools."""
    with urllib.request.urlopen(f"{endpoint_url.rstrip('/')}{ROUTE}", timeout=10) as answer:
        record: dict[str, list[dict[str, Any]]] = json.load(answer)
    return record
