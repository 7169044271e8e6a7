"""The dashboard and alarms in template.yaml name only metrics that something emits: the code
(ServerlessNTH, with the dimension sets it uses) or a resource of the template (AWS/Lambda for its
functions, AWS/Events for its rules, AWS/SQS for its queues), and every alarm is on the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from localeks.dashboard import NAMESPACE, dashboard_text, dashboard_widgets, single_cluster_form, widget_metric_names
from localeks.template import load_template
from serverless_nth.observability import (
    ACCOUNT_DIMENSION,
    COLD_START,
    COLD_START_DIMENSIONS,
    ERROR_DIMENSIONS,
    EVENT_DIMENSIONS,
    TAGS_DIMENSIONS,
    Metric,
)
from serverless_nth.observability import (
    NAMESPACE as CODE_NAMESPACE,
)
from tests.metric_names import names_the_code_emits

# what the core's source emits (every Metric.X it uses, and ColdStart), not the list it declares
CODE_METRICS = set(names_the_code_emits())

# What AWS emits per resource: namespace -> (the template resource type, its dimension, metric names).
# Sources: https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html ,
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html ,
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html
AWS_METRICS: dict[str, tuple[str, str, set[str]]] = {
    "AWS/Lambda": (
        "AWS::Serverless::Function",
        "FunctionName",
        {
            "Invocations",
            "Errors",
            "Throttles",
            "Duration",
            "ConcurrentExecutions",
            "DeadLetterErrors",
            "DestinationDeliveryFailures",
            "AsyncEventsReceived",
            "AsyncEventAge",
            "AsyncEventsDropped",
        },
    ),
    "AWS/Events": (
        "EventBridgeRule",  # SAM's <Function><Event> rules, and the template's own AWS::Events::Rule
        "RuleName",
        {
            "Invocations",
            "FailedInvocations",
            "TriggeredRules",
            "MatchedEvents",
            "ThrottledRules",
            "DeadLetterInvocations",
            "InvocationsSentToDlq",
            "InvocationsFailedToBeSentToDlq",
        },
    ),
    "AWS/SQS": (
        "AWS::SQS::Queue",
        "QueueName",
        {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateAgeOfOldestMessage",
            "NumberOfMessagesSent",
            "NumberOfMessagesReceived",
        },
    ),
}


def resources_of(kind: str, template: dict[str, Any]) -> set[str]:
    resources = template["Resources"]
    if kind == "EventBridgeRule":
        return {
            f"{name}{event}"
            for name, r in resources.items()
            if r["Type"] == "AWS::Serverless::Function"
            for event, spec in r["Properties"].get("Events", {}).items()
            if spec["Type"] == "EventBridgeRule"
        } | {name for name, r in resources.items() if r["Type"] == "AWS::Events::Rule"}  # the durable functions' rules
    return {name for name, r in resources.items() if r["Type"] == kind}


def check_aws_metric(namespace: str, name: str, dimensions: dict[str, str], template: dict[str, Any]) -> None:
    assert namespace in AWS_METRICS, f"{namespace}/{name}: no resource of the template emits this namespace"
    kind, dimension, names = AWS_METRICS[namespace]
    assert name in names, f"{namespace} has no metric {name}"
    assert set(dimensions) == {dimension}, f"{namespace}/{name}: dimensions {dimensions}"
    assert dimensions[dimension] in resources_of(kind, template), (
        f"{namespace}/{name}: {dimension} {dimensions[dimension]} is not a {kind} of the template"
    )


# deployments (template parameters besides the defaults) -> the SEARCH filter on the cluster it
# gets: one cluster's (ClusterName), the list's, or none (Clusters=*: every cluster of the accounts)
SHAPES: dict[str, tuple[dict[str, str], str]] = {
    "single cluster": ({}, 'cluster="${ClusterName}"'),
    "a list of clusters": ({"Clusters": "b,c"}, '(cluster="${ClusterName}" OR cluster="b" OR cluster="c")'),
    "every cluster": ({"Clusters": "*"}, ""),
    "member accounts": ({"MemberAccounts": "111111111111"}, 'cluster="${ClusterName}"'),
    "an organization": ({"OrganizationId": "o-a1b2c3d4e5", "Clusters": "*"}, ""),
}
CROSS_ACCOUNT = {"member accounts", "an organization"}


def searches(widgets: list[dict[str, Any]]) -> list[str]:
    return [
        entry[0]["expression"]
        for widget in widgets
        for entry in widget.get("properties", {}).get("metrics", [])
        if isinstance(entry[0], dict)
    ]


def dashboard_metrics() -> set[str]:
    """What the dashboards of all deployments draw (ClusterTagsInvalid: with many clusters only)."""
    return {
        name
        for parameters, _ in SHAPES.values()
        for w in dashboard_widgets(parameters=parameters)
        for ns, name in widget_metric_names(w)
        if ns == NAMESPACE
    }


def alarms() -> dict[str, dict[str, Any]]:
    """The alarms of a single-cluster deployment (the tests below); test_alarms_of_many_clusters: the other."""
    resources = load_template()["Resources"]
    return {
        k: single_cluster_form(v["Properties"]) for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"
    }


def many_cluster_form(value: Any, cross_account: bool) -> Any:
    """``value`` as a deployment of many clusters gets it (MoreClusters; CrossAccount as given)."""
    if isinstance(value, list):
        return [many_cluster_form(v, cross_account) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::If"} and value["Fn::If"][0] in {"MoreClusters", "CrossAccount"}:
        holds = cross_account if value["Fn::If"][0] == "CrossAccount" else True
        return many_cluster_form(value["Fn::If"][1 if holds else 2], cross_account)
    out = {k: many_cluster_form(v, cross_account) for k, v in value.items()}
    return {k: v for k, v in out.items() if v != {"Ref": "AWS::NoValue"}}


@pytest.mark.parametrize("cross_account", [False, True])
def test_alarms_of_many_clusters_query_every_cluster_with_the_code_s_dimension_set(cross_account: bool) -> None:
    """A deployment of many clusters: each alarm over ServerlessNTH is one Metrics Insights query
    (an alarm cannot use SEARCH) over the exact dimension set the code emits there, so that it
    watches every cluster, the ones Clusters=* finds included; the other alarms are unchanged."""
    resources = load_template()["Resources"]
    schema = ", ".join(sorted((*EVENT_DIMENSIONS, *([ACCOUNT_DIMENSION] if cross_account else []))))
    shape = SHAPES["an organization" if cross_account else "every cluster"][0]
    drawn = {n for w in dashboard_widgets(parameters=shape) for _, n in widget_metric_names(w)}
    queried = set()
    for name, resource in resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        single, many = (
            single_cluster_form(resource["Properties"]),
            many_cluster_form(resource["Properties"], cross_account),
        )
        if NAMESPACE not in json.dumps(single):
            assert many == single, name
            continue
        assert not {"Namespace", "MetricName", "Dimensions", "Statistic"} & set(many), name
        (query,) = many["Metrics"]
        insights = r"SELECT SUM\((\w+)\) FROM SCHEMA\(ServerlessNTH, ([a-z_, ]+)\) WHERE .+"
        match = re.fullmatch(insights, query["Expression"])
        assert match, query["Expression"]
        assert match.group(1) in CODE_METRICS, name
        assert match.group(1) in drawn, name
        assert match.group(2) == schema, name
        assert query["Period"] == 60
        assert query.get("ReturnData", True)
        queried.add(match.group(1))
    assert queried == {Metric.DRAINS_INCOMPLETE, Metric.LIFECYCLE_ACTIONS_LOST}


def alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, {dimension: the resource it names, or its literal value}) of an alarm's metrics."""
    found = []
    stats = [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
    if "MetricName" in alarm:
        stats.append(alarm)
    for m in stats:
        dims = {}
        for d in m.get("Dimensions", []):
            value = d["Value"]
            if isinstance(value, dict) and "Ref" in value:
                value = value["Ref"]
            elif isinstance(value, dict) and "Fn::GetAtt" in value:
                value = value["Fn::GetAtt"][0]
            dims[d["Name"]] = value
        found.append((m["Namespace"], m["MetricName"], dims))
    assert found, "an alarm without a metric"
    return found


def test_every_declared_metric_is_emitted_by_the_code() -> None:
    declared = {v for k, v in vars(Metric).items() if k.isupper()} | {COLD_START}
    assert declared == CODE_METRICS, f"declared, never emitted: {declared - CODE_METRICS}"


def test_namespace_is_the_same() -> None:
    assert CODE_NAMESPACE == NAMESPACE


def test_every_dashboard_metric_is_emitted_by_the_code() -> None:
    assert dashboard_metrics() - CODE_METRICS == set()


def test_every_emitted_metric_is_on_the_dashboard() -> None:
    assert CODE_METRICS - dashboard_metrics() == set()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_search_expressions_use_the_dimension_sets_the_code_emits(shape: str) -> None:
    """Each SEARCH names the exact set of dimensions its metric carries in that deployment (with
    `account` in a multi-account one) and the deployment's clusters: a SEARCH matches only the
    metrics of its schema, so one dimension more or less and the widget is empty."""
    parameters, cluster_filter = SHAPES[shape]
    extra = {ACCOUNT_DIMENSION} if shape in CROSS_ACCOUNT else set()
    schemas = {
        Metric.ERRORS: frozenset(ERROR_DIMENSIONS) | extra,
        Metric.CLUSTER_TAGS_INVALID: frozenset(TAGS_DIMENSIONS) | extra,
        COLD_START: frozenset(COLD_START_DIMENSIONS),
    }
    found = searches(dashboard_widgets(parameters=parameters))
    assert found
    for expression in found:
        match = re.fullmatch(
            r"SEARCH\('\{" + NAMESPACE + r",([a-z_,]+)\} MetricName=\"(\w+)\"( .*)?', '\w+', 60\)", expression
        )
        assert match, expression
        schema, name, terms = match.group(1), match.group(2), (match.group(3) or "").strip()
        assert frozenset(schema.split(",")) == schemas.get(name, frozenset(EVENT_DIMENSIONS) | extra), expression
        assert schema.split(",") == sorted(schema.split(",")), expression
        assert terms == ("" if name == COLD_START else cluster_filter), expression


def test_the_cluster_tags_widget_is_on_the_dashboard_of_many_clusters_only() -> None:
    """ClusterTagsInvalid comes from a cluster's tags, which only a deployment of many clusters reads."""
    for shape, (parameters, _) in SHAPES.items():
        names = {n for w in dashboard_widgets(parameters=parameters) for _, n in widget_metric_names(w)}
        assert (Metric.CLUSTER_TAGS_INVALID in names) == (shape != "single cluster"), shape


def test_a_single_cluster_deployment_s_dashboard_and_alarms_are_as_before() -> None:
    """With the new parameters empty, the dashboard body (with and without the long drains) and the
    alarms over ServerlessNTH are, character for character, those of the stack before issue 21
    (tests/unit/golden/single_cluster_dashboard.json, written from main at 22db4c7)."""
    golden = json.loads((Path(__file__).parent / "golden" / "single_cluster_dashboard.json").read_text())
    template = load_template()
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    for long_drains, key in ((True, "long_drains"), (False, "no_long_drains")):
        assert dashboard_text(body, long_drains=long_drains) == golden["DashboardBody"][key], key
    for name, properties in golden["Alarms"].items():
        assert single_cluster_form(template["Resources"][name]["Properties"]) == properties, name


def test_every_aws_metric_on_the_dashboard_is_emitted_by_a_resource_of_the_template() -> None:
    template = load_template()
    checked = 0
    for widget in dashboard_widgets():
        for entry in widget.get("properties", {}).get("metrics", []):
            if isinstance(entry[0], dict):
                continue  # SEARCH expressions over ServerlessNTH: the tests above
            namespace, name, *rest = [e for e in entry if not isinstance(e, dict)]
            dims = {}
            for dim, value in zip(rest[0::2], rest[1::2], strict=True):
                match = re.fullmatch(r"\$\{(\w+)(?:\.\w+)?\}", value)
                assert match, f"{namespace}/{name}: {dim} {value} names no resource of the template"
                dims[dim] = match.group(1)
            check_aws_metric(namespace, name, dims, template)
            checked += 1
    assert checked


def test_every_alarm_names_a_metric_that_the_code_or_a_resource_emits() -> None:
    template = load_template()
    for alarm_name, alarm in alarms().items():
        for namespace, name, dims in alarm_metrics(alarm):
            if namespace == NAMESPACE:
                assert name in CODE_METRICS, f"{alarm_name}: the code emits no {name}"
                assert tuple(sorted(dims)) in {EVENT_DIMENSIONS, ERROR_DIMENSIONS}, f"{alarm_name}: {dims}"
            else:
                check_aws_metric(namespace, name, dims, template)


def test_alarms_cover_every_path_where_an_event_is_lost_delayed_or_left_unfinished() -> None:
    covered = {(ns, name) for alarm in alarms().values() for ns, name, _ in alarm_metrics(alarm)}
    assert covered >= {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),  # both queues
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/Lambda", "AsyncEventsDropped"),
        ("AWS/Lambda", "DestinationDeliveryFailures"),
        ("AWS/Lambda", "DeadLetterErrors"),  # the durable functions' on-failure queue
        ("AWS/Events", "FailedInvocations"),
        ("AWS/Events", "InvocationsFailedToBeSentToDlq"),
        (NAMESPACE, Metric.DRAINS_INCOMPLETE),
    }
    template = load_template()
    functions, rules = resources_of("AWS::Serverless::Function", template), resources_of("EventBridgeRule", template)
    # failed events leave through a destination (EventInvokeConfig) or, for durable functions, which
    # take no destinations, through a dead-letter queue: an alarm over either covers all its functions
    resources = template["Resources"]
    by_path = {
        "DestinationDeliveryFailures": {f for f in functions if "EventInvokeConfig" in resources[f]["Properties"]},
        "DeadLetterErrors": {f for f in functions if "DeadLetterQueue" in resources[f]["Properties"]},
    }
    assert by_path["DestinationDeliveryFailures"] | by_path["DeadLetterErrors"] == functions
    # the alarms over one metric of functions or rules, taken together, cover all of them (the long
    # drains' own alarms exist only with LongDrains=true, as their functions and rules do)
    named_by_metric: dict[str, set[str]] = {}
    for alarm in alarms().values():
        metrics = alarm_metrics(alarm)
        named = {next(iter(d.values())) for ns, _, d in metrics if ns in {"AWS/Lambda", "AWS/Events"}}
        if named:
            named_by_metric.setdefault(metrics[0][1], set()).update(named)
    assert named_by_metric
    for metric, named in named_by_metric.items():
        expected = by_path.get(metric)
        assert named in ((expected,) if expected else (functions, rules)), f"alarms over {metric} cover {named} only"


def test_every_alarm_is_on_the_dashboard_beside_its_metrics() -> None:
    widgets = dashboard_widgets()
    on_board = {a for w in widgets if w["type"] == "alarm" for a in w["properties"]["alarms"]}
    assert on_board == {f"${{{name}.Arn}}" for name in alarms()}
    drawn = {n for w in widgets for n in widget_metric_names(w)}
    for alarm_name, alarm in alarms().items():
        for namespace, name, _ in alarm_metrics(alarm):
            assert (namespace, name) in drawn, f"{alarm_name}: {namespace}/{name} is on no widget"


def test_incomplete_drains_alarm_uses_the_dimensions_the_code_emits() -> None:
    incomplete = alarms()["DrainsIncompleteAlarm"]["Metrics"]
    stats = [m["MetricStat"]["Metric"] for m in incomplete if "MetricStat" in m]
    assert {m["MetricName"] for m in stats} == {Metric.DRAINS_INCOMPLETE}
    assert all({d["Name"] for d in m["Dimensions"]} == set(EVENT_DIMENSIONS) for m in stats)


def test_dashboard_name_includes_the_region() -> None:
    """Dashboards are global: the same stack in two regions would otherwise write one dashboard."""
    name = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardName"]
    assert "${AWS::Region}" in name["Fn::Sub"]


def test_without_long_drains_the_dashboard_names_only_resources_that_exist() -> None:
    """With LongDrains=false the durable functions, the starter, their rules and alarms are not
    created: the dashboard may name none of them (CloudFormation would refuse the stack)."""
    resources = load_template()["Resources"]
    conditional = {name for name, r in resources.items() if r.get("Condition") == "LongDrains"}
    conditional |= {
        f"LongDrainStartFunction{event}" for event in resources["LongDrainStartFunction"]["Properties"]["Events"]
    }
    body = json.dumps(dashboard_widgets(long_drains=False))
    named = set(re.findall(r"\$\{(\w+)(?:\.\w+)?\}", body))
    assert named
    assert not named & conditional, named & conditional
    assert len(dashboard_widgets(long_drains=True)) > len(dashboard_widgets(long_drains=False))
