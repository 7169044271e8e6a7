"""What EC2 says about an instance now: the facts the policy, the cluster check and the node lookup
share. A neutral module, so that neither adapter (``aws/``, ``kube/``) imports the other."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from enum import StrEnum

CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"
# The tags that name an instance's cluster, most authoritative first (docs/multi-cluster.md#routing):
# aws:eks:cluster-name, which EKS adds and no user can write ("May not begin with aws:"), then
# Karpenter's and Auto Mode's, then managed node groups'; kubernetes.io/cluster/<name> keys only when
# none of these is there
CLUSTER_NAME_TAGS = ("aws:eks:cluster-name", "eks:eks-cluster-name", "eks:cluster-name")


class Presence(StrEnum):
    """What an instance's EC2 state means for the pods of its node."""

    LIVE = "live"  # pending or running: its pods run; nothing may be forced on them
    GOING = "going"  # stopping or shutting-down: its end is certain and near
    GONE = "gone"  # stopped or terminated: its pods are dead


_PRESENCE = {
    "pending": Presence.LIVE,
    "running": Presence.LIVE,
    "stopping": Presence.GOING,
    "shutting-down": Presence.GOING,
    "stopped": Presence.GONE,
    "terminated": Presence.GONE,
}


def presence(state: str) -> Presence:
    """An unknown state counts as live: the safe reading, which forces nothing on any pod."""
    return _PRESENCE.get(state, Presence.LIVE)


@dataclass(frozen=True)
class InstanceFacts:
    instance_id: str
    private_dns_name: str
    availability_zone: str
    instance_type: str
    state: str  # EC2's State.Name now: pending, running, stopping, stopped, shutting-down, terminated
    lifecycle: str  # "spot", "scheduled", "capacity-block" or "on-demand"
    tags: dict[str, str] = field(default_factory=dict)
    # EC2's LaunchTime, "the time that the instance was last launched": a start after a stop
    # moves it, so an instance started again since an event is told apart from one that waited
    launched_at: datetime.datetime | None = None

    @property
    def provider_id(self) -> str:
        return f"aws:///{self.availability_zone}/{self.instance_id}"

    @property
    def presence(self) -> Presence:
        return presence(self.state)

    def restarted_since(self, moment: datetime.datetime) -> bool:
        """Launched (a start after a stop) after ``moment``: not the run that an event named."""
        return self.launched_at is not None and self.launched_at > moment

    def cluster_names(self) -> set[str]:
        """The EKS clusters that the instance's tags name (empty when the tags name none)."""
        names = {k[len(CLUSTER_TAG_PREFIX) :] for k in self.tags if k.startswith(CLUSTER_TAG_PREFIX)}
        names.update(v for k, v in self.tags.items() if k in CLUSTER_NAME_TAGS)
        return names

    def cluster_of(self) -> tuple[str | None, list[str]]:
        """The one cluster the tags name, read in CLUSTER_NAME_TAGS' order, and the names read: a
        name only when they agree (a launch template copied from another cluster can leave a stray
        tag); ``kubernetes.io/cluster/<name>`` keys (not ``shared``) only when no other tag names one."""
        named = list(dict.fromkeys(self.tags[k] for k in CLUSTER_NAME_TAGS if self.tags.get(k)))
        if not named:
            prefix = CLUSTER_TAG_PREFIX
            named = sorted(k[len(prefix) :] for k, v in self.tags.items() if k.startswith(prefix) and v != "shared")
            named = [name for name in named if name]
        return (named[0] if len(named) == 1 else None), named


@dataclass(frozen=True)
class Described:
    """EC2's answer about an instance, already read (None: EC2 does not know it)."""

    facts: InstanceFacts | None
