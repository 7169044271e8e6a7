"""Kubernetes Events on the node and on the pods it evicts, for `kubectl describe`.

Each Event's name is derived from the EventBridge event id and the object, so a redelivered event
finds its Event already there (409) and adds nothing.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from serverless_nth.kube.client import KubeApi, KubeApiError, path

REPORTING_CONTROLLER = "serverless-nth"


def record_event(
    api: KubeApi,
    regarding: dict[str, str],
    delivery_id: str,
    reason: str,
    note: str,
    warning: bool = False,
) -> bool:
    """Creates the Event about ``regarding`` (kind, name, uid, and namespace for namespaced
    objects); False when this delivery already recorded it. Never raises: an Event is worth less
    than the drain it describes."""
    namespace = regarding.get("namespace", "default")
    digest = hashlib.sha256(f"{delivery_id}/{regarding.get('uid', '')}/{reason}".encode()).hexdigest()[:16]
    body: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": f"{regarding['name']}.{digest}", "namespace": namespace},
        "eventTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": REPORTING_CONTROLLER,
        "action": reason,
        "reason": reason,
        "note": note[:1024],
        "type": "Warning" if warning else "Normal",
        "regarding": {"apiVersion": "v1", **regarding},
    }
    try:
        api.request(
            "POST", path("apis", "events.k8s.io", "v1", "namespaces", namespace, "events"), body=body, stage="event"
        )
    except KubeApiError:  # 409 AlreadyExists (a redelivery), or the API server is unwell
        return False
    return True


def node_ref(name: str, uid: str) -> dict[str, str]:
    return {"kind": "Node", "name": name, "uid": uid}


def pod_ref(namespace: str, name: str, uid: str) -> dict[str, str]:
    return {"kind": "Pod", "namespace": namespace, "name": name, "uid": uid}
