"""A picture of the cluster's nodes before and after the events, in the spirit of kube-ops-view.

Two steps, so that what is drawn can be checked against the cluster:

- ``snapshot(core, node_names)`` reads the nodes and their pods and returns plain data (dicts and
  lists, JSON-ready): per node its name, capacity type, Karpenter NodePool or EKS node group,
  instance type, this product's per-node labels, whether it is cordoned, its taints, whether it is
  out of service, and its pods with their kind (Deployment/ReplicaSet, DaemonSet, mirror, bare,
  emptyDir, other controller), phase and whether they are terminating;
- ``figure(before, after)`` draws two such snapshots side by side with matplotlib: each node a box
  labelled with its name, capacity type and NodePool or node group; its pods small squares coloured
  by kind (hollow while terminating); a cordoned node with an orange dashed border and a CORDONED
  badge, an out-of-service node hatched with an OUT OF SERVICE badge, and every taint written in
  red at the bottom of its box, so the picture says why.

``make demo`` writes .local/cluster-before-after.{json,png};
``python -m localeks.clusterview [.local/cluster-before-after.json] [-o docs/cluster.png]`` redraws it.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

from localeks.cluster import DEFAULT_STATE

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

# pod kind -> (legend label, colour); tab10 colours, told apart in print and by most colour-blind eyes
KINDS: dict[str, tuple[str, str]] = {
    "deployment": ("Deployment / ReplicaSet", "#1f77b4"),
    "daemonset": ("DaemonSet", "#2ca02c"),
    "mirror": ("mirror (static) pod", "#9467bd"),
    "emptydir": ("with emptyDir", "#ff7f0e"),
    "bare": ("bare (no controller)", "#d62728"),
    "other": ("other controller", "#7f7f7f"),
}
CORDONED_COLOUR = "#e67e00"
OUT_OF_SERVICE_COLOUR = "#8b0000"
TAINT_COLOUR = "#c00000"
NODE_FACE = "#f4f6f8"
MARKS_PER_ROW = 15
MAX_MARKS = 60  # more pods than that: the first 60 are drawn, and the count says so


# --- the data ------------------------------------------------------------------------------------
def pod_kind(pod: Any) -> str:
    """What a drain must tell apart: mirror pods and DaemonSet pods stay, pods with emptyDir lose
    their data, bare pods do not come back, ReplicaSet (Deployment) pods are replaced."""
    meta = pod.metadata
    if MIRROR_ANNOTATION in (meta.annotations or {}):
        return "mirror"
    controller = next((o for o in meta.owner_references or [] if o.controller), None)
    if controller is not None and controller.kind == "DaemonSet":
        return "daemonset"
    if any(v.empty_dir is not None for v in pod.spec.volumes or []):
        return "emptydir"
    if controller is None:
        return "bare"
    return "deployment" if controller.kind in ("ReplicaSet", "Deployment") else "other"


def node_data(node: Any, pods: list[Any]) -> dict[str, Any]:
    labels = node.metadata.labels or {}
    taints = [{"key": t.key, "value": t.value or "", "effect": t.effect} for t in node.spec.taints or []]
    return {
        "name": node.metadata.name,
        "capacity_type": labels.get("eks.amazonaws.com/capacityType") or labels.get("karpenter.sh/capacity-type") or "",
        "nodepool": labels.get("karpenter.sh/nodepool"),  # Karpenter
        "nodegroup": labels.get("eks.amazonaws.com/nodegroup"),  # EKS managed node group
        "instance_type": labels.get("node.kubernetes.io/instance-type", ""),
        "policy_labels": {k: v for k, v in sorted(labels.items()) if k.startswith("serverless-nth/")},
        "unschedulable": bool(node.spec.unschedulable),
        "taints": taints,
        "out_of_service": any(t["key"] == OUT_OF_SERVICE for t in taints),
        "pods": sorted(
            (
                {
                    "namespace": p.metadata.namespace,
                    "name": p.metadata.name,
                    "kind": pod_kind(p),
                    "phase": p.status.phase if p.status else None,
                    "terminating": p.metadata.deletion_timestamp is not None,
                }
                for p in pods
            ),
            key=lambda p: (list(KINDS).index(p["kind"]), p["namespace"], p["name"]),
        ),
    }


def snapshot(core: Any, node_names: list[str]) -> dict[str, Any]:
    """The named nodes (a CoreV1Api; two requests a node), as plain data. A node that no longer
    exists is listed with ``"gone": True``."""
    from kubernetes.client.exceptions import ApiException

    taken_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    nodes: list[dict[str, Any]] = []
    for name in node_names:
        try:
            node = core.read_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            nodes.append({"name": name, "gone": True, "pods": [], "taints": []})
            continue
        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}").items
        nodes.append(node_data(node, pods))
    return {"taken_at": taken_at, "nodes": nodes}


def nodes_created_since(core: Any, first: str) -> list[str]:
    """``first`` and every node created since it (by creationTimestamp), oldest first: the nodes a
    run such as the demo made, in a cluster that may hold older ones."""
    since = core.read_node(first).metadata.creation_timestamp
    nodes = [n for n in core.list_node().items if n.metadata.creation_timestamp >= since]
    return [n.metadata.name for n in sorted(nodes, key=lambda n: (n.metadata.creation_timestamp, n.metadata.name))]


# --- the drawing ---------------------------------------------------------------------------------
def node_caption(node: dict[str, Any]) -> tuple[str, str]:
    """(title, subtitle) of a node's box: its short name; capacity type, NodePool or node group,
    instance type, this product's labels."""
    title = node["name"].removesuffix(".ec2.internal")
    if node.get("gone"):
        return title, "node deleted"
    parts = [node["capacity_type"] or "no capacity-type label"]
    if node.get("nodepool"):
        parts.append(f"Karpenter NodePool {node['nodepool']}")
    if node.get("nodegroup"):
        parts.append(f"node group {node['nodegroup']}")
    if node.get("instance_type"):
        parts.append(node["instance_type"])
    subtitle = " · ".join(parts)
    if node.get("policy_labels"):
        subtitle += "\n" + ", ".join(f"{k}={v}" for k, v in node["policy_labels"].items())
    return title, subtitle


def taint_lines(node: dict[str, Any]) -> list[str]:
    return [f"{t['key']}{'=' + t['value'] if t['value'] else ''}:{t['effect']}" for t in node.get("taints", [])]


# geometry, in inches (the axes' data units are inches)
BOX_W, BOX_H, GAP = 3.3, 2.3, 0.25
MARK, PITCH = 0.15, 0.2


def figure(before: dict[str, Any], after: dict[str, Any], columns: int = 3) -> Any:
    """A matplotlib Figure of both snapshots. Every node box and pod mark carries a ``gid``
    (``node:<panel>:<name>``, ``pod:<panel>:<namespace>/<name>``, ``cordoned:...``,
    ``out-of-service:...``, ``taint:...``) so that a test can find what was drawn for what."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    count = max(len(before["nodes"]), len(after["nodes"]), 1)
    columns = min(columns, count)
    rows = -(-count // columns)
    panel_w, panel_h = columns * (BOX_W + GAP), rows * (BOX_H + GAP)
    fig = plt.figure(figsize=(2 * panel_w + 0.5, panel_h + 2.0))
    kinds_drawn: set[str] = set()
    for k, (panel, snap, heading) in enumerate(
        (("before", before, "Before the events"), ("after", after, "After the events"))
    ):
        # one axes per panel, placed in inches: 1 data unit = 1 inch
        left = (k * (panel_w + 0.5)) / fig.get_figwidth()
        ax = fig.add_axes(
            (left, 0.9 / fig.get_figheight(), panel_w / fig.get_figwidth(), panel_h / fig.get_figheight())
        )
        ax.set_xlim(0, panel_w)
        ax.set_ylim(-panel_h, 0)
        ax.set_axis_off()
        ax.set_title(f"{heading} ({snap['taken_at']})", fontsize=13, loc="left")
        for i, node in enumerate(snap["nodes"]):
            x = (i % columns) * (BOX_W + GAP)
            top = -(i // columns) * (BOX_H + GAP)
            kinds_drawn |= _draw_node(ax, panel, node, x, top)
    handles: list[Any] = [
        Patch(facecolor=KINDS[k][1], label=KINDS[k][0]) for k in KINDS if k in kinds_drawn or k != "other"
    ]
    handles += [
        Patch(facecolor="white", edgecolor=KINDS["deployment"][1], label="pod terminating (hollow)"),
        Line2D([], [], color=CORDONED_COLOUR, linestyle="--", linewidth=2.5, label="cordoned (unschedulable)"),
        Patch(facecolor=NODE_FACE, edgecolor=OUT_OF_SERVICE_COLOUR, hatch="///", label="out of service"),
        Line2D([], [], color=TAINT_COLOUR, marker="$T$", linestyle="", label="taints, in red: key=value:effect"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=10, frameon=False)
    fig.suptitle(
        "Nodes of the local EKS and their pods, before and after the events (in the spirit of kube-ops-view)",
        fontsize=15,
        x=0.01,
        ha="left",
    )
    return fig


def _draw_node(ax: Any, panel: str, node: dict[str, Any], x: float, top: float) -> set[str]:
    from matplotlib.patches import FancyBboxPatch, Rectangle

    name = node["name"]
    y = top - BOX_H
    cordoned = bool(node.get("unschedulable"))
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            BOX_W,
            BOX_H,
            boxstyle="round,pad=0,rounding_size=0.08",
            facecolor="#e9e9e9" if node.get("gone") else NODE_FACE,
            edgecolor=CORDONED_COLOUR if cordoned else "#8a94a0",
            linewidth=2.5 if cordoned else 1.0,
            linestyle="--" if cordoned else "-",
            gid=f"node:{panel}:{name}",
        )
    )
    if node.get("out_of_service"):
        ax.add_patch(
            Rectangle(
                (x, y),
                BOX_W,
                BOX_H,
                facecolor="none",
                edgecolor=OUT_OF_SERVICE_COLOUR,
                hatch="///",
                linewidth=0,
                alpha=0.3,
                gid=f"out-of-service:{panel}:{name}",
            )
        )
    title, subtitle = node_caption(node)
    ax.text(x + 0.1, top - 0.08, title, fontsize=10.5, fontweight="bold", va="top", ha="left")
    ax.text(x + 0.1, top - 0.32, subtitle, fontsize=8, va="top", ha="left", color="#333333", linespacing=1.4)
    line = top - (0.75 if node.get("policy_labels") else 0.58)
    badges = [("CORDONED", CORDONED_COLOUR, "cordoned")] if cordoned else []
    if node.get("out_of_service"):
        badges.append(("OUT OF SERVICE", OUT_OF_SERVICE_COLOUR, "out-of-service-badge"))
    bx = x + 0.12
    for text, colour, gid in badges:
        ax.text(
            bx,
            line,
            text,
            fontsize=8,
            fontweight="bold",
            color="white",
            va="top",
            ha="left",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": colour, "edgecolor": "none"},
            gid=f"{gid}:{panel}:{name}",
        )
        bx += 0.25 + 0.085 * len(text)
    if badges:
        line -= 0.3
    # pods: small squares, left to right, in rows
    kinds: set[str] = set()
    pods = node.get("pods", [])
    for k, pod in enumerate(pods[:MAX_MARKS]):
        colour = KINDS[pod["kind"]][1]
        kinds.add(pod["kind"])
        ax.add_patch(
            Rectangle(
                (x + 0.12 + (k % MARKS_PER_ROW) * PITCH, line - (k // MARKS_PER_ROW) * PITCH - MARK),
                MARK,
                MARK,
                facecolor="white" if pod["terminating"] else colour,
                edgecolor=colour,
                linewidth=1.4,
                alpha=1.0 if pod["phase"] in ("Running", None) or pod["terminating"] else 0.45,
                gid=f"pod:{panel}:{pod['namespace']}/{pod['name']}",
            )
        )
    pod_rows = -(-min(len(pods), MAX_MARKS) // MARKS_PER_ROW)
    summary = f"{len(pods)} pod{'s' if len(pods) != 1 else ''}"
    if len(pods) > MAX_MARKS:
        summary += f" (the first {MAX_MARKS} drawn)"
    ax.text(x + 0.12, line - pod_rows * PITCH - 0.04, summary, fontsize=7.5, va="top", color="#555555")
    for j, text in enumerate(reversed(taint_lines(node))):
        ax.text(
            x + 0.1,
            y + 0.08 + j * 0.17,
            text,
            fontsize=7.5,
            color=TAINT_COLOUR,
            va="bottom",
            ha="left",
            gid=f"taint:{panel}:{name}:{text}",
        )
    return kinds


def write(before: dict[str, Any], after: dict[str, Any], png: Path) -> Path:
    """Draws both snapshots into ``png`` and keeps the data beside it (same name, .json)."""
    import matplotlib.pyplot as plt

    png.parent.mkdir(parents=True, exist_ok=True)
    png.with_suffix(".json").write_text(json.dumps({"before": before, "after": after}, indent=1) + "\n")
    fig = figure(before, after)
    fig.savefig(png, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return png


def main() -> None:
    parser = argparse.ArgumentParser(prog="localeks.clusterview")
    parser.add_argument("data", type=Path, nargs="?", default=DEFAULT_STATE / "cluster-before-after.json")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_STATE / "cluster-before-after.png")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: run make demo first")
    data = json.loads(args.data.read_text())
    import matplotlib.pyplot as plt

    fig = figure(data["before"], data["after"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    plt.close(fig)
    print(f"clusterview: {args.out}")


if __name__ == "__main__":
    main()
