"""A local view of the CloudWatch dashboard: the EMF lines captured from real handler runs (for
instance `make demo`'s .local/demo-output.jsonl), drawn with the widgets of template.yaml's
Dashboard, so that someone without an AWS account sees what it would show.

    python -m localeks.dashboard [.local/demo-output.jsonl] [-o docs/dashboard.png]

Each ServerlessNTH widget shows its metrics over the whole captured run, split by event kind:
counts summed, durations and latencies at their maximum; the AWS/Lambda and AWS/SQS widgets exist
only in CloudWatch and say so.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from localeks.cluster import DEFAULT_STATE, REPO
from localeks.template import load_template

NAMESPACE = "ServerlessNTH"
_METRIC_NAME = re.compile(r'MetricName="([A-Za-z]+)"')


def dashboard_widgets(template: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The widgets of the template's Dashboard, with ${...} substitutions left as they are."""
    template = template or load_template()
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return list(json.loads(body)["widgets"])


def widget_metric_names(widget: dict[str, Any]) -> list[tuple[str, str]]:
    """(namespace, metric name) of every metric a widget draws."""
    names: list[tuple[str, str]] = []
    for entry in widget.get("properties", {}).get("metrics", []):
        first = entry[0]
        if isinstance(first, dict):
            names += [
                (NAMESPACE, m) for m in _METRIC_NAME.findall(first["expression"]) if NAMESPACE in first["expression"]
            ]
        else:
            names.append((first, entry[1]))
    return names


def read_emf(lines: list[str]) -> list[dict[str, Any]]:
    """(metric, unit, dimensions, value) records of every EMF line among ``lines``."""
    records = []
    for line in lines:
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            dims = {d: blob[d] for d in directive["Dimensions"][0]}
            for metric in directive["Metrics"]:
                for value in blob[metric["Name"]]:
                    records.append(
                        {
                            "namespace": directive["Namespace"],
                            "name": metric["Name"],
                            "unit": metric["Unit"],
                            "dimensions": dims,
                            "value": value,
                        }
                    )
    return records


def render(emf_file: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_emf(emf_file.read_text().splitlines())
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        if r["namespace"] == NAMESPACE:
            split = (
                r["dimensions"].get("event_kind")
                or r["dimensions"].get("stage")
                or r["dimensions"].get("function_name", "")
            )
            if r["unit"] == "Seconds":  # durations and latencies: the slowest, not a sum
                totals[r["name"]][split] = max(totals[r["name"]][split], r["value"])
            else:
                totals[r["name"]][split] += r["value"]
    widgets = [w for w in dashboard_widgets() if w["type"] == "metric"]
    top = min(w["y"] for w in widgets)
    rows = max(w["y"] + w["height"] for w in widgets) - top
    fig = plt.figure(figsize=(16, rows * 0.75))
    grid = fig.add_gridspec(rows, 24, hspace=2.2, wspace=3)
    for widget in widgets:
        ax = fig.add_subplot(
            grid[
                widget["y"] - top : widget["y"] - top + widget["height"] - 1,
                widget["x"] : widget["x"] + widget["width"],
            ]
        )
        props = widget["properties"]
        ax.set_title(props["title"], fontsize=9)
        names = widget_metric_names(widget)
        if not names or names[0][0] != NAMESPACE:
            ax.text(
                0.5,
                0.5,
                f"{names[0][0] if names else ''}: in CloudWatch only",
                ha="center",
                va="center",
                fontsize=8,
                color="grey",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        metric_names = list(dict.fromkeys(n for _, n in names))
        splits = sorted({s for n in metric_names for s in totals.get(n, {})}) or ["(none in this run)"]
        width = 0.8 / len(splits)
        for i, split in enumerate(splits):
            ax.bar(
                [j + i * width for j in range(len(metric_names))],
                [totals.get(n, {}).get(split, 0) for n in metric_names],
                width,
                label=split,
            )
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metric_names))], metric_names, fontsize=7, rotation=12)
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(
        f"Dashboard of template.yaml over the EMF metrics in {emf_file.name} ({len(records)} data points): "
        "counts summed, seconds at their maximum"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(prog="localeks.dashboard")
    parser.add_argument("emf", type=Path, nargs="?", default=DEFAULT_STATE / "demo-output.jsonl")
    parser.add_argument("-o", "--out", type=Path, default=REPO / ".local" / "dashboard.png")
    args = parser.parse_args()
    if not args.emf.exists():
        raise SystemExit(f"{args.emf} not found: run make demo first")
    render(args.emf, args.out)
    print(f"dashboard: {args.out}")


if __name__ == "__main__":
    main()
