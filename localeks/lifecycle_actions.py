"""The model behind localeks/autoscaling.py (the local extension of moto's Auto Scaling, whose
docstring says what it does and how faithfully): the lifecycle actions, their events, their end
(CONTINUE, ABANDON, expiry) and what an ended instance goes through. State of the process that
serves moto; ``_lock`` guards it. The clock of deadlines is ``localeks.autoscaling._now`` (the
module the unit tests patch), read through ``current_time()``."""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localeks import lifecycle_retention, warm_pools

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
DETAIL_TYPE = "EC2 Instance-terminate Lifecycle Action"
MAX_GLOBAL_TIMEOUT = 172800  # 48 h

_lock = threading.RLock()
_actions: list[Action] = []
_calls: list[dict[str, Any]] = []
_clock: list[Callable[[], float]] = [time.time]


def use_clock(clock: Callable[[], float]) -> None:
    """Where ``current_time()`` reads the time (localeks/autoscaling.py hands it its own ``_now``)."""
    _clock[0] = clock


def current_time() -> float:
    """The clock of deadlines."""
    return _clock[0]()


def _iso(seconds: float | None, ms: bool = True) -> str | None:
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    text = moment.isoformat(timespec="milliseconds" if ms else "seconds")
    return text.replace("+00:00", "Z")


def global_timeout(heartbeat_timeout: int) -> int:
    """GlobalTimeout: 100 x HeartbeatTimeout or 48 hours, whichever is smaller."""
    return min(100 * heartbeat_timeout, MAX_GLOBAL_TIMEOUT)


@dataclass
class Action:
    token: str
    account: str
    region: str
    group: str
    hook: str
    instance_id: str
    default_result: str
    heartbeat_timeout: int
    global_timeout: int
    started: float
    heartbeat_deadline: float
    global_deadline: float
    event: dict[str, Any]
    transition: str = TERMINATING
    heartbeats: list[float] = field(default_factory=list)
    state: str = "pending"  # pending | completed | expired | cancelled
    result: str | None = None
    ended: float | None = None
    ended_by: str | None = None
    backend: Any = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "account": self.account,
            "region": self.region,
            "group": self.group,
            "hook": self.hook,
            "instance_id": self.instance_id,
            "transition": self.transition,
            "default_result": self.default_result,
            "heartbeat_timeout": self.heartbeat_timeout,
            "global_timeout": self.global_timeout,
            "started": _iso(self.started),
            "heartbeat_deadline": _iso(self.heartbeat_deadline),
            "global_deadline": _iso(self.global_deadline),
            "heartbeats": [_iso(t) for t in self.heartbeats],
            "state": self.state,
            "result": self.result,
            "ended": _iso(self.ended),
            "ended_by": self.ended_by,
            "event": self.event,
        }


# --- the lifecycle -----------------------------------------------------------------------------


def _terminate_hooks(backend: Any, group_name: str) -> list[Any]:
    return [
        hook
        for hook in backend.lifecycle_hooks.values()
        if hook.auto_scaling_group_name == group_name and hook.lifecycle_transition == TERMINATING
    ]


def _event(group: Any, hook: Any, instance_id: str, token: str, at: float) -> dict[str, Any]:
    detail = {
        "LifecycleActionToken": token,
        "AutoScalingGroupName": group.name,
        "LifecycleHookName": hook.name,
        "EC2InstanceId": instance_id,
        "LifecycleTransition": TERMINATING,
    }
    metadata = getattr(hook, "notification_metadata", None)
    if metadata:
        detail["NotificationMetadata"] = metadata
    # the user guide's example and events captured from AWS carry these for a plain scale-in; a
    # group that reuses instances returns them to its warm pool (localeks/warm_pools.py)
    detail.update(Origin="AutoScalingGroup", Destination="WarmPool" if warm_pools.reuses(group) else "EC2")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": "aws.autoscaling",
        "account": group.account_id,
        "time": _iso(at, ms=False),
        "region": group.region,
        "resources": [group.arn],
        "detail": detail,
    }


def _begin(group: Any, instance_state: Any, hooks: list[Any]) -> list[Action]:
    """Puts the instance in Terminating:Wait with one pending action per terminate hook."""
    instance_state.lifecycle_state = "Terminating:Wait"
    started = current_time()
    began = []
    for hook in hooks:
        token = str(uuid.uuid4())
        heartbeat = int(hook.heartbeat_timeout)
        overall = global_timeout(heartbeat)
        action = Action(
            token=token,
            account=group.account_id,
            region=group.region,
            group=group.name,
            hook=hook.name,
            instance_id=instance_state.instance.id,
            default_result=hook.default_result or "ABANDON",
            heartbeat_timeout=heartbeat,
            global_timeout=overall,
            started=started,
            heartbeat_deadline=started + min(heartbeat, overall),
            global_deadline=started + overall,
            event=_event(group, hook, instance_state.instance.id, token, started),
            backend=group.autoscaling_backend,
        )
        _actions.append(action)
        began.append(action)
    return began


def _pending(backend: Any, group: str, instance_id: str) -> list[Action]:
    return [
        a
        for a in _actions
        if a.state == "pending" and a.backend is backend and a.group == group and a.instance_id == instance_id
    ]


def _end(action: Action, state: str, result: str | None, by: str) -> None:
    action.state, action.result, action.ended, action.ended_by = state, result, current_time(), by
    others = _pending(action.backend, action.group, action.instance_id)
    if result == "ABANDON":  # "ABANDON stops any remaining actions, such as other lifecycle hooks"
        for other in others:
            other.state, other.ended, other.ended_by = "cancelled", action.ended, f"ABANDON of hook {action.hook}"
        others = []
    if not others:
        if result == "ABANDON" and lifecycle_retention.retained(action.backend, action.group, action.instance_id):
            return  # the group's instance lifecycle policy keeps the instance (local, see there)
        if result == "CONTINUE" and warm_pools.warmed(action.backend, action.group, action.instance_id, action.ended):
            return  # back to the group's warm pool, still running (local, see there)
        _proceed(action.backend, action.group, action.instance_id)


def _proceed(backend: Any, group_name: str, instance_id: str) -> None:
    """Terminating:Proceed -> the instance leaves the group and EC2 terminates it."""
    group = backend.autoscaling_groups.get(group_name)
    if group is not None:
        group.instance_states = [s for s in group.instance_states if s.instance.id != instance_id]
        backend.update_attached_elbs(group_name)
        backend.update_attached_target_groups(group_name)
    with contextlib.suppress(Exception):  # already gone from EC2: nothing left to terminate
        backend.ec2_backend.terminate_instances([instance_id])


def expire_due() -> None:
    """Ends every pending action whose HeartbeatTimeout or GlobalTimeout has passed."""
    with _lock:
        now = current_time()
        for action in list(_actions):
            if action.state != "pending":
                continue
            if now >= action.global_deadline:
                _end(action, "expired", action.default_result, "GlobalTimeout")
            elif now >= action.heartbeat_deadline:
                _end(action, "expired", action.default_result, "HeartbeatTimeout")


def _watch(resolution: float) -> None:
    while True:
        time.sleep(resolution)
        try:
            expire_due()
        except Exception:  # a timer that died would stop every later expiry
            logging.getLogger(__name__).exception("lifecycle action expiry failed")
