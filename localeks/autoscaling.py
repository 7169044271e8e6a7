"""Local extension of moto (labelled local in the README): Auto Scaling terminate lifecycle actions.

moto 5.2.5 stores lifecycle hooks (PutLifecycleHook, DescribeLifecycleHooks) but never uses them:
TerminateInstanceInAutoScalingGroup and a scale-in (SetDesiredCapacity, UpdateAutoScalingGroup)
terminate the EC2 instance at once, and CompleteLifecycleAction / RecordLifecycleActionHeartbeat
are not implemented (moto answers NotImplementedError, a 500). ``install()`` patches moto's classes in
this process (the supervisor that serves moto) so that:

- an instance of a group that has a hook with LifecycleTransition ``autoscaling:EC2_INSTANCE_TERMINATING``,
  when the group terminates it (TerminateInstanceInAutoScalingGroup, or a scale-in through
  SetDesiredCapacity / UpdateAutoScalingGroup / a scaling policy), goes to LifecycleState
  ``Terminating:Wait`` (DescribeAutoScalingInstances, DescribeAutoScalingGroups) with one pending
  lifecycle action per terminate hook, each with its own LifecycleActionToken (uuid4). The EC2
  instance keeps running. The EventBridge event Auto Scaling emits is recorded with the action;
  nothing delivers it (tests pass it to the function themselves). Its shape follows the user
  guide's scale-in example and events captured from AWS (an Ftdv Lambda's comment, 2021): the
  envelope with ``time`` to the second and ``resources`` [the group ARN], and ``detail`` with
  LifecycleActionToken, AutoScalingGroupName, LifecycleHookName, EC2InstanceId,
  LifecycleTransition, NotificationMetadata (only when the hook has it), ``Origin``
  ``AutoScalingGroup`` and ``Destination`` ``EC2`` (NTH's 2020 sample has neither of the last two;
  AWS added them with warm pools and says it sends them "if that information is available");
- CompleteLifecycleAction (CONTINUE or ABANDON) ends an action; when no action of the instance is
  left the instance is removed from the group and terminated through moto's EC2 (so it passes
  through ``shutting-down`` when localeks/ec2_states.py is installed). For a terminate hook both
  results terminate; ABANDON also ends the instance's other pending actions, as AWS documents
  ("ABANDON stops any remaining actions, such as other lifecycle hooks");
- RecordLifecycleActionHeartbeat restarts the HeartbeatTimeout clock, capped by the GlobalTimeout
  (min(100 x HeartbeatTimeout, 172800 s), counted from the action's start);
- an action whose HeartbeatTimeout (or GlobalTimeout) passes ends with the hook's DefaultResult
  (ABANDON when unset), checked before every Auto Scaling call and by a background thread every
  ``resolution`` seconds (0.2 s), so it happens with nobody calling;
- DeleteLifecycleHook completes the hook's pending terminate actions with CONTINUE first, as the
  DeleteLifecycleHook API reference says; DeleteAutoScalingGroup (moto deletes with instances)
  cancels the group's pending actions and terminates their instances;
- PutLifecycleHook keeps NotificationMetadata, NotificationTargetARN and RoleARN as given (moto drops
  the metadata and answers made-up ARNs), answers GlobalTimeout = min(100 x HeartbeatTimeout, 172800)
  (moto: always 172800) and rejects a HeartbeatTimeout outside 30..7200.

Every CompleteLifecycleAction, RecordLifecycleActionHeartbeat, PutLifecycleHook, DescribeLifecycleHooks,
DeleteLifecycleHook and TerminateInstanceInAutoScalingGroup call is recorded (operation, time,
parameters, ``ok`` or the error code and message), and every action (token, group, hook, instance,
start, deadlines, heartbeat times, state pending|completed|expired|cancelled, result, event). Tests
read them from local-only routes on the moto server (moto sends every ``/moto-api/...`` path to
its own API app, whose ``url_paths`` table this module extends before the app is built):

- ``GET  {AWS_ENDPOINT_URL}/moto-api/localeks/autoscaling/lifecycle-actions`` -> JSON list of actions
- ``GET  {AWS_ENDPOINT_URL}/moto-api/localeks/autoscaling/calls`` -> JSON list of calls
- ``POST {AWS_ENDPOINT_URL}/moto-api/localeks/autoscaling/reset`` -> forgets the calls and the ended
  actions (pending ones are live state and stay)

and the helpers ``actions(endpoint_url)``, ``calls(endpoint_url, operation=None)``,
``events(endpoint_url)`` and ``reset(endpoint_url)`` below.

Errors (HTTP 400 unless said). Verified means quoted from real AWS answers in public code and
issues (found with the `search` tool), inferred means chosen by us:

- ``ValidationError`` "No active Lifecycle Action found with instance ID i-..." -- verified (AWS CLI
  output quoted in giantswarm's scripts: "An error occurred (ValidationError) when calling the
  CompleteLifecycleAction operation: No active Lifecycle Action found with instance ID i-0f9f...").
- ``ValidationError`` "No active Lifecycle Action found with token <token>" -- verified as a message
  AWS returns (lifecycler matches it on RecordLifecycleActionHeartbeat of an expired action; NTH's
  tests and other clients match the common prefix). Returned for a finished, expired or unknown
  action, and (inferred) for a hook name the group does not have and for a token whose instance
  differs from a given InstanceId.
- ``ValidationError`` "AutoScalingGroup name not found - AutoScalingGroup '<name>' not found" for an
  unknown group -- inferred (the wording of moto's DeleteAutoScalingGroup; AWS words it
  "AutoScalingGroup name not found - ..." in other calls).
- ``ValidationError`` "LifecycleActionResult must be CONTINUE or ABANDON" for another result --
  inferred (botocore's model types the result as a free string, so the check is the server's).
- ``ValidationError`` "Either LifecycleActionToken or InstanceId must be specified" -- inferred.
- ``ValidationError`` "HeartbeatTimeout must be between 30 and 7200 seconds" (PutLifecycleHook) --
  inferred wording; the 30..7200 range is documented.
- ``ValidationError`` "Instance Id not found - No managed instance found for instance ID: i-..." for
  TerminateInstanceInAutoScalingGroup of an instance in no group (moto: a 500) -- the wording is the
  one many clients match and fake; some quote it without the colon, so the colon is not verified.
- ``ScalingActivityInProgress`` "The operation can't be performed because there are scaling activities
  in progress." for TerminateInstanceInAutoScalingGroup on an instance already terminating --
  inferred (the fault is in the operation's documented errors; its wire message is not verified).

Not faithful: the event is recorded, never put on an EventBridge bus; the scale-in victim is moto's
first unprotected InService instance, not AWS's termination policy; a replacement for a
TerminateInstanceInAutoScalingGroup without decrement is launched at once (moto's behaviour); the
multi-instance form of TerminateInstanceInAutoScalingGroup (InstanceIds) is moto's, without hooks,
and so is the scale-in of a group with a MixedInstancesPolicy that has overrides (moto's own
capacity arithmetic, no hooks); the instance in Terminating:Wait keeps moto's
``aws:autoscaling:groupName`` tag, as on AWS, but TerminateInstanceInAutoScalingGroup without hooks
still drops it (moto's detach);
an instance lifecycle policy's retention of an abandoned instance is modelled in
localeks/lifecycle_retention.py, and a Running warm pool that reuses instances on scale-in in
localeks/warm_pools.py; launch hooks (Pending:Wait) and SNS/SQS notification targets
(and their TEST_NOTIFICATION) are not modelled; an EC2 TerminateInstances of a waiting instance
leaves its action pending until it ends; a PutLifecycleHook on an existing hook replaces it
rather than updating only the given fields.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from localeks import lifecycle_actions, lifecycle_retention, warm_pools
from localeks.lifecycle_actions import (  # noqa: F401 (the names callers and tests use from here)
    DETAIL_TYPE,
    MAX_GLOBAL_TIMEOUT,
    TERMINATING,
    Action,
    _actions,
    _begin,
    _calls,
    _end,
    _iso,
    _lock,
    _pending,
    _proceed,
    _terminate_hooks,
    _watch,
    expire_due,
    global_timeout,
)
from localeks.lifecycle_api import (
    _errors,
    _put_lifecycle_hook,
    _recorded,
    complete_lifecycle_action,
    record_lifecycle_action_heartbeat,
)

ROUTE = "/moto-api/localeks/autoscaling"
RECORDED = (
    "CompleteLifecycleAction",
    "RecordLifecycleActionHeartbeat",
    "PutLifecycleHook",
    "DescribeLifecycleHooks",
    "DeleteLifecycleHook",
    "TerminateInstanceInAutoScalingGroup",
)
_installed = False


def _now() -> float:
    """The clock of deadlines (patched by unit tests)."""
    return time.time()


def _clock() -> float:
    return _now()  # looked up at each call, so that a patched ``_now`` is the model's clock too


lifecycle_actions.use_clock(_clock)


# --- moto's backend, patched ---------------------------------------------------------------------


def _terminate_instance(original: Callable[..., Any]) -> Callable[..., Any]:
    def terminate(backend: Any, instance_id: str, should_decrement: bool) -> Any:
        from moto.autoscaling.models import TerminateInstanceActivity

        state = next(
            (s for g in backend.autoscaling_groups.values() for s in g.instance_states if s.instance.id == instance_id),
            None,
        )
        if state is None:
            raise _errors()[0](f"Instance Id not found - No managed instance found for instance ID: {instance_id}")
        group = state.instance.autoscaling_group
        if state.lifecycle_state.startswith("Terminating"):
            raise _errors()[1]()
        hooks = _terminate_hooks(backend, group.name)
        if not hooks:
            return original(backend, instance_id, should_decrement)
        original_size = group.desired_capacity
        if should_decrement:
            group.desired_capacity = original_size - 1
        _begin(group, state, hooks)
        group.set_desired_capacity(group.desired_capacity)  # a replacement unless decremented
        return TerminateInstanceActivity(state.instance, original_size)

    return terminate


def _set_desired_capacity(original: Callable[..., Any]) -> Callable[..., Any]:
    def scale(group: Any, new_capacity: int | None) -> Any:
        backend = group.autoscaling_backend
        mixed = group.mixed_instances_policy and group.mixed_instances_policy.get("LaunchTemplate", {}).get("Overrides")
        hooks = [] if mixed or getattr(group, "_localeks_deleting", False) else _terminate_hooks(backend, group.name)
        if not hooks:
            return original(group, new_capacity)
        desired = group.min_size if new_capacity is None else new_capacity
        excess = len(group.active_instances()) - (desired or 0)
        if excess <= 0:
            return original(group, new_capacity)
        # scale-in: the victims wait for their hooks instead of moto's immediate termination
        group.desired_capacity = desired
        victims = [
            s for s in group.instance_states if s.lifecycle_state == "InService" and not s.protected_from_scale_in
        ]
        for state in victims[:excess]:
            _begin(group, state, hooks)
        if group.name in backend.autoscaling_groups:
            backend.update_attached_elbs(group.name)
            backend.update_attached_target_groups(group.name)
        return None

    return scale


def _delete_group(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete(backend: Any, group_name: str) -> Any:
        group = backend.autoscaling_groups.get(group_name)
        if group is None:
            return original(backend, group_name)
        for action in [a for a in _actions if a.state == "pending" and a.backend is backend and a.group == group_name]:
            action.state, action.ended, action.ended_by = "cancelled", _now(), "DeleteAutoScalingGroup"
            _proceed(backend, group_name, action.instance_id)
        group._localeks_deleting = True
        try:
            return original(backend, group_name)
        finally:
            group._localeks_deleting = False

    return delete


def _delete_hook(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete(backend: Any, as_name: str, name: str) -> Any:
        # "If there are any outstanding lifecycle actions, they are completed first (ABANDON for
        # launching instances, CONTINUE for terminating instances)."
        for action in [a for a in _actions if a.state == "pending" and a.backend is backend]:
            if action.group == as_name and action.hook == name and action.state == "pending":
                _end(action, "completed", "CONTINUE", "DeleteLifecycleHook")
        return original(backend, as_name, name)

    return delete


def _locked_call_action(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call_action(response: Any) -> Any:
        with _lock:
            expire_due()
            return original(response)

    return call_action


# --- the local routes ----------------------------------------------------------------------------


def _json(status: int, body: Any) -> tuple[int, dict[str, str], str]:
    return status, {"Content-Type": "application/json"}, json.dumps(body, default=str)


def _route_actions(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    with _lock:  # no expiry check here: what tests read shows what the background timer did
        return _json(200, [a.as_dict() for a in _actions])


def _route_calls(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    with _lock:
        return _json(200, list(_calls))


def _route_reset(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    if request.method != "POST":
        return _json(405, {"error": "POST to reset"})
    with _lock:
        _calls.clear()
        _actions[:] = [a for a in _actions if a.state == "pending"]
        return _json(200, {"status": "ok"})


def install(resolution: float = 0.2) -> None:
    """Patches moto's Auto Scaling once, in this process, and adds the local routes; call it before
    the moto server answers its first ``/moto-api`` request."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup
        from moto.autoscaling.responses import AutoScalingResponse
        from moto.core.utils import camelcase_to_underscores
        from moto.moto_api._internal import urls

        AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action  # type: ignore[attr-defined]
        AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat  # type: ignore[attr-defined]
        AutoScalingResponse.put_lifecycle_hook = _put_lifecycle_hook(AutoScalingResponse.put_lifecycle_hook)  # type: ignore[method-assign,assignment]
        for operation in RECORDED:
            method = camelcase_to_underscores(operation)
            setattr(AutoScalingResponse, method, _recorded(operation, getattr(AutoScalingResponse, method)))
        AutoScalingResponse.call_action = _locked_call_action(AutoScalingResponse.call_action)  # type: ignore[method-assign]
        AutoScalingBackend.terminate_instance = _terminate_instance(AutoScalingBackend.terminate_instance)  # type: ignore[method-assign]
        AutoScalingBackend.delete_auto_scaling_group = _delete_group(AutoScalingBackend.delete_auto_scaling_group)  # type: ignore[method-assign]
        AutoScalingBackend.delete_lifecycle_hook = _delete_hook(AutoScalingBackend.delete_lifecycle_hook)  # type: ignore[method-assign]
        FakeAutoScalingGroup.set_desired_capacity = _set_desired_capacity(FakeAutoScalingGroup.set_desired_capacity)  # type: ignore[method-assign]
        lifecycle_retention.install()
        warm_pools.install()

        urls.url_paths["{0}" + ROUTE + "/lifecycle-actions"] = _route_actions
        urls.url_paths["{0}" + ROUTE + "/calls"] = _route_calls
        urls.url_paths["{0}" + ROUTE + "/reset"] = _route_reset

        threading.Thread(target=_watch, args=(resolution,), name="localeks-lifecycle-expiry", daemon=True).start()
        _installed = True


# --- client helpers for tests ----------------------------------------------------------------------


def _get(endpoint_url: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{endpoint_url.rstrip('/')}{ROUTE}/{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def actions(endpoint_url: str) -> list[dict[str, Any]]:
    """Every lifecycle action the local moto server recorded, oldest first."""
    return _get(endpoint_url, "lifecycle-actions")


def calls(endpoint_url: str, operation: str | None = None) -> list[dict[str, Any]]:
    """The recorded lifecycle calls, oldest first, optionally of one operation."""
    return [c for c in _get(endpoint_url, "calls") if operation is None or c["operation"] == operation]


def events(endpoint_url: str) -> list[dict[str, Any]]:
    """The EventBridge events of the recorded actions, in the order Auto Scaling would emit them."""
    return [a["event"] for a in actions(endpoint_url)]


def reset(endpoint_url: str) -> None:
    """Forgets the recorded calls and the ended actions."""
    _get(endpoint_url, "reset", method="POST")
