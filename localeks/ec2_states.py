"""Local extension of moto (labelled local in the README): EC2 instances pass through the
transitional states real EC2 reports.

moto's StopInstances and TerminateInstances move an instance straight to ``stopped`` or
``terminated``. Real EC2 reports ``stopping`` or ``shutting-down`` first, for tens of seconds, and
the handlers decide from that state (a stopping instance is certainly going; a stopped one has dead
pods). Here an instance stays in the transitional state for ``seconds`` (the supervisor's
LOCALEKS_EC2_TRANSITION_SECONDS, 8 by default) and then reaches the final state, with the state
codes EC2 documents.

moto's StartInstances keeps the first LaunchTime; EC2's is "the time that the instance was last
launched" (boto3's EC2.Instance.launch_time), so a start here sets it to the time of the start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from localeks import describe_cache

# EC2's InstanceState codes
_CODES = {"stopping": 64, "stopped": 80, "shutting-down": 32, "terminated": 48}


def install(seconds: float) -> None:
    """Patches moto's Instance once, in this process (the supervisor that serves moto)."""
    from moto.ec2.models.instances import Instance

    if getattr(Instance, "_localeks_transitions", False):
        return
    Instance.stop = _passing_through(Instance.stop, "stopping", "stopped", seconds)  # type: ignore[method-assign]
    Instance.terminate = _passing_through(Instance.terminate, "shutting-down", "terminated", seconds)  # type: ignore[method-assign]
    Instance.start = _relaunching(Instance.start)  # type: ignore[method-assign]
    Instance._localeks_transitions = True  # type: ignore[attr-defined]


def _passing_through(
    original: Callable[[Any], Any], transitional: str, final: str, seconds: float
) -> Callable[[Any], Any]:
    def change(instance: Any) -> Any:
        previous = original(instance)  # moto's own work (NICs, fleets), ending in the final state
        describe_cache.changed()  # also when a timer of Auto Scaling's, not a request, ended it
        if previous.name in (transitional, final) or seconds <= 0:
            return previous
        _set(instance, transitional)
        timer = threading.Timer(seconds, _finish, (instance, transitional, final))
        timer.daemon = True
        timer.start()
        return previous

    return change


def _relaunching(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def start(instance: Any) -> Any:
        from moto.core.utils import utcnow

        previous = original(instance)
        if previous.name != "running":  # a start of a running instance launches nothing
            instance.launch_time = utcnow()
        return previous

    return start


def _finish(instance: Any, transitional: str, final: str) -> None:
    if instance._state.name == transitional:  # nothing (a start, a terminate) overtook it
        _set(instance, final)


def _set(instance: Any, name: str) -> None:
    instance._state.name = name
    instance._state.code = _CODES[name]
    describe_cache.changed()  # after the change: an answer rendered meanwhile is not kept
