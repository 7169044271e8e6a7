"""The drain lease on a node: which execution drains it, renewed with every round.

A duplicate delivery of a long-drain event starts a second durable execution; it finds the lease
held and fresh, and leaves the drain, and the lifecycle action's completion, to the holder. A lease
not renewed for ``stale_after`` seconds belongs to an execution that died: it is taken over. The
lease is an annotation written with the same guarded patch as the cordon (resourceVersion), so two
executions racing for it cannot both win.
"""

from __future__ import annotations

from typing import Any

from serverless_nth.kube.client import KubeApi
from serverless_nth.kube.cordon import guarded_patch
from serverless_nth.kube.nodes import DRAIN_LEASE_ANNOTATION, Node


def hold_lease(api: KubeApi, node: Node, holder: str, now: float, stale_after: float) -> str | None:
    """Takes or renews the lease for ``holder`` on ``node`` (as just read; a 409 re-reads it);
    returns the other holder when its lease is fresh (nothing written), None when ``holder`` holds
    it now."""

    def change(current: Node) -> tuple[str | None, dict[str, Any] | None]:
        other, renewed = _parse(current.annotations.get(DRAIN_LEASE_ANNOTATION, ""))
        if other and other != holder and now - renewed < stale_after:
            return other, None
        value = f"{holder} {now:.0f}"
        return None, {
            "metadata": {"resourceVersion": current.resource_version, "annotations": {DRAIN_LEASE_ANNOTATION: value}}
        }

    return guarded_patch(api, node, change, False, "lease")[0]


def release_lease(api: KubeApi, node: Node, holder: str) -> None:
    """Removes the lease from ``node`` (as just read) if ``holder`` still holds it."""

    def change(current: Node) -> tuple[None, dict[str, Any] | None]:
        other, _ = _parse(current.annotations.get(DRAIN_LEASE_ANNOTATION, ""))
        if other != holder:
            return None, None
        return None, {
            "metadata": {"resourceVersion": current.resource_version, "annotations": {DRAIN_LEASE_ANNOTATION: None}}
        }

    guarded_patch(api, node, change, False, "lease")


def _parse(value: str) -> tuple[str, float]:
    holder, _, renewed = value.rpartition(" ")
    try:
        return holder, float(renewed)
    except ValueError:
        return "", 0.0
