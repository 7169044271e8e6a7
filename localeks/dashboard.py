"""A local view of the CloudWatch dashboard: the EMF lines captured from real handler runs (for
instance `make demo`'s .local/demo-output.jsonl), drawn with the widgets of template.yaml's
Dashboard, so that someone without an AWS account sees what it would show.

    python -m localeks.dashboard [.local/demo-output.jsonl] [-o docs/dashboard.png]

Each widget is drawn as CloudWatch draws it: where template.yaml puts it on the 24-column grid,
with its title, a time series per metric over the minutes of the captured run, each point the
widget's statistic (Sum, p50, Maximum) over its period (60 s), as CloudWatch aggregates EMF data.
A SEARCH expression gives one series per combination of dimension values it matches, as in
CloudWatch; periods without data have no point. The AWS/Lambda, AWS/Events and AWS/SQS widgets
(metrics AWS emits, not the code) and the alarm states exist only in CloudWatch and say so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from localeks.cluster import DEFAULT_STATE, REPO
from localeks.template import load_template

NAMESPACE = "ServerlessNTH"
_METRIC_NAME = re.compile(r'MetricName="([A-Za-z]+)"')
# SEARCH('{Namespace,dim,dim} MetricName="Name" dim="value"', 'Stat', period)
_SEARCH = re.compile(
    r"SEARCH\('\{(?P<namespace>[^,}]+),(?P<schema>[^}]*)\}(?P<terms>[^']*)',\s*'(?P<stat>[^']+)',\s*(?P<period>\d+)\)"
)
_TERM = re.compile(r'(\w+)="([^"]*)"')


def dashboard_widgets(
    template: dict[str, Any] | None = None, long_drains: bool = True, parameters: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The widgets of the template's Dashboard as the stack deployed with ``parameters`` gets them
    (defaults otherwise; a single-cluster deployment): the conditions and the Fn::Sub variables
    (schemas, cluster filter) evaluated, other ${...} substitutions left as they are (${ClusterName}
    unless ``parameters`` names it). The long drains' widgets only when ``long_drains`` (the
    conditions LongDrains and InstanceStatusChecks)."""
    template = template or load_template()
    flag = "true" if long_drains else "false"
    given = {"LongDrains": flag, "InstanceStatusChecks": flag} | (parameters or {})
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    return list(json.loads(_Resolver(template, given).text(body))["widgets"])


def dashboard_text(body: Any, long_drains: bool = True, parameters: dict[str, str] | None = None) -> str:
    """The Dashboard's body as text, resolved as in ``dashboard_widgets``."""
    flag = "true" if long_drains else "false"
    given = {"LongDrains": flag, "InstanceStatusChecks": flag} | (parameters or {})
    return _Resolver(load_template(), given).text(body)


# the template's conditions for one deployment of many clusters and accounts: all false by default
MANY_CLUSTER_CONDITIONS = ("MoreClusters", "CrossAccount", "AllClusters", "ClusterList")


def single_cluster_form(value: Any) -> Any:
    """``value`` (a resource's properties) as a single-cluster deployment gets it: every Fn::If on
    a condition of many clusters takes its false branch (AWS::NoValue: the property is left out);
    nothing else is resolved."""
    if isinstance(value, list):
        return [single_cluster_form(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::If"} and value["Fn::If"][0] in MANY_CLUSTER_CONDITIONS:
        return single_cluster_form(value["Fn::If"][2])
    out = {k: single_cluster_form(v) for k, v in value.items()}
    return {k: v for k, v in out.items() if v != {"Ref": "AWS::NoValue"}}  # a property CloudFormation leaves out


class _Resolver:
    """The few intrinsics the dashboard body uses: Fn::Join, Fn::Sub (with variables), Fn::If on the
    template's conditions, Fn::Split, Ref to a parameter."""

    def __init__(self, template: dict[str, Any], given: dict[str, str]) -> None:
        self.conditions = template.get("Conditions", {})
        defaults = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.values = defaults | given
        self.given = given  # substituted in Fn::Sub strings; the rest stay ${...}

    def condition(self, name: str) -> bool:
        return bool(self.value(self.conditions[name]))

    def text(self, value: Any) -> str:
        resolved = self.value(value)
        if not isinstance(resolved, str):
            raise ValueError(f"the dashboard body resolves to {resolved!r}, not text")
        return resolved

    def value(self, value: Any) -> Any:
        if isinstance(value, (str, bool)):
            return value
        if isinstance(value, list):
            return [self.value(v) for v in value]
        ((key, arg),) = value.items()
        if key == "Ref" and arg in self.values:
            return self.values[arg]
        if key in ("Condition", "Fn::Condition"):  # !Condition, as localeks/template.py loads it
            return self.condition(arg)
        if key == "Fn::Equals":
            return self.value(arg[0]) == self.value(arg[1])
        if key == "Fn::Not":
            return not self.value(arg[0])
        if key == "Fn::And":
            return all(self.value(v) for v in arg)
        if key == "Fn::Or":
            return any(self.value(v) for v in arg)
        if key == "Fn::If":
            return self.value(arg[1] if self.condition(arg[0]) else arg[2])
        if key == "Fn::Join":
            return str(arg[0]).join(self.text(part) for part in self.value(arg[1]))
        if key == "Fn::Split":
            return self.text(arg[1]).split(arg[0])
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            known = self.given | {k: self.text(v) for k, v in variables.items()}
            return re.sub(r"\$\{([\w:]+)\}", lambda m: known.get(m.group(1), m.group(0)), str(text))
        raise ValueError(f"the dashboard body uses {key}, which localeks/dashboard.py does not read")


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
    """(metric, unit, dimensions, value, timestamp in ms) records of every EMF line among ``lines``."""
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
                            "timestamp": blob["_aws"]["Timestamp"],
                        }
                    )
    return records


def metric_queries(widget: dict[str, Any]) -> list[dict[str, Any]]:
    """What each line of a widget's ``metrics`` asks CloudWatch for: namespace, metric name,
    statistic, period, and either a SEARCH (the exact dimension schema and its fixed values) or
    one metric's dimensions. A plain metric takes the widget's stat and period unless it names its
    own, as CloudWatch does."""
    props = widget["properties"]
    queries = []
    for entry in props.get("metrics", []):
        first = entry[0]
        if isinstance(first, dict):
            match = _SEARCH.search(first["expression"])
            if not match:
                raise ValueError(f"{props['title']}: not a SEARCH expression this view reads: {first['expression']}")
            # a dimension named once must have that value; named several times (OR), one of them
            terms: dict[str, list[str]] = defaultdict(list)
            for dim, value in _TERM.findall(match["terms"]):
                terms[dim].append(value)
            (name,) = terms.pop("MetricName")
            queries.append(
                {
                    "namespace": match["namespace"],
                    "name": name,
                    "stat": match["stat"],
                    "period": int(match["period"]),
                    "schema": sorted(match["schema"].split(",")),
                    "dimensions": {k: v[0] if len(v) == 1 else v for k, v in terms.items()},
                    "search": True,
                }
            )
        else:
            options = entry[-1] if isinstance(entry[-1], dict) else {}
            namespace, name, *rest = [e for e in entry if not isinstance(e, dict)]
            queries.append(
                {
                    "namespace": namespace,
                    "name": name,
                    "stat": options.get("stat", props.get("stat", "Average")),
                    "period": int(options.get("period", props.get("period", 300))),
                    "schema": sorted(rest[0::2]),
                    "dimensions": dict(zip(rest[0::2], rest[1::2], strict=True)),
                    "search": False,
                }
            )
    return queries


def statistic(stat: str, values: list[float]) -> float:
    """A CloudWatch statistic of the values of one period (pNN: nearest rank, as CloudWatch
    computes percentiles of raw EMF values)."""
    if stat == "Sum":
        return sum(values)
    if stat == "Maximum":
        return max(values)
    if stat == "Minimum":
        return min(values)
    if stat == "Average":
        return sum(values) / len(values)
    if stat == "SampleCount":
        return float(len(values))
    if re.fullmatch(r"p\d+(\.\d+)?", stat):
        ordered = sorted(values)
        rank = max(1, math.ceil(float(stat[1:]) / 100 * len(ordered)))
        return ordered[rank - 1]
    raise ValueError(f"statistic {stat} is not one this view computes")


def _matches(query: dict[str, Any], record: dict[str, Any], substitutions: dict[str, str]) -> bool:
    if record["namespace"] != query["namespace"] or record["name"] != query["name"]:
        return False
    if sorted(record["dimensions"]) != query["schema"]:  # a SEARCH matches its exact dimension schema
        return False
    for dim, wanted in query["dimensions"].items():
        values = {
            re.sub(r"\$\{(\w+)\}", lambda m: substitutions.get(m.group(1), m.group(0)), w)
            for w in (wanted if isinstance(wanted, list) else [wanted])
        }
        if record["dimensions"].get(dim) not in values:
            return False
    return True


def widget_series(
    widget: dict[str, Any], records: list[dict[str, Any]], substitutions: dict[str, str]
) -> list[dict[str, Any]]:
    """The series a metric widget draws from ``records``: per query, one series per combination of
    dimension values (label: the metric and the dimension values that vary, as CloudWatch labels
    SEARCH results), each point (start of the period in epoch seconds, the statistic)."""
    series = []
    for query in metric_queries(widget):
        groups: dict[tuple[tuple[str, str], ...], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in records:
            if _matches(query, r, substitutions):
                bucket = int(r["timestamp"] // 1000 // query["period"] * query["period"])
                groups[tuple(sorted(r["dimensions"].items()))][bucket].append(float(r["value"]))
        for dims, buckets in sorted(groups.items()):
            # what varies: the dimensions not fixed to one value (the cluster, with many of them)
            fixed = {k for k, v in query["dimensions"].items() if isinstance(v, str)} | {"service"}
            shown = [v for k, v in dims if k not in fixed]
            series.append(
                {
                    "label": " ".join([query["name"], *shown]) + (f" ({query['stat']})" if query["search"] else ""),
                    "namespace": query["namespace"],
                    "name": query["name"],
                    "stat": query["stat"],
                    "period": query["period"],
                    "dimensions": dict(dims),
                    "points": [(t, statistic(query["stat"], vs)) for t, vs in sorted(buckets.items())],
                }
            )
    return series


def _legend_label(series: dict[str, Any], several_metrics: bool, several_stats: bool) -> str:
    """The series' label, without what the widget's title already says: the metric name when the
    widget draws one metric, the statistic when it uses one."""
    label = str(series["label"])
    text = label if several_stats else label.removesuffix(f" ({series['stat']})")
    return text if several_metrics else text.removeprefix(series["name"] + " ")


def _period_text(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def deployment_of(records: list[dict[str, Any]]) -> dict[str, str]:
    """The parameters of a deployment whose functions emitted ``records``: its ClusterName (the
    cluster of most data points), the other clusters as Clusters, and, when the metrics carry an
    account (a multi-account deployment), those accounts as MemberAccounts."""
    clusters = Counter(r["dimensions"]["cluster"] for r in records if "cluster" in r["dimensions"])
    name = clusters.most_common(1)[0][0] if clusters else "?"
    parameters = {"ClusterName": name}
    if len(clusters) > 1:
        parameters["Clusters"] = ",".join(sorted(set(clusters) - {name}))
    accounts = sorted({r["dimensions"]["account"] for r in records if "account" in r["dimensions"]})
    if accounts:
        parameters["MemberAccounts"] = ",".join(accounts)
    return parameters


def render(emf_file: Path, out: Path, many: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Draws the dashboard into ``out``; returns what each metric widget drew (title -> series).
    ``many``: the dashboard of a deployment of every cluster and account in the file."""
    import matplotlib.pyplot as plt

    records = read_emf(emf_file.read_text().splitlines())
    fig, drawn = dashboard_figure(records, emf_file.name, deployment_of(records) if many else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return drawn


def dashboard_figure(
    records: list[dict[str, Any]], source: str, parameters: dict[str, str] | None = None
) -> tuple[Any, dict[str, list[dict[str, Any]]]]:
    """The Figure of the dashboard over ``records`` (``read_emf``), and what each ServerlessNTH
    widget drew (title -> series); each line carries the gid ``series:<title>:<label>``. The
    dashboard is that of the deployment with ``parameters`` (``deployment_of(records)`` for the one
    that emitted them); by default a single-cluster deployment's, of the cluster of most data points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    if parameters is None:  # one cluster's dashboard: the cluster of most data points
        parameters = {"ClusterName": deployment_of(records)["ClusterName"]}
    substitutions = {"ClusterName": parameters.get("ClusterName", "?")}
    widgets = dashboard_widgets(parameters=parameters)
    periods = [q["period"] for w in widgets if w["type"] == "metric" for q in metric_queries(w)]
    period = min(periods or [60])
    stamps = [r["timestamp"] / 1000 for r in records] or [datetime.datetime.now(datetime.UTC).timestamp()]
    # the run's minutes, a period either side, as a dashboard's time range around it would show them
    start = (min(stamps) // period - 1) * period
    end = (max(stamps) // period + 2) * period

    def when(t: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(t, datetime.UTC)

    rows = max(w["y"] + w["height"] for w in widgets)
    unit = 0.55  # inches per grid row; 24 columns across 18 inches
    fig = plt.figure(figsize=(18, rows * unit + 0.4))
    drawn: dict[str, list[dict[str, Any]]] = {}

    def place(widget: dict[str, Any], above: float = 0.5, below: float = 1.45) -> Any:
        """Axes inside the widget's cell, ``above`` inches for its title, ``below`` for the time
        axis and the legend."""
        height_in = fig.get_figheight()
        left = widget["x"] / 24 + 0.012
        width = widget["width"] / 24 - 0.03
        top = 1 - widget["y"] * unit / height_in
        height = (widget["height"] * unit - above - below) / height_in
        return fig.add_axes((left, top - above / height_in - height, width, height))

    for widget in widgets:
        props = widget["properties"]
        if widget["type"] == "text":
            ax = place(widget, above=0.1, below=0.1)
            ax.set_axis_off()
            lines = props["markdown"].replace("${ClusterName}", substitutions["ClusterName"]).split("\n")
            ax.text(0, 1, lines[0].lstrip("# "), fontsize=15, fontweight="bold", va="top", transform=ax.transAxes)
            ax.text(0, 0.4, " ".join(lines[1:]).replace("`", ""), fontsize=10, va="top", transform=ax.transAxes)
            continue
        ax = place(widget)
        ax.set_title(props["title"], fontsize=10, loc="left", fontweight="bold", pad=16)
        if widget["type"] == "alarm":
            ax.set_axis_off()
            names = [re.sub(r"^\$\{(\w+)\.Arn\}$", r"\1", a) for a in props["alarms"]]
            for i, name in enumerate(names):
                ax.text(0.02, 1 - (i + 0.5) / len(names), f"\u25cf {name}", fontsize=8, color="#555555", va="center")
            ax.text(0.98, 0.0, "alarm states: in CloudWatch only", fontsize=8, color="grey", ha="right")
            continue
        queries = metric_queries(widget)
        stats = list(dict.fromkeys(q["stat"] for q in queries))
        ax.text(
            0.0,
            1.03,
            f"{', '.join(stats)} · period {_period_text(queries[0]['period'])}",
            transform=ax.transAxes,
            ha="left",
            va="bottom",
            fontsize=8,
            color="#666666",
        )
        ax.set_xlim(when(start), when(end))
        ax.xaxis.set_major_locator(mdates.MinuteLocator(interval=max(1, int((end - start) // 60 // 8))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=datetime.UTC))
        ax.tick_params(labelsize=7)
        ax.grid(True, color="#e6e6e6")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        namespace = queries[0]["namespace"]
        if namespace != NAMESPACE:
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            metrics = ", ".join(dict.fromkeys(q["name"] for q in queries))
            ax.text(
                0.5,
                0.5,
                f"{namespace} {metrics}\nemitted by AWS for the stack's resources: in CloudWatch only",
                ha="center",
                va="center",
                fontsize=8,
                color="grey",
                transform=ax.transAxes,
            )
            continue
        series = widget_series(widget, records, substitutions)
        drawn[props["title"]] = series
        colours = plt.get_cmap("tab20" if len(series) > 10 else "tab10")
        labels = [_legend_label(s, len({q["name"] for q in queries}) > 1, len(stats) > 1) for s in series]
        for i, s in enumerate(series):
            ax.plot(
                [when(t) for t, _ in s["points"]],
                [v for _, v in s["points"]],
                marker="o",
                markersize=3.5,
                linewidth=1.5,
                color=colours(i % colours.N),
                label=labels[i],
                gid=f"series:{props['title']}:{s['label']}",
            )
        units = {r["unit"] for r in records if r["name"] in {q["name"] for q in queries}}
        ax.set_ylabel(units.pop() if len(units) == 1 else "", fontsize=7)
        ax.set_ylim(bottom=0)
        if series:
            ax.legend(
                fontsize=6.5,
                loc="upper left",
                bbox_to_anchor=(-0.02, -0.13),
                ncol=3 if max(map(len, labels)) <= 30 else 2,
                frameon=False,
                handlelength=1.2,
                columnspacing=0.8,
            )
        else:
            ax.text(0.5, 0.5, "no data in this run", ha="center", va="center", color="grey", transform=ax.transAxes)
    fig.text(
        0.01,
        0.0,
        f"template.yaml's dashboard over the {len(records)} EMF data points in {source}, "
        f"{when(start):%Y-%m-%d %H:%M}–{when(end):%H:%M} UTC; each point the widget's statistic over its period",
        fontsize=9,
        color="#444444",
    )
    return fig, drawn


def main() -> None:
    parser = argparse.ArgumentParser(prog="localeks.dashboard")
    parser.add_argument("emf", type=Path, nargs="?", default=DEFAULT_STATE / "demo-output.jsonl")
    parser.add_argument("-o", "--out", type=Path, default=REPO / ".local" / "dashboard.png")
    parser.add_argument(
        "--many", action="store_true", help="the dashboard of one deployment for every cluster and account in the file"
    )
    args = parser.parse_args()
    if not args.emf.exists():
        raise SystemExit(f"{args.emf} not found: run make demo first")
    render(args.emf, args.out, many=args.many)
    print(f"dashboard: {args.out}")


if __name__ == "__main__":
    main()
