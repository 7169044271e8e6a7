"""Instance -> Node, and the cordon and taints, idempotent and safe under concurrent events."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from serverless_nth.instance import InstanceFacts
from serverless_nth.kube.client import Conflict, KubeApi, NotFound, path
from serverless_nth.policy import Taint

ZONE_LABEL = "topology.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
_MAX_CONFLICT_RETRIES = 5
# Set with the cordon, only when this product cordoned the node: which event did it. A retry whose
# first PATCH answer was lost finds its own event here; an operator's cordon carries none.
CORDONED_BY_ANNOTATION = "serverless-nth/cordoned-by"


@dataclass(frozen=True)
class Node:
    name: str
    uid: str
    resource_version: str
    provider_id: str
    unschedulable: bool
    taints: tuple[dict[str, Any], ...]
    internal_ips: tuple[str, ...] = ()
    cordoned_by: str = ""  # the event id in CORDONED_BY_ANNOTATION, when this product cordoned it

    @classmethod
    def from_api(cls, obj: dict[str, Any]) -> Node:
        spec = obj.get("spec", {})
        return cls(
            name=obj["metadata"]["name"],
            uid=obj["metadata"].get("uid", ""),
            resource_version=obj["metadata"].get("resourceVersion", ""),
            provider_id=spec.get("providerID", ""),
            unschedulable=bool(spec.get("unschedulable", False)),
            taints=tuple(spec.get("taints") or ()),
            cordoned_by=str((obj["metadata"].get("annotations") or {}).get(CORDONED_BY_ANNOTATION, "")),
            internal_ips=tuple(
                str(a.get("address", ""))
                for a in (obj.get("status") or {}).get("addresses") or ()
                if a.get("type") == "InternalIP"
            ),
        )

    def is_instance(self, instance: InstanceFacts) -> bool:
        """Proof that this node is the instance: its providerID, or, on a node that has none (not
        yet initialised, registered without the cloud provider), its InternalIP. A name alone
        proves nothing: private DNS names are unique only within a VPC."""
        if self.provider_id:
            return self.provider_id == instance.provider_id
        return bool(instance.private_ip) and instance.private_ip in self.internal_ips

    def has_taint(self, taint: Taint) -> bool:
        return any(t.get("key") == taint.key and t.get("effect") == taint.effect.value for t in self.taints)


@dataclass(frozen=True)
class CordonResult:
    node: Node
    cordoned: bool  # this call set spec.unschedulable
    taints_added: tuple[str, ...]


def find_node(api: KubeApi, instance: InstanceFacts) -> Node | None:
    """By name (the private DNS name: one GET), then by providerID among the nodes of the same zone
    and instance type (one narrow LIST). Never lists every node of the cluster."""
    if instance.private_dns_name:
        try:
            node = Node.from_api(
                api.request("GET", path("api", "v1", "nodes", instance.private_dns_name), stage="node-lookup")
            )
        except NotFound:
            node = None
        if node is not None and node.is_instance(instance):
            return node
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
            return None
        query = {**query, "continue": token}


def cordon_and_taint(api: KubeApi, node: Node, taints: tuple[Taint, ...], dry_run: bool, event_id: str) -> CordonResult:
    """Sets spec.unschedulable and adds the taints that are missing, in one PATCH guarded by the
    node's resourceVersion: a concurrent change (another event, a controller) makes it 409 and it
    is re-read and re-applied, so no taint is lost and nothing is written twice. A node this call
    cordons is annotated with ``event_id``. In a dry run the PATCH goes with ``dryRun=All``: the
    API server validates and admits it, and stores nothing."""
    current = node
    for _ in range(_MAX_CONFLICT_RETRIES):
        missing = [t for t in taints if not current.has_taint(t)]
        if not missing and current.unschedulable:
            return CordonResult(current, cordoned=False, taints_added=())
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        new_taints = [
            *current.taints,
            *({"key": t.key, "value": t.value, "effect": t.effect.value, "timeAdded": now} for t in missing),
        ]
        metadata: dict[str, Any] = {"resourceVersion": current.resource_version}
        if not current.unschedulable:
            metadata["annotations"] = {CORDONED_BY_ANNOTATION: event_id}
        patch = {"metadata": metadata, "spec": {"unschedulable": True, "taints": new_taints}}
        try:
            updated = api.request(
                "PATCH",
                path("api", "v1", "nodes", current.name),
                body=patch,
                content_type="application/merge-patch+json",
                query={"dryRun": "All"} if dry_run else None,
                stage="cordon",
            )
        except Conflict:
            current = Node.from_api(api.request("GET", path("api", "v1", "nodes", current.name), stage="cordon"))
            continue
        return CordonResult(
            Node.from_api(updated), cordoned=not current.unschedulable, taints_added=tuple(t.key for t in missing)
        )
    raise Conflict(409, f"node {node.name} kept changing during {_MAX_CONFLICT_RETRIES} attempts", stage="cordon")
