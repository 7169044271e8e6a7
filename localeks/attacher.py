"""Local: a stand-in for the CSI external-attacher (kubernetes-csi/external-attacher) of one
driver, run by the supervisor beside kube-controller-manager's attach/detach controller.

In EKS the attach/detach controller creates a VolumeAttachment (storage.k8s.io/v1) when a pod on
a node uses a CSI volume whose driver requires attaching, and deletes it once the pod is gone; the
driver's external-attacher sidecar does the attaching (EBS AttachVolume) and detaching. That
sidecar puts its finalizer ``external-attacher/<driver with dots as dashes>`` on the attachment,
sets ``status.attached`` once attached, and removes the finalizer after the volume is detached, so
a deleted VolumeAttachment stays, deleting, until the volume is off the instance. This does the
same for ``DRIVER``, with no volume behind it and a fixed detach time. Not modelled: the
finalizer the sidecar also puts on the PersistentVolume, attach errors, CSINode, multi-attach.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

DRIVER = "ebs.csi.aws.com"
FINALIZER = "external-attacher/" + DRIVER.replace(".", "-")
POLL_SECONDS = 0.2


class ExternalAttacher:
    """Attaches what the attach/detach controller asks for, and lets a deleted attachment go
    ``detach_seconds`` after its deletion began."""

    def __init__(self, kubeconfig: Path, detach_seconds: float) -> None:
        from kubernetes import client, config

        self.storage = client.StorageV1Api(config.new_client_from_config(str(kubeconfig)))
        self.detach_seconds = detach_seconds
        self._deleting_since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="external-attacher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                for attachment in self.storage.list_volume_attachment().items:
                    if attachment.spec.attacher == DRIVER:
                        self._reconcile(attachment)
            except Exception as exc:  # an API server that restarts or answers 409: the next pass
                print(f"external-attacher (local): {type(exc).__name__}: {exc}", flush=True)

    def _reconcile(self, attachment: Any) -> None:
        meta = attachment.metadata
        finalizers = list(meta.finalizers or [])
        if meta.deletion_timestamp is not None:
            since = self._deleting_since.setdefault(meta.name, time.monotonic())
            if FINALIZER in finalizers and time.monotonic() - since >= self.detach_seconds:
                self._finalizers(meta, [f for f in finalizers if f != FINALIZER])
                self._deleting_since.pop(meta.name, None)
            return
        if FINALIZER not in finalizers:
            self._finalizers(meta, [*finalizers, FINALIZER])
        elif not (attachment.status and attachment.status.attached):
            status = {"attached": True, "attachmentMetadata": {"devicePath": "/dev/xvdba"}}
            self.storage.patch_volume_attachment_status(meta.name, {"status": status})

    def _finalizers(self, meta: Any, finalizers: list[str]) -> None:
        """A JSON patch, guarded by the resourceVersion: a strategic merge patch would merge the
        list (ObjectMeta.finalizers has patchStrategy merge) and never remove one."""
        self.storage.patch_volume_attachment(
            meta.name,
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
                {"op": "replace" if meta.finalizers else "add", "path": "/metadata/finalizers", "value": finalizers},
            ],
        )
