"""Instance -> Node: the lookup, with proof that the node is the instance."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from serverless_nth.instance import InstanceFacts
from serverless_nth.kube.client import KubeApi, NotFound, path
from serverless_nth.policy import Taint

ZONE_LABEL = "topology.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# What this product added to a node, each recorded with the event that added it, so that a node
# that comes back has exactly that undone (an operator's cordon or label carries none of these),
# and a retry whose first PATCH answer was lost finds its own event.
CORDONED_BY_ANNOTATION = "serverless-nth/cordoned-by"
LB_EXCLUDED_BY_ANNOTATION = "serverless-nth/lb-excluded-by"
OUT_OF_SERVICE_BY_ANNOTATION = "serverless-nth/out-of-service-by"
# The time of the newest event that cordoned, tainted or labelled the node. A `running` event undoes
# those marks only if it is newer: a late or replayed one must not undo a drain begun after it.
NEWEST_EVENT_TIME_ANNOTATION = "serverless-nth/newest-event-time"
# The cordon call that last wrote our marks (a nonce per call): a call whose PATCH was served but
# whose answer was lost finds its own nonce on the node it re-reads, and still tells what it did
# (NodesCordoned), where a concurrent duplicate delivery of the same event finds another's.
CORDON_ATTEMPT_ANNOTATION = "serverless-nth/cordon-attempt"
# which durable execution drains the node, and when it last said so (kube/lease.py)
DRAIN_LEASE_ANNOTATION = "serverless-nth/drain-lease"


@dataclass(frozen=True)
class Node:
    name: str
    uid: str
    resource_version: str
    provider_id: str
    unschedulable: bool
    taints: tuple[dict[str, Any], ...]
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    # the kubelet's status.nodeInfo.bootID: a new one after every boot of the machine
    boot_id: str = ""
    ready: bool = False  # the Ready condition is True

    @property
    def cordoned_by(self) -> str:
        """The event id in CORDONED_BY_ANNOTATION, when this product cordoned the node."""
        return self.annotations.get(CORDONED_BY_ANNOTATION, "")

    @property
    def newest_event_time(self) -> datetime.datetime | None:
        """NEWEST_EVENT_TIME_ANNOTATION; None on a node marked before the time was recorded (or
        never). A value that cannot be read counts as the newest possible: an undo must be proven
        safe, and no event overwrites what it cannot compare with."""
        recorded = self.annotations.get(NEWEST_EVENT_TIME_ANNOTATION)
        if recorded is None:
            return None
        try:
            newest = datetime.datetime.fromisoformat(recorded)
        except ValueError:
            newest = None
        if newest is None or newest.tzinfo is None:
            return datetime.datetime.max.replace(tzinfo=datetime.UTC)
        return newest

    @classmethod
    def from_api(cls, obj: dict[str, Any]) -> Node:
        spec, status = obj.get("spec", {}), obj.get("status") or {}
        return cls(
            name=obj["metadata"]["name"],
            uid=obj["metadata"].get("uid", ""),
            resource_version=obj["metadata"].get("resourceVersion", ""),
            provider_id=spec.get("providerID", ""),
            unschedulable=bool(spec.get("unschedulable", False)),
            taints=tuple(spec.get("taints") or ()),
            labels={str(k): str(v) for k, v in (obj["metadata"].get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (obj["metadata"].get("annotations") or {}).items()},
            boot_id=str(status.get("nodeInfo", {}).get("bootID", "")),
            ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()),
        )

    def is_instance(self, instance: InstanceFacts) -> bool:
        """Proof that this node is the instance: its providerID, which the cloud provider sets from
        the instance itself. A node without one proves nothing: its default name is the private DNS
        name, which is made of the private IP, and both repeat in other VPCs (so an InternalIP that
        matches adds nothing the name did not say)."""
        return bool(self.provider_id) and self.provider_id == instance.provider_id

    def has_taint_key(self, key: str) -> bool:
        return any(t.get("key") == key for t in self.taints)

    def has_taint(self, taint: Taint) -> bool:
        return any(t.get("key") == taint.key and t.get("effect") == taint.effect.value for t in self.taints)


@dataclass(frozen=True)
class UnprovenNode:
    """A node has the instance's name but no spec.providerID yet (not initialised by the cloud
    provider, or registered without it), and no node has the instance's providerID: it may be
    this instance or a namesake in another VPC, so it is left alone until its providerID is set."""

    name: str


def find_node(api: KubeApi, instance: InstanceFacts) -> Node | UnprovenNode | None:
    """By name (the private DNS name: one GET), then by providerID among the nodes of the same zone
    and instance type (one narrow LIST). Never lists every node of the cluster."""
    unproven: UnprovenNode | None = None
    if instance.private_dns_name:
        try:
            node = Node.from_api(
                api.request("GET", path("api", "v1", "nodes", instance.private_dns_name), stage="node-lookup")
            )
        except NotFound:
            node = None
        if node is not None and node.is_instance(instance):
            return node
        if node is not None and not node.provider_id:
            unproven = UnprovenNode(node.name)
    selector = ",".join(
        f"{label}={value}"
        for label, value in ((ZONE_LABEL, instance.availability_zone), (INSTANCE_TYPE_LABEL, instance.instance_type))
        if value
    )
    query = {"labelSelector": selector, "limit": "500"}
    while True:
        page = api.request("GET", "/api/v1/nodes", query=query, stage="node-lookup")
        for item in page.get("items", []):
            if item.get("spec", {}).get("providerID") == instance.provider_id:
                return Node.from_api(item)
        token = page.get("metadata", {}).get("continue")
        if not token:
            return unproven
        query = {**query, "continue": token}
