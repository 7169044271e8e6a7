"""The dashboard in template.yaml and the metrics in the code name the same things."""

from __future__ import annotations

import re

from localeks.dashboard import NAMESPACE, dashboard_widgets, widget_metric_names
from localeks.template import load_template
from serverless_nth.observability import (
    COLD_START,
    COLD_START_DIMENSIONS,
    ERROR_DIMENSIONS,
    EVENT_DIMENSIONS,
    Metric,
)
from serverless_nth.observability import (
    NAMESPACE as CODE_NAMESPACE,
)

CODE_METRICS = {v for k, v in vars(Metric).items() if k.isupper()} | {COLD_START}


def dashboard_metrics() -> set[str]:
    return {name for w in dashboard_widgets() for ns, name in widget_metric_names(w) if ns == NAMESPACE}


def test_namespace_is_the_same() -> None:
    assert CODE_NAMESPACE == NAMESPACE


def test_every_dashboard_metric_is_emitted_by_the_code() -> None:
    assert dashboard_metrics() - CODE_METRICS == set()


def test_every_emitted_metric_is_on_the_dashboard() -> None:
    assert CODE_METRICS - dashboard_metrics() == set()


def test_search_expressions_use_the_dimension_sets_the_code_emits() -> None:
    allowed = {frozenset(EVENT_DIMENSIONS), frozenset(ERROR_DIMENSIONS), frozenset(COLD_START_DIMENSIONS)}
    schemas = []
    for widget in dashboard_widgets():
        for entry in widget.get("properties", {}).get("metrics", []):
            if isinstance(entry[0], dict):
                schemas += re.findall(r"\{" + NAMESPACE + r",([a-z_,]+)\}", entry[0]["expression"])
    assert schemas
    assert {frozenset(s.split(",")) for s in schemas} <= allowed


def test_alarms_cover_the_queues_the_errors_and_incomplete_drains() -> None:
    resources = load_template()["Resources"]
    alarms = {k: v for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {
        "RuleDeadLetterAlarm",
        "FailedInvocationAlarm",
        "FunctionErrorsAlarm",
        "DrainsIncompleteAlarm",
    }
    incomplete = alarms["DrainsIncompleteAlarm"]["Properties"]["Metrics"]
    stats = [m["MetricStat"]["Metric"] for m in incomplete if "MetricStat" in m]
    assert {m["MetricName"] for m in stats} == {Metric.DRAINS_INCOMPLETE}
    assert all({d["Name"] for d in m["Dimensions"]} == set(EVENT_DIMENSIONS) for m in stats)
