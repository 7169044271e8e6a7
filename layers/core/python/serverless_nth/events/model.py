"""The one event the rest of the core sees, whatever EventBridge delivered."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from enum import StrEnum


class MalformedEvent(ValueError):
    """The payload is not the event this function handles; retrying cannot fix it."""


class EventKind(StrEnum):
    SPOT_INTERRUPTION = "spot-interruption"
    CAPACITY_RESERVATION_INTERRUPTION = "capacity-reservation-interruption"
    REBALANCE_RECOMMENDATION = "rebalance-recommendation"
    INSTANCE_STOPPING = "instance-stopping"
    INSTANCE_SHUTTING_DOWN = "instance-shutting-down"
    INSTANCE_STOPPED = "instance-stopped"
    INSTANCE_TERMINATED = "instance-terminated"
    INSTANCE_PENDING = "instance-pending"
    INSTANCE_RUNNING = "instance-running"


@dataclass(frozen=True)
class InterruptionEvent:
    kind: EventKind
    event_id: str
    instance_id: str
    region: str
    account: str
    time: datetime.datetime  # when EC2 emitted the event (timezone-aware)
    detail: str = ""  # the instance-action or state, for logs
    # when the event says the instance ends, if it says (capacity reservation interruptions)
    ends_at: datetime.datetime | None = None
