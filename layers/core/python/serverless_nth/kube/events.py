"""Kubernetes Events on the node, for `kubectl describe node`.

Each Event's name is derived from the EventBridge event id, so a redelivered event finds its
Event already there (409) and adds nothing.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from serverless_nth.kube.client import KubeApi, KubeApiError, path

REPORTING_CONTROLLER = "serverless-nth"


def record_node_event(
    api: KubeApi, node_name: str, node_uid: str, delivery_id: str, reason: str, note: str, warning: bool = False
) -> bool:
    """Creates the Event; False when this delivery already recorded it. Never raises: an Event is
    worth less than the drain it describes."""
    digest = hashlib.sha256(f"{delivery_id}/{reason}".encode()).hexdigest()[:16]
    body: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": f"{node_name}.{digest}", "namespace": "default"},
        "eventTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": REPORTING_CONTROLLER,
        "action": reason,
        "reason": reason,
        "note": note[:1024],
        "type": "Warning" if warning else "Normal",
        "regarding": {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid},
    }
    try:
        api.request(
            "POST", path("apis", "events.k8s.io", "v1", "namespaces", "default", "events"), body=body, stage="event"
        )
    except KubeApiError:  # 409 AlreadyExists (a redelivery), or the API server is unwell
        return False
    return True
