"""The drain lease on a node: which durable execution drains it, for which logical drain, and until
when its holder has promised to be back.

Every execution of a long drain claims the node's lease before it drains and at every round. The
claim names the execution, its event, the logical drain (``InterruptionEvent.drain_key``: a Health
event's ARN, whatever its status updates and reschedules, else the event id) and the version of
that drain (the event's time). The holder writes when it will renew at the latest (``until``): after
a round, the next round; before a days-long wait, the wait's end. So:

- a second delivery of the same event (a replay, a duplicate) finds the lease held until the
  holder's own promise runs out, however long the holder waits, and leaves the drain to it;
- a newer version of the same drain (a Health status update, a rescheduled window) takes the lease
  over, and the older execution, at its next round, finds it superseded and stops;
- a lease whose holder missed its own promise by ``STALE_MARGIN_SECONDS`` belongs to an execution
  that is really gone (a durable execution that waits is resumed by Lambda at the wait's end): it
  is taken over, e.g. by a replay from the dead-letter queue.

The lease is an annotation written with the same guarded patch as the cordon (resourceVersion), so
two executions racing for it cannot both win.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from serverless_nth.kube.client import KubeApi
from serverless_nth.kube.cordon import guarded_patch
from serverless_nth.kube.nodes import DRAIN_LEASE_ANNOTATION, Node

# How late a holder may be past its own promise before it counts as gone: Lambda resumes a waiting
# execution at the wait's end, but a re-invocation can be throttled or retried for minutes.
STALE_MARGIN_SECONDS = 600.0
# A lease written before claims carried their promise ("<holder> <renewed>") lasted this long.
_LEGACY_STALE_SECONDS = 240.0


@dataclass(frozen=True)
class LeaseClaim:
    execution: str  # the durable execution's ARN
    event_id: str
    key: str  # the logical drain (InterruptionEvent.drain_key)
    version: str  # the event's time (ISO 8601, UTC): a newer version of the same key supersedes

    def describe(self) -> str:
        return f"{self.execution} {self.event_id}"


class Refusal(StrEnum):
    """Why the lease was not taken."""

    DUPLICATE = "duplicate"  # the same event, held by another live execution
    SUPERSEDED = "superseded"  # a newer version of the same drain holds it
    HELD_BY_ANOTHER_EVENT = "held-by-another-event"  # another drain, held by a live execution


@dataclass(frozen=True)
class Held:
    """The lease is another's: why, and whose."""

    why: Refusal
    holder: str


def hold_lease(api: KubeApi, node: Node, claim: LeaseClaim, now: float, until: float) -> Held | None:
    """Takes or renews the lease on ``node`` (as just read; a 409 re-reads it) for ``claim``, the
    holder promising to renew it by ``until``; returns who holds it instead (nothing written), or
    None when ``claim`` holds it now."""

    def change(current: Node) -> tuple[Held | None, dict[str, Any] | None]:
        held = refusal(current.annotations.get(DRAIN_LEASE_ANNOTATION, ""), claim, now)
        if held is not None:
            return held, None
        value = json.dumps(
            {**claim.__dict__, "renewed": round(now), "until": round(max(until, now))}, separators=(",", ":")
        )
        return None, {
            "metadata": {"resourceVersion": current.resource_version, "annotations": {DRAIN_LEASE_ANNOTATION: value}}
        }

    return guarded_patch(api, node, change, False, "lease")[0]


def release_lease(api: KubeApi, node: Node, claim: LeaseClaim) -> None:
    """Removes the lease from ``node`` (as just read) if ``claim``'s execution still holds it."""

    def change(current: Node) -> tuple[None, dict[str, Any] | None]:
        recorded = _parse(current.annotations.get(DRAIN_LEASE_ANNOTATION, ""))
        if recorded is None or recorded[0].execution != claim.execution:
            return None, None
        return None, {
            "metadata": {"resourceVersion": current.resource_version, "annotations": {DRAIN_LEASE_ANNOTATION: None}}
        }

    guarded_patch(api, node, change, False, "lease")


def refusal(value: str, claim: LeaseClaim, now: float) -> Held | None:
    """Whether the lease recorded as ``value`` refuses ``claim`` at ``now`` (pure)."""
    recorded = _parse(value)
    if recorded is None:
        return None
    other, until = recorded
    if other.execution == claim.execution:
        return None  # ours: renewed
    if other.key == claim.key and other.version != claim.version:
        # one logical drain, two versions (a Health status update, a reschedule): the newer drives
        if other.version > claim.version:
            return Held(Refusal.SUPERSEDED, other.describe())
        return None
    if now >= until + STALE_MARGIN_SECONDS:
        return None  # its holder missed its own promise: gone
    same_event = other.key == claim.key or other.event_id == claim.event_id
    return Held(Refusal.DUPLICATE if same_event else Refusal.HELD_BY_ANOTHER_EVENT, other.describe())


def _parse(value: str) -> tuple[LeaseClaim, float] | None:
    """The claim recorded and the time its holder promised to renew by; None when there is none, or
    none that anybody could renew (a value that cannot be read)."""
    if not value:
        return None
    try:
        recorded = json.loads(value)
        fields = {k: str(recorded[k]) for k in ("execution", "event_id", "key", "version")}
        return LeaseClaim(**fields), float(recorded["until"])
    except (ValueError, TypeError, KeyError):
        pass
    # the format before claims carried their promise: "<execution> <event id> <renewed>"
    holder, _, renewed = value.rpartition(" ")
    execution, _, event_id = holder.rpartition(" ")
    try:
        until = float(renewed) + _LEGACY_STALE_SECONDS - STALE_MARGIN_SECONDS
    except ValueError:
        return None
    return LeaseClaim(execution or holder, event_id, event_id, ""), until
