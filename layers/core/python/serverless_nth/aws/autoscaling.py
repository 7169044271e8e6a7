"""Auto Scaling lifecycle actions: the hook's limits, heartbeats and the completion."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from serverless_nth.errors import PermanentError, TemporaryError
from serverless_nth.events.model import LifecycleHookRef

_THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable", "InternalFailure"}
# What Auto Scaling answers (ValidationError) for an action that is no longer pending: completed,
# abandoned, or expired with the hook's DefaultResult
_NO_ACTIVE_ACTION = "No active Lifecycle Action found"


class Completion(StrEnum):
    COMPLETED = "completed"  # the action waited and this call ended it
    ENDED = "ended"  # the action no longer waited when the call arrived
    # no longer waiting, and botocore had sent the call more than once: an earlier send may have
    # completed it and lost its answer (a CompleteLifecycleAction cannot be sent twice)
    ENDED_AFTER_RESEND = "ended-after-resend"


@dataclass(frozen=True)
class _Reply:
    body: dict[str, Any] | None  # None: the action (or the hook) is no longer there
    resent: bool = False  # botocore sent the request more than once (its retries)


@dataclass(frozen=True)
class HookLimits:
    heartbeat_seconds: int  # HeartbeatTimeout: the action expires this long after its last heartbeat
    global_seconds: int  # GlobalTimeout: the action ends this long after it began, heartbeats or not
    default_result: str  # what the group does when the action expires: CONTINUE or ABANDON


class LifecycleActions:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests_sent = 0

    def limits(self, ref: LifecycleHookRef) -> HookLimits | None:
        """The hook's timeouts, or None when the group has no such hook (any more)."""
        reply = self._call(
            "DescribeLifecycleHooks",
            self._client.describe_lifecycle_hooks,
            AutoScalingGroupName=ref.group,
            LifecycleHookNames=[ref.hook],
        )
        for hook in (reply.body or {}).get("LifecycleHooks", []):
            if hook.get("LifecycleHookName") == ref.hook:
                heartbeat = int(hook.get("HeartbeatTimeout", 3600))
                return HookLimits(
                    heartbeat_seconds=heartbeat,
                    global_seconds=int(hook.get("GlobalTimeout", min(100 * heartbeat, 172800))),
                    default_result=str(hook.get("DefaultResult", "ABANDON")),
                )
        return None

    def retains_abandoned(self, group: str) -> bool:
        """Whether the group keeps an instance whose terminate action is abandoned: its
        InstanceLifecyclePolicy's RetentionTriggers.TerminateHookAbandon is ``retain`` (botocore's
        model: "Set to retain to move instances to a retained state")."""
        reply = self._call(
            "DescribeAutoScalingGroups", self._client.describe_auto_scaling_groups, AutoScalingGroupNames=[group]
        )
        for found in (reply.body or {}).get("AutoScalingGroups", []):
            triggers = found.get("InstanceLifecyclePolicy", {}).get("RetentionTriggers", {})
            return bool(triggers.get("TerminateHookAbandon") == "retain")
        return False

    def heartbeat(self, ref: LifecycleHookRef, instance_id: str) -> bool:
        """Restarts the hook's heartbeat timeout; False when the action is no longer pending."""
        reply = self._on_action(
            "RecordLifecycleActionHeartbeat", self._client.record_lifecycle_action_heartbeat, ref, instance_id
        )
        return reply.body is not None

    def complete(self, ref: LifecycleHookRef, instance_id: str, result: str) -> Completion:
        """Tells the group to go on (CONTINUE) or to abandon the instance (ABANDON)."""
        reply = self._on_action(
            "CompleteLifecycleAction",
            self._client.complete_lifecycle_action,
            ref,
            instance_id,
            LifecycleActionResult=result,
        )
        if reply.body is not None:
            return Completion.COMPLETED
        return Completion.ENDED_AFTER_RESEND if reply.resent else Completion.ENDED

    def _on_action(self, name: str, method: Any, ref: LifecycleHookRef, instance_id: str, **extra: str) -> _Reply:
        """One call about the pending action."""
        return self._call(
            name,
            method,
            AutoScalingGroupName=ref.group,
            LifecycleHookName=ref.hook,
            LifecycleActionToken=ref.token,
            InstanceId=instance_id,
            **extra,
        )

    def _call(self, name: str, method: Any, **kwargs: Any) -> _Reply:
        self.requests_sent += 1
        try:
            return _Reply(method(**kwargs))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            if code == "ValidationError" and _NO_ACTIVE_ACTION in message:
                # botocore counts its own retries of this request (lost answers, 5xx) here
                return _Reply(None, resent=exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0)
            if code in _THROTTLED or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                raise TemporaryError(f"{name}: {code}", stage="lifecycle") from exc
            raise PermanentError(f"{name}: {code}: {message}", stage="lifecycle") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"{name}: {exc}", stage="lifecycle") from exc
