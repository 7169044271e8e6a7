"""The AWS Health scheduled change's workflow (a durable execution, ``durable.py``), over the steps
of ``long_drain.LongDrains``: every instance named cordoned at once, a durable wait until the lead
time before the window, then each node drained in rounds until it is empty or the window starts
(``long_drain_each.drain_each``, shared with the Capacity Block expiry). After a reboot
maintenance, each drained node is handed back once its machine has booted again and runs."""

from __future__ import annotations

import datetime
from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import Duration

from serverless_nth.errors import TemporaryError
from serverless_nth.events import instance_status, scheduled_change
from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.instance import Presence
from serverless_nth.long_drain import LongDrains
from serverless_nth.long_drain_each import drain_each
from serverless_nth.observability import logger
from serverless_nth.policy import event_taint
from serverless_nth.report import Outcome

# After a reboot maintenance's window starts, the node is checked this often (doubling from the
# first, so that an 8-hour watch is about 35 checks, not hundreds of history entries) ...
FIRST_BOOT_CHECK = 60
LAST_BOOT_CHECK = 900
# ... until this long after the window's start; then it stays cordoned, for the `closed` event or
# the instance's `running` state change to hand back
BOOT_WATCH = datetime.timedelta(hours=8)


def scheduled(drains: LongDrains, raw: Any, ctx: DurableContext, account: str | None) -> dict[str, Any]:
    """Every instance of the event cordoned at once, then drained from its lead time until the
    window starts. One instance's failure neither stops nor repeats the others; the execution
    fails at the end if any did, so that the event is kept for a replay (which is safe)."""
    # a Health event, or a scheduled event the instance-status backstop found (the starter's ROUTES)
    ours = isinstance(raw, dict) and raw.get("source") == instance_status.SOURCE
    parse = instance_status.normalise if ours else scheduled_change.normalise
    change, kind = parse(raw), EventKind.SCHEDULED_CHANGE
    events = change.events
    if change.left_out:
        drains.step(ctx, "left-out", kind, drains.tell_left_out, change.left_out)
    if not events:
        return {"outcomes": {}, "rounds": 0}
    if drains.step(ctx, "event-time", kind, drains.too_old, events[0], kind.value):
        return {"outcomes": {e.instance_id: Outcome.MALFORMED for e in events}, "rounds": 0}
    boots: dict[str, tuple[str, str]] = {}
    outcomes, rounds = drain_each(drains, ctx, kind, events, account, ScheduledChangeFailed, boots)
    if reboots(events[0]):
        hand_back(drains, ctx, {e.instance_id: e for e in events}, boots, outcomes)
    return {"outcomes": outcomes, "rounds": rounds}


def reboots(event: InterruptionEvent) -> bool:
    """A reboot maintenance (``AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED``,
    ``AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED``), or a reboot event the instance-status backstop
    found (no Health event: its code): the instance comes back, the node with it."""
    if event.health is None:
        return event.detail in instance_status.REBOOT_CODES
    return not event.health.closed and "REBOOT" in event.health.type_code


def hand_back(
    drains: LongDrains,
    ctx: DurableContext,
    events: dict[str, InterruptionEvent],
    boots: dict[str, tuple[str, str]],
    outcomes: dict[str, str],
) -> None:
    """From the window's start, each drained node is checked (``booted-<id>-<n>``, then a growing
    wait) until it has a new boot id and is Ready, and EC2 says its instance runs: what this product
    added for the event is then undone (``handed-back``), as a return to running undoes it."""
    kind = EventKind.SCHEDULED_CHANGE
    watching = {i: boots[i] for i in boots if outcomes.get(i) in (Outcome.DRAINED, Outcome.DRAIN_INCOMPLETE)}
    starts = next(iter(events.values())).ends_at
    if not watching or starts is None:
        return
    wait = drains.step(ctx, "window", kind, drains.seconds_until, starts)
    if wait >= 1:
        ctx.wait(Duration.from_seconds(wait), name="until-window")
    for check, pause in enumerate(boot_check_pauses()):
        for instance_id, (node, boot_id) in list(watching.items()):
            found = drains.step(
                ctx, f"booted-{instance_id}-{check}", kind, _booted, drains, events[instance_id], node, boot_id
            )
            if found:
                outcomes[instance_id] = found
                del watching[instance_id]
        if not watching:
            break
        ctx.wait(Duration.from_seconds(pause), name=f"boot-check-{check}")
    if watching:
        logger.info(
            "no new boot seen: the nodes stay cordoned", extra={"nodes": sorted(n for n, _ in watching.values())}
        )


def boot_check_pauses() -> list[int]:
    """The pauses between a reboot's checks: doubling from FIRST_BOOT_CHECK to LAST_BOOT_CHECK until
    they cover BOOT_WATCH. A count fixed in advance, not a clock: the steps of an execution never
    depend on how fast its waits pass (a replay, or the local runner's skipped waits)."""
    pauses: list[int] = []
    pause = FIRST_BOOT_CHECK
    while sum(pauses) < BOOT_WATCH.total_seconds():
        pauses.append(pause)
        pause = min(2 * pause, LAST_BOOT_CHECK)
    return pauses


def _booted(drains: LongDrains, event: InterruptionEvent, node: str, boot_id: str) -> str:
    """``handed-back`` once the node booted again (not the boot id it had when cordoned), is Ready,
    and its instance runs; ``marks-removed`` when our taint already went; "" while it waits."""
    service = drains.service_for(event)
    found = service.get_node(node)
    if found is None or not boot_id:
        return Outcome.DRAINED if found is None else ""  # gone: nothing to hand back; no boot id: no proof
    if not found.has_taint_key(event_taint(event, drains.settings).key):
        return Outcome.MARKS_REMOVED
    if found.boot_id in ("", boot_id) or not found.ready:
        return ""
    instance = service.instances.describe(event.instance_id)
    if instance is None or instance.presence is not Presence.LIVE:
        return ""
    # the marks of this event and older ones (event times have whole seconds)
    service.restore_marks(event, found, event.time + datetime.timedelta(seconds=1))
    return Outcome.HANDED_BACK


class ScheduledChangeFailed(TemporaryError):
    """Some instances of a scheduled change could not be handled: the execution fails so that the
    event is kept (dead-letter queue) for a replay, which redoes nothing that was done."""
