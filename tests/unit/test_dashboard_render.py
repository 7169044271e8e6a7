"""The local dashboard is drawn as CloudWatch draws template.yaml's widgets: time series over the
run's minutes, each point the widget's statistic over its period, one series per combination of
dimension values a SEARCH matches; and the picture holds exactly those points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from localeks.dashboard import (
    NAMESPACE,
    dashboard_figure,
    dashboard_widgets,
    deployment_of,
    metric_queries,
    read_emf,
    statistic,
    widget_metric_names,
)

T0 = 1_795_809_240  # a whole minute, in epoch seconds


def emf_line(at: float, dims: dict[str, str], metrics: dict[str, tuple[str, list[float]]]) -> str:
    """One EMF line as Powertools prints it."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(at * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [list(dims)],
                        "Metrics": [{"Name": n, "Unit": unit} for n, (unit, _) in metrics.items()],
                    }
                ],
            },
            **dims,
            **{n: values for n, (_, values) in metrics.items()},
        }
    )


def event(at: float, kind: str, outcome: str, latency: float, cluster: str = "c1") -> str:
    dims = {"cluster": cluster, "event_kind": kind, "outcome": outcome, "service": "serverless-nth"}
    return emf_line(at, dims, {"EventsReceived": ("Count", [1.0]), "EventToCordonLatency": ("Seconds", [latency])})


LINES = [
    event(T0 + 5, "spot-interruption", "drained", 1.0),
    event(T0 + 20, "spot-interruption", "drained", 3.0),
    event(T0 + 30, "spot-interruption", "drained", 2.0),
    event(T0 + 50, "spot-interruption", "drained", 10.0),
    event(T0 + 70, "spot-interruption", "drained", 4.0),  # next minute
    event(T0 + 65, "rebalance-recommendation", "cordoned", 0.5),
    event(T0 + 200, "spot-interruption", "drained", 1.0, cluster="another"),  # not this dashboard's cluster
    emf_line(T0 + 10, {"function_name": "F", "service": "serverless-nth"}, {"ColdStart": ("Count", [1.0])}),
    '{"level":"INFO","message":"not a metric"}',
]


def widget(title: str) -> dict[str, Any]:
    return next(w for w in dashboard_widgets() if w.get("properties", {}).get("title") == title)


def test_queries_carry_the_statistics_and_periods_of_the_template() -> None:
    queries = metric_queries(widget("Event time to node cordoned (s), p50 and max"))
    assert [(q["name"], q["stat"], q["period"]) for q in queries] == [
        ("EventToCordonLatency", "p50", 60),
        ("EventToCordonLatency", "Maximum", 60),
    ]
    assert queries[0]["schema"] == ["cluster", "event_kind", "outcome", "service"]
    for w in dashboard_widgets():
        if w["type"] == "metric":  # every line of every widget is read, ServerlessNTH or AWS
            assert {(q["namespace"], q["name"]) for q in metric_queries(w)} == set(widget_metric_names(w))
            assert all(q["period"] == w["properties"]["period"] for q in metric_queries(w))


def test_statistics_as_cloudwatch_computes_them() -> None:
    assert statistic("Sum", [1, 2, 3, 10]) == 16
    assert statistic("Maximum", [1, 2, 3, 10]) == 10
    assert statistic("p50", [1, 2, 3, 10]) == 2
    assert statistic("p50", [4.0]) == 4.0
    assert statistic("p99", [1, 2, 3, 10]) == 10
    with pytest.raises(ValueError, match="statistic"):
        statistic("TM(10%:90%)", [1.0])


def test_the_figure_draws_each_widget_as_a_time_series_of_its_statistic_per_period(tmp_path: Path) -> None:
    records = read_emf(LINES)
    fig, drawn = dashboard_figure(records, "test.jsonl")
    by_label = {s["label"]: s for s in drawn["Events received, by kind"]}
    assert by_label["EventsReceived spot-interruption drained (Sum)"]["points"] == [(T0, 4.0), (T0 + 60, 1.0)]
    assert by_label["EventsReceived rebalance-recommendation cordoned (Sum)"]["points"] == [(T0 + 60, 1.0)]
    assert len(by_label) == 2  # the other cluster's event is not on this cluster's dashboard
    latency = {s["label"]: s["points"] for s in drawn["Event time to node cordoned (s), p50 and max"]}
    assert latency["EventToCordonLatency spot-interruption drained (p50)"] == [(T0, 2.0), (T0 + 60, 4.0)]
    assert latency["EventToCordonLatency spot-interruption drained (Maximum)"] == [(T0, 10.0), (T0 + 60, 4.0)]
    assert [s["points"] for s in drawn["Cold starts"]] == [[(T0, 1.0)]]
    assert drawn["Pods evicted and refused"] == []  # no such metric in these lines: no line drawn

    # what is drawn is that data: one line per series, at those times and values
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}
    assert len(lines) == sum(len(series) for series in drawn.values())
    for title, series in drawn.items():
        for s in series:
            line = lines[f"series:{title}:{s['label']}"]
            assert [x.timestamp() for x in line.get_xdata()] == [t for t, _ in s["points"]]
            assert list(line.get_ydata()) == [v for _, v in s["points"]]
    titles = {ax.get_title(loc="left") for ax in fig.axes}
    assert {w["properties"]["title"] for w in dashboard_widgets() if w["type"] != "text"} <= titles
    # the picture: what render() writes for make demo and make dashboard
    import matplotlib.pyplot as plt

    fig.savefig(tmp_path / "dashboard.png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    assert (tmp_path / "dashboard.png").stat().st_size > 50_000


def test_a_deployment_of_many_clusters_and_accounts_draws_one_line_per_cluster_and_account() -> None:
    """The EMF of a multi-account deployment carries `account` (entrypoint.set_dimensions): its
    dashboard (deployment_of the records) draws every served cluster, each apart."""

    def counted(at: float, cluster: str, account: str) -> str:
        dims = {
            "account": account,
            "cluster": cluster,
            "event_kind": "spot-interruption",
            "outcome": "drained",
            "service": "serverless-nth",
        }
        return emf_line(at, dims, {"EventsReceived": ("Count", [1.0])})

    lines = [
        counted(T0 + 5, "c1", "111111111111"),
        counted(T0 + 6, "c1", "111111111111"),
        counted(T0 + 7, "c2", "222222222222"),
        event(T0 + 8, "spot-interruption", "drained", 1.0),  # no account: another schema, not drawn
    ]
    records = read_emf(lines)
    assert deployment_of(records) == {
        "ClusterName": "c1",
        "Clusters": "c2",
        "MemberAccounts": "111111111111,222222222222",
    }
    _, drawn = dashboard_figure(records, "many.jsonl", deployment_of(records))
    by_label = {s["label"]: s["points"] for s in drawn["Events received, by kind"]}
    assert by_label == {
        "EventsReceived 111111111111 c1 spot-interruption drained (Sum)": [(T0, 2.0)],
        "EventsReceived 222222222222 c2 spot-interruption drained (Sum)": [(T0, 1.0)],
    }
    # the same records on one cluster's dashboard: the account's schema is not its own
    _, single = dashboard_figure(records, "many.jsonl")
    assert [s["dimensions"].get("account") for s in single["Events received, by kind"]] == [None]
