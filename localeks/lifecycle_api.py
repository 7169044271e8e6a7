"""The Auto Scaling API calls that localeks/autoscaling.py adds to moto or changes:
CompleteLifecycleAction, RecordLifecycleActionHeartbeat, PutLifecycleHook's checks, the record of
every lifecycle call, and the errors they answer (listed, with what is verified of their wording,
in localeks/autoscaling.py's docstring)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localeks.lifecycle_actions import Action, _actions, _calls, _end, _iso, current_time, global_timeout


def _errors() -> tuple[type[Exception], type[Exception]]:
    from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError

    class ScalingActivityInProgress(AutoscalingClientError):
        code = "ScalingActivityInProgress"
        message = "The operation can't be performed because there are scaling activities in progress."

    return ValidationError, ScalingActivityInProgress


def _group(backend: Any, name: str | None) -> Any:
    validation, _ = _errors()
    group = backend.autoscaling_groups.get(name)
    if group is None:
        raise validation(f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")
    return group


def _active(backend: Any, group: str, hook: str, token: str | None, instance_id: str | None) -> Action:
    validation, _ = _errors()
    if not token and not instance_id:
        raise validation("Either LifecycleActionToken or InstanceId must be specified")
    for action in _actions:
        if action.state != "pending" or action.backend is not backend or action.group != group:
            continue
        if action.hook != hook:
            continue
        if token and action.token == token and (not instance_id or action.instance_id == instance_id):
            return action
        if not token and action.instance_id == instance_id:
            return action
    if token:
        raise validation(f"No active Lifecycle Action found with token {token}")
    raise validation(f"No active Lifecycle Action found with instance ID {instance_id}")


def _addressed(response: Any) -> Action:
    """The pending action a CompleteLifecycleAction or RecordLifecycleActionHeartbeat names."""
    backend = response.autoscaling_backend
    group = _group(backend, response._get_param("AutoScalingGroupName"))
    return _active(
        backend,
        group.name,
        response._get_param("LifecycleHookName"),
        response._get_param("LifecycleActionToken"),
        response._get_param("InstanceId"),
    )


def complete_lifecycle_action(response: Any) -> Any:
    from moto.core.responses import EmptyResult

    result = response._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        _group(response.autoscaling_backend, response._get_param("AutoScalingGroupName"))  # an unknown group first
        raise _errors()[0]("LifecycleActionResult must be CONTINUE or ABANDON")
    action = _addressed(response)
    _end(action, "completed", result, "CompleteLifecycleAction")
    return EmptyResult()


def record_lifecycle_action_heartbeat(response: Any) -> Any:
    from moto.core.responses import EmptyResult

    action = _addressed(response)
    now = current_time()
    action.heartbeats.append(now)
    action.heartbeat_deadline = min(now + action.heartbeat_timeout, action.global_deadline)
    return EmptyResult()


def _recorded(operation: str, method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    from moto.core.exceptions import ServiceException

    def call(response: Any) -> Any:
        entry: dict[str, Any] = {
            "operation": operation,
            "time": _iso(current_time()),
            "account": response.current_account,
            "region": response.region,
            "parameters": response._get_params(),
        }
        try:
            answer = method(response)
        except ServiceException as error:
            entry.update(outcome="error", error_code=error.code, error_message=error.message)
            _calls.append(entry)
            raise
        entry.update(outcome="ok", error_code=None, error_message=None)
        _calls.append(entry)
        return answer

    call.__name__ = method.__name__
    return call


def _put_lifecycle_hook(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def put(response: Any) -> Any:
        timeout = response._get_int_param("HeartbeatTimeout")
        if timeout is not None and not 30 <= timeout <= 7200:
            raise _errors()[0]("HeartbeatTimeout must be between 30 and 7200 seconds")
        answer = original(response)
        backend = response.autoscaling_backend
        group, name = response._get_param("AutoScalingGroupName"), response._get_param("LifecycleHookName")
        hook = backend.lifecycle_hooks.get(f"{group}_{name}")
        if hook is not None:
            hook.notification_metadata = response._get_param("NotificationMetadata")
            hook.notification_target_arn = response._get_param("NotificationTargetARN")
            hook.role_arn = response._get_param("RoleARN")
            hook.global_timeout = global_timeout(int(hook.heartbeat_timeout))
        return answer

    return put
