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
    # Auto Scaling terminate lifecycle action: the group waits for this product to say CONTINUE
    ASG_TERMINATING = "asg-terminating"
    # AWS Health scheduled change for EC2 (maintenance, retirement): the instance goes at a known start
    SCHEDULED_CHANGE = "scheduled-change"
    # EC2 Capacity Block expiration warning: the reservation's instances begin to terminate 10
    # minutes after it, and are gone by its end-date (one event per reservation)
    CAPACITY_BLOCK_EXPIRY = "capacity-block-expiry"
    # an instance whose EC2 status check has failed for Settings.impaired_seconds (the
    # instance-status backstop): maybe lost, maybe recovered by EC2; never ours to terminate
    INSTANCE_IMPAIRED = "instance-impaired"
    # an Auto Scaling launch into service from a warm pool: the instance never stopped, so what
    # the terminate lifecycle action that put it there did to its node is undone here
    WARM_POOL_RETURN = "warm-pool-return"
    # any other Auto Scaling launch: nothing to do
    INSTANCE_LAUNCHED = "instance-launched"


@dataclass(frozen=True)
class LifecycleHookRef:
    """What CompleteLifecycleAction and RecordLifecycleActionHeartbeat need, from the event."""

    group: str
    hook: str
    token: str


@dataclass(frozen=True)
class HealthRef:
    """What follows an AWS Health event through its life: Health sends the same ``event_arn`` again
    as ``status`` moves from ``upcoming`` to ``open`` to ``closed``, and when the window moves."""

    event_arn: str
    status: str  # upcoming, open or closed; "" when the event does not say (treated as open)
    type_code: str

    @property
    def closed(self) -> bool:
        return self.status == "closed"


@dataclass(frozen=True)
class InterruptionEvent:
    kind: EventKind
    event_id: str
    instance_id: str
    region: str
    account: str
    time: datetime.datetime  # when EC2 emitted the event (timezone-aware)
    detail: str = ""  # the instance-action or state, for logs
    # when the event says the instance ends, if it says (capacity reservation interruptions, the
    # start of a scheduled change's window, a Capacity Block's end-date)
    ends_at: datetime.datetime | None = None
    # the Auto Scaling lifecycle action to heartbeat and complete (asg-terminating only)
    lifecycle: LifecycleHookRef | None = None
    # the AWS Health event it comes from (scheduled-change only)
    health: HealthRef | None = None

    @property
    def drain_key(self) -> str:
        """What one logical drain is about: a Health event's ARN (every status update and reschedule
        of it is the same drain), else the event itself."""
        return self.health.event_arn if self.health and self.health.event_arn else self.event_id
