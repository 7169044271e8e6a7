"""The picture of the cluster is looked at, not only produced: the snapshot it is drawn from is the
cluster's state (read back from the local EKS), the drawing draws that data and nothing else (each
box, pod mark, badge and taint is found by its gid), and the PNG holds it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import matplotlib.colors as mcolors
import pytest

from localeks import clusterview
from localeks.cluster import REPO
from localeks.scenes import Scenes

SPOT_TAINT = {"key": "serverless-nth/spot-interruption", "value": "terminate", "effect": "NoSchedule"}
OUT_OF_SERVICE = {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}


def pod_body(name: str, node: str, owner_kind: str | None = None, emptydir: bool = False) -> dict[str, Any]:
    """A pod bound to ``node``. Its owner need not exist: no garbage collector runs in the local
    EKS, and the replicaset and daemonset controllers leave pods of unknown owners alone."""
    metadata: dict[str, Any] = {"name": name, "labels": {"picture": name}}
    if owner_kind:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner_kind, "name": name, "uid": str(uuid.uuid4()), "controller": True}
        ]
    spec: dict[str, Any] = {
        "nodeName": node,
        "terminationGracePeriodSeconds": 600,  # stays terminating while the test looks
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
    }
    if emptydir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    return {"metadata": metadata, "spec": spec}


@pytest.fixture
def two_nodes(scenes: Scenes) -> Any:
    """A node group Spot node with a pod of each kind, and an empty On-Demand Karpenter node."""
    group = scenes.worker_node(spot=True, labels={"serverless-nth/rebalance": "drain"})
    karpenter = scenes.karpenter_node(nodepool="picture", spot=False)
    ns = scenes.namespace("picture")
    node = group.node_name
    for body in (
        pod_body("web", node, "ReplicaSet"),
        pod_body("agent", node, "DaemonSet"),
        pod_body("cache", node, "ReplicaSet", emptydir=True),
        pod_body("debug", node),
    ):
        scenes.core.create_namespaced_pod(ns, body)
    mirror = scenes.mirror_pod(ns, node)
    scenes.wait_running(ns, ["web", "agent", "cache", "debug", mirror])  # kwok runs them; pending ones are drawn pale
    yield group.node_name, karpenter.node_name, ns, mirror
    scenes.core.delete_namespace(ns)


def test_the_picture_draws_the_cluster_state(scenes: Scenes, two_nodes: Any, tmp_path: Path) -> None:
    group, karpenter, ns, mirror = two_nodes
    before = clusterview.snapshot(scenes.core, [group, karpenter])

    # what the cluster holds, read back: labels, pods and their kinds, no cordon, no taint
    g, k = before["nodes"]
    assert (g["name"], g["capacity_type"], g["nodegroup"], g["nodepool"]) == (group, "SPOT", "workers", None)
    assert g["policy_labels"] == {"serverless-nth/rebalance": "drain"}
    assert (k["name"], k["capacity_type"], k["nodepool"], k["nodegroup"]) == (karpenter, "on-demand", "picture", None)
    assert {(p["namespace"], p["name"]): p["kind"] for p in g["pods"]} == {
        (ns, "web"): "deployment",
        (ns, "agent"): "daemonset",
        (ns, "cache"): "emptydir",
        (ns, "debug"): "bare",
        (ns, mirror): "mirror",
    }
    assert k["pods"] == []
    for node in (g, k):
        assert not node["unschedulable"]
        assert node["taints"] == []
        assert not node["out_of_service"]

    # what a handler does: cordon and taint one node, mark the other out of service; a pod goes
    scenes.core.patch_node(group, {"spec": {"unschedulable": True, "taints": [SPOT_TAINT]}})
    scenes.core.patch_node(karpenter, {"spec": {"unschedulable": True, "taints": [OUT_OF_SERVICE]}})
    scenes.core.delete_namespaced_pod("debug", ns)
    after = clusterview.snapshot(scenes.core, [group, karpenter])
    g, k = after["nodes"]
    assert g["unschedulable"]
    assert g["taints"] == [SPOT_TAINT]
    assert not g["out_of_service"]
    assert k["unschedulable"]
    assert k["out_of_service"]
    assert k["taints"] == [OUT_OF_SERVICE]
    assert {p["name"]: p["terminating"] for p in g["pods"]}["debug"] is True

    # the drawing draws that data
    fig = clusterview.figure(before, after)
    gids = {a.get_gid(): a for ax in fig.axes for a in (*ax.patches, *ax.texts) if a.get_gid()}
    for panel, snap in (("before", before), ("after", after)):
        for node in snap["nodes"]:
            name = node["name"]
            assert f"node:{panel}:{name}" in gids
            marks = {g.split(":", 2)[2]: a for g, a in gids.items() if g.startswith(f"pod:{panel}:")}
            for pod in node["pods"]:
                mark = marks[f"{pod['namespace']}/{pod['name']}"]
                colour = clusterview.KINDS[pod["kind"]][1]
                assert mcolors.same_color(mark.get_edgecolor()[:3], mcolors.to_rgb(colour))
                face = "white" if pod["terminating"] else colour
                assert mcolors.same_color(mark.get_facecolor()[:3], mcolors.to_rgb(face))
                assert mark.get_alpha() == (1.0 if pod["phase"] == "Running" or pod["terminating"] else 0.45)
            assert (f"cordoned:{panel}:{name}" in gids) == node["unschedulable"]
            assert (f"out-of-service:{panel}:{name}" in gids) == node["out_of_service"]
            assert {g.split(":", 3)[3] for g in gids if g.startswith(f"taint:{panel}:{name}:")} == set(
                clusterview.taint_lines(node)
            )
    pod_marks = [g for g in gids if g.startswith("pod:")]
    assert len(pod_marks) == sum(len(n["pods"]) for s in (before, after) for n in s["nodes"])
    assert clusterview.taint_lines(after["nodes"][0]) == ["serverless-nth/spot-interruption=terminate:NoSchedule"]
    import matplotlib.pyplot as plt

    plt.close(fig)

    # the PNG (and its data beside it) holds it: every kind's colour, the cordon's, out-of-service's
    png = clusterview.write(before, after, tmp_path / "cluster.png")
    assert png.stat().st_size > 30_000
    assert png.with_suffix(".json").exists()
    import matplotlib.image as mimage

    pixels = {tuple(p) for p in (mimage.imread(png)[:, :, :3] * 255).round().astype(int).reshape(-1, 3)}
    for colour in [clusterview.KINDS[k][1] for k in ("deployment", "daemonset", "mirror", "emptydir", "bare")] + [
        clusterview.CORDONED_COLOUR,
        clusterview.OUT_OF_SERVICE_COLOUR,
    ]:
        rgb = tuple(int(c * 255 + 0.5) for c in mcolors.to_rgb(colour))
        assert rgb in pixels, colour


def test_the_readme_picture_is_there() -> None:
    picture = REPO / "docs" / "cluster.png"
    assert picture.stat().st_size > 30_000
    assert "docs/cluster.png" in (REPO / "README.md").read_text()
