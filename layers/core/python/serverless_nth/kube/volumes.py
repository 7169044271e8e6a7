"""The node's VolumeAttachments (storage.k8s.io/v1): before the instance goes, wait (bounded) until
none names the node, as Karpenter's termination controller does before it terminates an instance
(pendingVolumeAttachments in pkg/controllers/node/termination/controller.go). An attachment goes
once the attach/detach controller saw the pods that used the volume gone and the CSI driver's
external-attacher detached it; an instance that terminates first leaves the next pod to use the
volume waiting for a forced detach (kube-controller-manager's maxWaitForUnmountDuration, 6 min).

The API server offers no field selector on ``spec.nodeName`` for VolumeAttachments, so each look
is one LIST of the cluster's attachments (paged), filtered here: it runs once at the end of a
long drain, never on an event's hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from serverless_nth.kube.client import KubeApi

ATTACHMENTS = "/apis/storage.k8s.io/v1/volumeattachments"
POLL_SECONDS = 1.0


def attached_volumes(api: KubeApi, node_name: str, give_up_at: float | None = None) -> list[str]:
    """What is still attached to the node: each attachment's PersistentVolume (or, for an inline
    volume, the attachment's own name), sorted."""
    query = {"limit": "500"}
    names: list[str] = []
    while True:
        page = api.request("GET", ATTACHMENTS, query=query, stage="volumes", give_up_at=give_up_at)
        names.extend(_name(item) for item in page.get("items", []) if _on(item, node_name))
        token = page.get("metadata", {}).get("continue")
        if not token:
            return sorted(names)
        query = {**query, "continue": token}


def wait_for_detach(api: KubeApi, node_name: str, until: float, clock: Callable[[], float] = time.time) -> list[str]:
    """Looks every POLL_SECONDS until nothing is attached to the node or ``until`` (time.time())
    has come; returns what is still attached then."""
    while True:
        attached = attached_volumes(api, node_name, give_up_at=until)
        left = until - clock()
        if not attached or left <= 0:
            return attached
        time.sleep(min(POLL_SECONDS, left))


def _on(item: dict[str, Any], node_name: str) -> bool:
    return bool((item.get("spec") or {}).get("nodeName") == node_name)


def _name(item: dict[str, Any]) -> str:
    source = (item.get("spec") or {}).get("source") or {}
    return str(source.get("persistentVolumeName") or item.get("metadata", {}).get("name", ""))
