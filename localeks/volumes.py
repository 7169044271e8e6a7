"""Scenes with CSI volumes: a pod on a node using a PersistentVolume of the EBS CSI driver, which
kube-controller-manager's attach/detach controller attaches (a VolumeAttachment naming the node)
and the local external-attacher (localeks/attacher.py) marks attached; once the pod is gone the
controller deletes the attachment and the attacher lets it go."""

from __future__ import annotations

import time
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localeks.attacher import DRIVER
from localeks.scenes import Scenes

# what a kubelet sets on its node (enableControllerAttachDetach, true by default): the attach/detach
# controller attaches only for nodes that carry it
CONTROLLER_MANAGED = "volumes.kubernetes.io/controller-managed-attach-detach"


def pod_with_volume(scenes: Scenes, namespace: str, name: str, node_name: str, grace: int = 5) -> str:
    """A pod on ``node_name`` using a new EBS CSI PersistentVolume (through its bound claim);
    returns the PersistentVolume's name once its VolumeAttachment says attached."""
    storage = client.StorageV1Api(scenes.api)
    try:  # attachRequired is the default; the object says it as the EBS driver's does
        storage.create_csi_driver({"metadata": {"name": DRIVER}, "spec": {"attachRequired": True}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    scenes.core.patch_node(node_name, {"metadata": {"annotations": {CONTROLLER_MANAGED: "true"}}})
    pv = f"pv-{uuid.uuid4().hex[:10]}"
    scenes.core.create_persistent_volume(
        {
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "csi": {"driver": DRIVER, "volumeHandle": f"vol-{uuid.uuid4().hex[:17]}", "fsType": "ext4"},
                "claimRef": {"namespace": namespace, "name": name},
            },
        }
    )
    scenes.core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    _wait(lambda: scenes.core.read_namespaced_persistent_volume_claim(name, namespace).status.phase == "Bound")
    scenes.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": {"volume": name}},
            "spec": {
                "nodeName": node_name,
                "terminationGracePeriodSeconds": grace,
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": name}}],
            },
        },
    )
    _wait(lambda: any(a["attached"] for a in attachments(scenes, node_name) if a["pv"] == pv))
    return pv


def attachments(scenes: Scenes, node_name: str) -> list[dict[str, Any]]:
    """The node's VolumeAttachments as the test sees them."""
    found = client.StorageV1Api(scenes.api).list_volume_attachment().items
    return [
        {"pv": a.spec.source.persistent_volume_name, "attached": bool(a.status and a.status.attached)}
        for a in found
        if a.spec.node_name == node_name
    ]


def _wait(done: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the volume's claim or attachment did not come")
        time.sleep(0.2)
