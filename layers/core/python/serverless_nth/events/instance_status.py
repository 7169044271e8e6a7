"""What the instance-status backstop reads in ``DescribeInstanceStatus`` (an answer of the EC2 API,
not an EventBridge event), and the event it hands to the scheduled-change path for a scheduled
event that never came as an AWS Health event.

One item of ``InstanceStatuses`` (botocore's ec2 model, InstanceStatus):

    {"InstanceId": "i-0123456789abcdef0", "AvailabilityZone": "us-east-1a",
     "InstanceState": {"Code": 16, "Name": "running"},
     "Events": [{"InstanceEventId": "instance-event-0d59937288b749b32", "Code": "system-reboot",
                 "Description": "The instance is scheduled for a reboot",
                 "NotBefore": "2026-12-10T06:00:00Z", "NotAfter": "2026-12-10T08:00:00Z"}],
     "InstanceStatus": {"Status": "impaired", "Details": [{"Name": "reachability", "Status": "failed",
                                                             "ImpairedSince": "2026-12-03T10:00:00Z"}]},
     "SystemStatus": {"Status": "ok", "Details": [{"Name": "reachability", "Status": "passed"}]}}

What the model says and this module relies on:
- Event ``Description``: "After a scheduled event is completed, it can still be described for up to
  a week. If the event has been completed, this description starts with the following text:
  [Completed]." (The user guide's scheduled-events page adds ``[Canceled]`` for a cancelled one.)
  Neither is acted on.
- ``ImpairedSince``: "The time when a status check failed. For an instance that was launched and
  impaired, this is the time when the instance was launched." A check counts as impaired from then,
  as Karpenter's instancestatus provider counts a detail whose ``Status`` is ``failed``.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, Field

from serverless_nth.events.model import EventKind, InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import INSTANCE_ID, RFC3339, parse_eventbridge, rfc3339_time
from serverless_nth.events.scheduled_change import MAX_START_AHEAD, HealthChange

# The event the backstop hands to the long-drain starter (never sent on a bus: "aws." sources are
# AWS's own, so this one is the product's)
SOURCE = "serverless-nth.instance-status"
DETAIL_TYPE = "EC2 Instance Scheduled Event"
# DescribeInstanceStatus's event.code filter values (botocore: EventCode), all of which end or
# interrupt the instance's run
SCHEDULED_CODES = ("instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop")
# the codes after which the instance runs again on its own (the Health workflow hands the node back)
REBOOT_CODES = ("instance-reboot", "system-reboot")
_ENDED = ("[Completed]", "[Canceled]")
_EVENT_ID = r"^instance-event-[0-9a-f]{8,17}$"
_INSTANCE = re.compile(INSTANCE_ID.strip("^$"), re.ASCII)
_CHECKS = (("InstanceStatus", "instance-status"), ("SystemStatus", "system-status"))


@dataclass(frozen=True)
class ScheduledEvent:
    instance_id: str
    event_id: str  # InstanceEventId: stable for the event's life, so the drain's key
    code: str
    not_before: datetime.datetime


@dataclass(frozen=True)
class Impairment:
    instance_id: str
    check: str  # instance-status or system-status: the earliest failed one
    since: datetime.datetime  # its ImpairedSince


def _time(value: Any) -> datetime.datetime | None:
    """botocore parses timestamps into aware datetimes; anything else is not a time we act on."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC)
    return None


def scheduled_events(status: dict[str, Any]) -> list[ScheduledEvent]:
    """The instance's scheduled events still to come: of a code that ends its run, not completed or
    cancelled, with an id and a start. An odd entry is skipped, never a reason to drop the others."""
    instance_id = str(status.get("InstanceId", ""))
    if not _INSTANCE.fullmatch(instance_id):
        return []
    found = []
    for event in status.get("Events") or []:
        starts = _time(event.get("NotBefore"))
        event_id = str(event.get("InstanceEventId", ""))
        if (
            event.get("Code") in SCHEDULED_CODES
            and starts is not None
            and re.fullmatch(_EVENT_ID.strip("^$"), event_id)
            and not str(event.get("Description", "")).startswith(_ENDED)
        ):
            found.append(ScheduledEvent(instance_id, event_id, str(event["Code"]), starts))
    return found


def impairment(status: dict[str, Any]) -> Impairment | None:
    """The instance's earliest failed status check (instance or system) that says since when."""
    instance_id = str(status.get("InstanceId", ""))
    if not _INSTANCE.fullmatch(instance_id):
        return None
    failed = []
    for field, check in _CHECKS:
        for detail in (status.get(field) or {}).get("Details") or []:
            since = _time(detail.get("ImpairedSince"))
            if detail.get("Status") == "failed" and since is not None:
                failed.append(Impairment(instance_id, check, since))
    return min(failed, key=lambda i: i.since, default=None)


def impaired_event(found: Impairment, account: str, region: str) -> InterruptionEvent:
    """The impairment as the event the sequence handles. Its id and time come from ImpairedSince, so
    every run of the backstop while it lasts is the same event (redelivery changes nothing)."""
    return InterruptionEvent(
        kind=EventKind.INSTANCE_IMPAIRED,
        event_id=f"impaired-{found.instance_id}-{int(found.since.timestamp())}",
        instance_id=found.instance_id,
        region=region,
        account=account,
        time=found.since,
        detail=found.check,
    )


def payload(event: ScheduledEvent, account: str, region: str, now: datetime.datetime) -> dict[str, Any]:
    """The EventBridge-shaped event for the long-drain starter (events/instance-scheduled-event.json).
    Its id is the InstanceEventId, which names the durable execution: the same EC2 event never starts
    two drains."""
    return {
        "version": "0",
        "id": event.event_id,
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:ec2:{region}:{account}:instance/{event.instance_id}"],
        "detail": {
            "instance-id": event.instance_id,
            "instance-event-id": event.event_id,
            "code": event.code,
            "not-before": event.not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


class ScheduledEventDetail(BaseModel):
    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID)
    event_id: str = Field(alias="instance-event-id", pattern=_EVENT_ID)
    code: Literal["instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop"]
    not_before: str = Field(alias="not-before", pattern=RFC3339)


class ScheduledEventModel(EventBridgeModel):
    detail: ScheduledEventDetail


def normalise(event: Any) -> HealthChange:
    """The backstop's event as the scheduled-change workflow takes a Health event: one instance,
    its window starting at NotBefore, the drain keyed by the InstanceEventId (``drain_key``)."""
    parsed = parse_eventbridge(event, ScheduledEventModel, SOURCE, DETAIL_TYPE)
    detail = parsed.detail
    starts = rfc3339_time(detail.not_before, f"{DETAIL_TYPE}: not-before").astimezone(datetime.UTC)
    if starts > parsed.time + MAX_START_AHEAD:  # as for Health: no wait that long fits the execution
        raise MalformedEvent(f"invalid {DETAIL_TYPE}: not-before {starts.isoformat()} is too far ahead")
    change = InterruptionEvent(
        kind=EventKind.SCHEDULED_CHANGE,
        event_id=detail.event_id,
        instance_id=detail.instance_id,
        region=parsed.region,
        account=parsed.account,
        time=parsed.time,
        detail=detail.code,
        ends_at=starts,
    )
    return HealthChange([change], [])
