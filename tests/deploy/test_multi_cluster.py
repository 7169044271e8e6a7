"""Many clusters and accounts (issue 21, docs/multi-cluster.md), as CloudFormation receives the stack
after the SAM transform: what each new parameter does, and that with the new parameters empty the
stack is the single-cluster one.

The deploys are those of tests/deploy/changes.py: one per parameter, with the value ALTERNATIVES
gives it (Clusters=*, two member accounts, an organization, another member role name)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from localeks.dashboard import NAMESPACE
from tests.deploy.cfn import PSEUDO, Stack
from tests.deploy.changes import BASE_PARAMETERS

GOLDEN = Path(__file__).parents[1] / "unit" / "golden" / "single_cluster_dashboard.json"

ACCOUNT = PSEUDO["AWS::AccountId"]
DEFAULT_BUS = f"arn:aws:events:{PSEUDO['AWS::Region']}:{ACCOUNT}:event-bus/default"
# parameter -> the environment variable every function reads it from (the core's contract)
ENVIRONMENT = {
    "Clusters": "CLUSTERS",
    "MemberAccounts": "MEMBER_ACCOUNTS",
    "OrganizationId": "ORGANIZATION_ID",
    "MemberRoleName": "MEMBER_ROLE_NAME",
}
# deploy -> the resources it adds to the baseline's
ADDED = {
    "parameter Clusters": {"MultiClusterPolicy"},
    "parameter MemberAccounts": {"MultiClusterPolicy", "MemberAccountsEventBusPolicy"},
    "parameter OrganizationId": {"MultiClusterPolicy", "OrganizationEventBusPolicy"},
    "parameter MemberRoleName": set(),  # the role's name is used only with member accounts
}


def _deploy(deploys: dict[str, Stack], name: str) -> Stack:
    if name not in deploys:
        raise AssertionError(f"no deploy {name!r}: template.yaml lacks the parameter")
    return deploys[name]


def _resolved(stack: Stack) -> dict[str, Any]:
    return {k: stack.resolve(v) for k, v in stack.resources.items()}


def _without_the_feature(resources: dict[str, Any]) -> dict[str, Any]:
    """The resources less what the new parameters may change in the baseline's: the four
    environment variables of each function, the account filter of each rule, the dashboard's body
    and the metrics of the alarms over ServerlessNTH (test_the_dashboard_and_alarms_of_each_deploy)."""
    out: dict[str, Any] = json.loads(json.dumps(resources))
    for resource in out.values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::Function":
            for name in ENVIRONMENT.values():
                props["Environment"]["Variables"].pop(name)
        if resource["Type"] == "AWS::Events::Rule":
            props["EventPattern"].pop("account", None)
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            props.pop("DashboardBody")
        if resource["Type"] == "AWS::CloudWatch::Alarm" and NAMESPACE in json.dumps(props):
            for key in ("Namespace", "MetricName", "Dimensions", "Statistic", "Period", "Metrics"):
                props.pop(key, None)
    return out


def _role_statements(stack: Stack, role: str = "FunctionRole") -> list[dict[str, Any]]:
    """Every statement that grants the role something: its inline policies and the AWS::IAM::Policy
    resources attached to it, resolved."""
    found = []
    props = stack.resolve(stack.resources[role]["Properties"])
    for policy in props.get("Policies", []):
        found += policy["PolicyDocument"]["Statement"]
    for policy in stack.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            found += stack.resolve(policy["Properties"]["PolicyDocument"])["Statement"]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _granting(stack: Stack, action: str) -> list[dict[str, Any]]:
    return [s for s in _role_statements(stack) if action in _actions(s)]


def _accounts(stack: Stack) -> dict[str, Any]:
    """rule -> its resolved account filter (None: no filter)."""
    return {rule: stack.resolve(r["Properties"]["EventPattern"]).get("account") for rule, r in stack.rules().items()}


def test_with_the_new_parameters_empty_the_stack_is_the_single_cluster_one(deploys: dict[str, Stack]) -> None:
    """A single-cluster user reads nothing new: each multi-cluster deploy differs from the baseline
    (all new parameters empty) only by the resources it adds, the functions' four variables and the
    rules' account filter; in the baseline those are this account only and empty values."""
    base = deploys["baseline"]
    for name, added in ADDED.items():
        multi = _deploy(deploys, name)
        assert set(multi.resources) - set(base.resources) == added, name
        missing = set(base.resources) - set(multi.resources)
        assert not missing, f"{name} removes {missing}"
        kept = {k: v for k, v in _resolved(multi).items() if k not in added}
        assert _without_the_feature(kept) == _without_the_feature(_resolved(base)), f"{name} changes more"
    # and in the baseline, what the feature may change is the single-cluster stack's
    assert all(accounts == [ACCOUNT] for accounts in _accounts(base).values()), _accounts(base)
    assert not base.of_type("AWS::Events::EventBusPolicy")
    assert not _granting(base, "sts:AssumeRole")
    assert not _granting(base, "eks:ListClusters")
    (describe,) = _granting(base, "eks:DescribeCluster")
    assert describe["Resource"] == f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/my-cluster"
    for function in base.of_type("AWS::Lambda::Function"):
        variables = base.function_config(function)["Environment"]["Variables"]
        assert {v: variables[v] for v in ENVIRONMENT.values()} == {
            "CLUSTERS": "",
            "MEMBER_ACCOUNTS": "",
            "ORGANIZATION_ID": "",
            "MEMBER_ROLE_NAME": "serverless-nth-member",
        }, function


@pytest.mark.parametrize("parameter", list(ENVIRONMENT))
def test_every_function_reads_each_new_parameter(deploys: dict[str, Stack], parameter: str) -> None:
    stack = _deploy(deploys, f"parameter {parameter}")
    for function in stack.of_type("AWS::Lambda::Function"):
        variables = stack.function_config(function)["Environment"]["Variables"]
        assert variables[ENVIRONMENT[parameter]] == stack.params[parameter], function


def test_member_accounts_join_every_rule_the_bus_policy_and_the_role_to_assume(deploys: dict[str, Stack]) -> None:
    stack = _deploy(deploys, "parameter MemberAccounts")
    members = stack.params["MemberAccounts"].split(",")
    accounts = _accounts(stack)
    assert accounts
    assert all(a == [ACCOUNT, *members] for a in accounts.values()), accounts
    (policy,) = (stack.resolve(p["Properties"]) for p in stack.of_type("AWS::Events::EventBusPolicy").values())
    assert policy["EventBusName"] == "default"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", policy["StatementId"]), policy["StatementId"]
    assert policy["Statement"] == {
        "Effect": "Allow",
        "Principal": {"AWS": members},
        "Action": "events:PutEvents",
        "Resource": DEFAULT_BUS,
    }
    (assume,) = _granting(stack, "sts:AssumeRole")
    assert assume["Resource"] == "arn:aws:iam::*:role/serverless-nth-member"
    assert assume["Condition"] == {"StringEquals": {"aws:ResourceAccount": members}}


def test_with_an_organization_the_rules_take_any_sender_the_bus_policy_admits(deploys: dict[str, Stack]) -> None:
    stack = _deploy(deploys, "parameter OrganizationId")
    org = stack.params["OrganizationId"]
    accounts = _accounts(stack)
    assert accounts
    assert all(a is None for a in accounts.values()), accounts
    (policy,) = (stack.resolve(p["Properties"]) for p in stack.of_type("AWS::Events::EventBusPolicy").values())
    assert policy["EventBusName"] == "default"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", policy["StatementId"]), policy["StatementId"]
    assert policy["Statement"] == {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "events:PutEvents",
        "Resource": DEFAULT_BUS,
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": org}},
    }
    (assume,) = _granting(stack, "sts:AssumeRole")
    assert assume["Resource"] == "arn:aws:iam::*:role/serverless-nth-member"
    assert assume["Condition"] == {"StringEquals": {"aws:ResourceOrgID": org}}


def test_more_clusters_of_this_account_need_no_bus_policy_and_no_other_role(deploys: dict[str, Stack]) -> None:
    stack = _deploy(deploys, "parameter Clusters")
    assert all(a == [ACCOUNT] for a in _accounts(stack).values())
    assert not stack.of_type("AWS::Events::EventBusPolicy")
    assert not _granting(stack, "sts:AssumeRole")
    (listing,) = _granting(stack, "eks:ListClusters")
    assert listing["Resource"] == "*"  # ListClusters takes no resource-level permission
    describe = sorted(s["Resource"] for s in _granting(stack, "eks:DescribeCluster"))
    region = f"arn:aws:eks:us-east-1:{ACCOUNT}"
    assert describe == [f"{region}:cluster/*", f"{region}:cluster/my-cluster"]


def test_member_accounts_and_an_organization_together(deploys: dict[str, Stack]) -> None:
    """Both at once, with another member role name: the same translated template (SAM passes these
    parameters through untouched) deployed with the three values."""
    base = deploys["baseline"]
    _deploy(deploys, "parameter OrganizationId")
    both = Stack(
        base.template,
        BASE_PARAMETERS
        | {"MemberAccounts": "111111111111", "OrganizationId": "o-a1b2c3d4e5", "MemberRoleName": "nth-member"},
    )
    assert all(a is None for a in _accounts(both).values()), "the organization's bus policy restricts the senders"
    assert set(both.of_type("AWS::Events::EventBusPolicy")) == {
        "MemberAccountsEventBusPolicy",
        "OrganizationEventBusPolicy",
    }
    ids = [both.resolve(p["Properties"]["StatementId"]) for p in both.of_type("AWS::Events::EventBusPolicy").values()]
    assert len(set(ids)) == 2, ids
    assume = _granting(both, "sts:AssumeRole")
    assert [(s["Resource"], s["Condition"]) for s in assume] == [
        ("arn:aws:iam::*:role/nth-member", {"StringEquals": {"aws:ResourceAccount": ["111111111111"]}}),
        ("arn:aws:iam::*:role/nth-member", {"StringEquals": {"aws:ResourceOrgID": "o-a1b2c3d4e5"}}),
    ]
    for function in both.of_type("AWS::Lambda::Function"):
        assert both.function_config(function)["Environment"]["Variables"]["MEMBER_ROLE_NAME"] == "nth-member"


def test_the_long_drain_starter_s_role_does_not_change(deploys: dict[str, Stack]) -> None:
    """It only publishes and starts the durable functions: no EC2, EKS or STS call, so no member role."""
    base = deploys["baseline"]
    for name in ADDED:
        stack = _deploy(deploys, name)
        role = stack.resolve(stack.resources["LongDrainStartRole"])
        assert role == base.resolve(base.resources["LongDrainStartRole"]), name
    actions = {a for s in _role_statements(base, "LongDrainStartRole") for a in _actions(s)}
    assert not {a for a in actions if a.split(":")[0] in {"ec2", "eks", "sts", "autoscaling"}}, actions


def test_the_function_role_is_an_output_for_the_member_stacks(deploys: dict[str, Stack]) -> None:
    assert deploys["baseline"].outputs["FunctionRoleArn"]["Value"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}


def _searches(stack: Stack) -> list[str]:
    """The body's SEARCH expressions, read from its text (its references to resources stay
    symbolic in the resolved text, which is then not JSON)."""
    body = stack.resolve(stack.resources["Dashboard"]["Properties"]["DashboardBody"])
    found = re.findall(r'"expression": "(SEARCH\(.*?\))",?\n', body)
    assert found, body[:2000]
    return [json.loads(f'"{expression}"') for expression in found]


def _namespace_alarms(stack: Stack) -> dict[str, Any]:
    return {
        name: stack.resolve(alarm["Properties"])
        for name, alarm in stack.of_type("AWS::CloudWatch::Alarm").items()
        if NAMESPACE in json.dumps(alarm["Properties"])
    }


def test_a_single_cluster_deploy_s_dashboard_and_alarms_are_as_before(deploys: dict[str, Stack]) -> None:
    """The translated template with the new parameters empty: the dashboard's body and the alarms
    over ServerlessNTH are those of the stack before issue 21 (the golden, from main at 22db4c7,
    resolved as this deploy resolves it)."""
    base = deploys["baseline"]
    golden = json.loads(GOLDEN.read_text())
    body = base.resolve(base.resources["Dashboard"]["Properties"]["DashboardBody"])
    assert body == base.resolve({"Fn::Sub": golden["DashboardBody"]["long_drains"]})
    alarms = _namespace_alarms(base)
    assert set(alarms) == set(golden["Alarms"])
    for name, properties in golden["Alarms"].items():
        assert alarms[name] == base.resolve(properties), name
    assert all('cluster="my-cluster"' in search for search in _searches(base) if "ColdStart" not in search)


@pytest.mark.parametrize(
    ("deploy", "parameters", "schema_has_account", "cluster_filter"),
    [
        ("parameter Clusters", {}, False, ""),  # Clusters=*: every cluster of the accounts
        ("parameter MemberAccounts", {}, True, 'cluster="my-cluster"'),
        ("parameter OrganizationId", {}, True, 'cluster="my-cluster"'),
        ("baseline", {"Clusters": "b,c"}, False, '(cluster="my-cluster" OR cluster="b" OR cluster="c")'),
        ("baseline", {"Clusters": "*", "OrganizationId": "o-a1b2c3d4e5"}, True, ""),
    ],
)
def test_the_dashboard_and_alarms_of_each_deploy_see_every_served_cluster(
    deploys: dict[str, Stack],
    deploy: str,
    parameters: dict[str, str],
    schema_has_account: bool,
    cluster_filter: str,
) -> None:
    """Each SEARCH names the dimension set the code emits in that deployment (``account`` with
    member accounts or an organization) and its clusters; the alarms over ServerlessNTH are a
    Metrics Insights query each, over every cluster."""
    stack = _deploy(deploys, deploy)
    if parameters:
        stack = Stack(stack.template, BASE_PARAMETERS | parameters)
    account = "account," if schema_has_account else ""
    searches = _searches(stack)
    assert any("ClusterTagsInvalid" in s for s in searches)
    for search in searches:
        if "ColdStart" in search:
            continue
        match = re.fullmatch(r"SEARCH\('\{ServerlessNTH,([a-z_,]+)\} MetricName=\"(\w+)\" ?(.*)', '\w+', 60\)", search)
        assert match, search
        expected = {"Errors": "cluster,service,stage", "ClusterTagsInvalid": "cluster,service"}.get(
            match.group(2), "cluster,event_kind,outcome,service"
        )
        assert match.group(1) == account + expected, search
        assert match.group(3) == cluster_filter, search
    alarms = _namespace_alarms(stack)
    assert set(alarms) == {"DrainsIncompleteAlarm", "LifecycleActionsLostAlarm"}
    for name, alarm in alarms.items():
        (query,) = alarm["Metrics"]
        schema = f"SCHEMA(ServerlessNTH, {account.replace(',', ', ')}cluster, event_kind, outcome, service)"
        assert schema in query["Expression"], name
        assert "MetricName" not in alarm, name
