"""The cordon, the taints and the load-balancer label, in one patch guarded by the node's
resourceVersion (idempotent and safe under concurrent events), and their undoing when the instance
comes back: exactly what this product added, recorded on the node, and nothing else."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from serverless_nth.kube.client import Conflict, KubeApi, path
from serverless_nth.kube.nodes import (
    CORDON_ATTEMPT_ANNOTATION,
    CORDONED_BY_ANNOTATION,
    LB_EXCLUDED_BY_ANNOTATION,
    NEWEST_EVENT_TIME_ANNOTATION,
    OUT_OF_SERVICE_BY_ANNOTATION,
    Node,
)
from serverless_nth.policy import OUT_OF_SERVICE_KEY, TAINT_PREFIX, Taint

# aws-load-balancer-controller and the cloud provider deregister a node carrying this label
LB_EXCLUSION_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
_MAX_CONFLICT_RETRIES = 5
R = TypeVar("R")


@dataclass(frozen=True)
class CordonResult:
    node: Node  # as the API server returned it (unchanged when there was nothing to do)
    cordoned: bool  # this call set spec.unschedulable
    taints_added: tuple[str, ...]
    lb_excluded: bool = False  # this call set the load-balancer label


def cordon_and_taint(
    api: KubeApi,
    node: Node,
    taints: tuple[Taint, ...],
    exclude_from_lb: bool,
    dry_run: bool,
    event_id: str,
    event_time: datetime.datetime,
) -> CordonResult:
    """Sets spec.unschedulable, adds the taints that are missing and, with ``exclude_from_lb``, the
    load-balancer label, in one guarded PATCH, so no taint is lost and nothing is written twice.
    What this call adds is recorded in annotations with ``event_id``, and ``event_time`` when it is
    the newest event to hold the node (a redelivery writes nothing)."""

    attempt = uuid.uuid4().hex
    sent: list[CordonResult] = []  # what the last PATCH of this call does, once sent

    def change(current: Node) -> tuple[CordonResult, dict[str, Any] | None]:
        if sent and current.annotations.get(CORDON_ATTEMPT_ANNOTATION) == attempt:
            return dataclasses.replace(sent[-1], node=current), None  # served, its answer lost
        missing = [t for t in taints if not current.has_taint(t)]
        add_label = exclude_from_lb and LB_EXCLUSION_LABEL not in current.labels
        newer = current.newest_event_time is None or event_time > current.newest_event_time
        if not missing and current.unschedulable and not add_label and not newer:
            return CordonResult(current, cordoned=False, taints_added=()), None
        done = CordonResult(current, not current.unschedulable, tuple(t.key for t in missing), add_label)
        sent.append(done)
        patch = _cordon_patch(current, missing, add_label, event_id, event_time if newer else None)
        patch["metadata"].setdefault("annotations", {})[CORDON_ATTEMPT_ANNOTATION] = attempt
        return done, patch

    result, updated = guarded_patch(api, node, change, dry_run, "cordon")
    return result if updated is None else dataclasses.replace(result, node=updated)


def guarded_patch(
    api: KubeApi,
    node: Node,
    change: Callable[[Node], tuple[R, dict[str, Any] | None]],
    dry_run: bool,
    stage: str,
) -> tuple[R, Node | None]:
    """One merge-patch carrying the node's resourceVersion: a concurrent change (another event, a
    controller) makes it 409, and the node is re-read and ``change`` applied to it again. ``change``
    says what the patch does and returns None when nothing is to be written. In a dry run the PATCH
    goes with ``dryRun=All``: the API server validates and admits it, and stores nothing. Returns
    ``change``'s result and the node as the server returned it (None when nothing was written)."""
    current = node
    for _ in range(_MAX_CONFLICT_RETRIES):
        result, patch = change(current)
        if patch is None:
            return result, None
        try:
            updated = api.request(
                "PATCH",
                path("api", "v1", "nodes", current.name),
                body=patch,
                content_type="application/merge-patch+json",
                query={"dryRun": "All"} if dry_run else None,
                stage=stage,
            )
        except Conflict:
            current = Node.from_api(api.request("GET", path("api", "v1", "nodes", current.name), stage=stage))
            continue
        return result, Node.from_api(updated)
    raise Conflict(409, f"node {node.name} kept changing during {_MAX_CONFLICT_RETRIES} attempts", stage=stage)


def _cordon_patch(
    current: Node, missing: list[Taint], add_label: bool, event_id: str, newest: datetime.datetime | None
) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    taints = [
        *current.taints,
        *({"key": t.key, "value": t.value, "effect": t.effect.value, "timeAdded": now} for t in missing),
    ]
    annotations: dict[str, str] = {}
    if not current.unschedulable:
        annotations[CORDONED_BY_ANNOTATION] = event_id
    if any(t.key == OUT_OF_SERVICE_KEY for t in missing):
        annotations[OUT_OF_SERVICE_BY_ANNOTATION] = event_id
    if newest is not None:
        annotations[NEWEST_EVENT_TIME_ANNOTATION] = newest.astimezone(datetime.UTC).isoformat()
    metadata: dict[str, Any] = {"resourceVersion": current.resource_version}
    if add_label:
        metadata["labels"] = {LB_EXCLUSION_LABEL: "true"}
        annotations[LB_EXCLUDED_BY_ANNOTATION] = event_id
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": {"unschedulable": True, "taints": taints}}


@dataclass(frozen=True)
class RestoreResult:
    undone: tuple[str, ...]  # what was undone ("records": only our annotations were left)
    # set when nothing was undone because an event at least as new as the `running` one holds the
    # node (a late or replayed `running` event): that event's time, as recorded
    held_since: str = ""


def restore(api: KubeApi, node: Node, dry_run: bool, event_time: datetime.datetime) -> RestoreResult:
    """Undoes what this product added to ``node`` and nothing else: its own taints, the
    out-of-service taint and the load-balancer label when it added them, and the cordon only when
    it set it (an operator's cordon stays). Only if the `running` event (``event_time``) is newer
    than every event that marked the node: a drain begun after it keeps the node (the drain of a
    long-drain event marks the node in its cordon step, before it takes the lease). One guarded
    PATCH, or none when nothing is ours or a newer event holds the node."""

    def change(current: Node) -> tuple[RestoreResult, dict[str, Any] | None]:
        newest = current.newest_event_time
        if newest is not None and newest >= event_time:
            return RestoreResult((), held_since=current.annotations[NEWEST_EVENT_TIME_ANNOTATION]), None
        undone, patch = _restore_patch(current)
        return RestoreResult(undone), patch

    return guarded_patch(api, node, change, dry_run, "restore")[0]


_RECORDS = (
    CORDON_ATTEMPT_ANNOTATION,
    CORDONED_BY_ANNOTATION,
    LB_EXCLUDED_BY_ANNOTATION,
    OUT_OF_SERVICE_BY_ANNOTATION,
    NEWEST_EVENT_TIME_ANNOTATION,
)


def _restore_patch(node: Node) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    ours = {OUT_OF_SERVICE_KEY} if OUT_OF_SERVICE_BY_ANNOTATION in node.annotations else set()
    is_ours = [t.get("key", "").startswith(f"{TAINT_PREFIX}/") or t.get("key") in ours for t in node.taints]
    undone = [str(t.get("key")) for t, mine in zip(node.taints, is_ours, strict=True) if mine]
    metadata: dict[str, Any] = {"resourceVersion": node.resource_version}
    spec: dict[str, Any] = {}
    if undone:
        spec["taints"] = [t for t, mine in zip(node.taints, is_ours, strict=True) if not mine] or None
    if node.cordoned_by and node.unschedulable:
        spec["unschedulable"] = None
        undone.append("cordon")
    if LB_EXCLUDED_BY_ANNOTATION in node.annotations and LB_EXCLUSION_LABEL in node.labels:
        metadata["labels"] = {LB_EXCLUSION_LABEL: None}
        undone.append(LB_EXCLUSION_LABEL)
    recorded = [k for k in _RECORDS if k in node.annotations]
    if recorded:
        metadata["annotations"] = dict.fromkeys(recorded)
    if not undone and not recorded:
        return (), None
    return tuple(undone) or ("records",), {"metadata": metadata, "spec": spec}
