"""member/template.yaml, the stack each member account deploys (a StackSet across an organization;
docs/multi-cluster.md): it lints clean, forwards exactly what the central rules match to the central
account's default bus with a role, and its role grants the central code's EC2, Auto Scaling and EKS
calls, no more.

The central side is the baseline deploy of tests/deploy (template.yaml after `sam build` and the SAM
transform); the member template is plain CloudFormation, read as is."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
from botocore.session import get_session

from localeks.cluster import REPO
from localeks.template import load_template
from serverless_nth.aws.clients import AWS_SERVICES
from tests.deploy.cfn import Stack

MEMBER = REPO / "member" / "template.yaml"
CFN_LINT = REPO / ".venv-sam" / "bin" / "cfn-lint"
CENTRAL_ACCOUNT = "210987654321"
CENTRAL_ROLE = f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/serverless-nth-FunctionRole-ABCDEF123456"
MEMBER_PARAMETERS = {"CentralAccountId": CENTRAL_ACCOUNT, "CentralFunctionRoleArn": CENTRAL_ROLE}
CENTRAL_BUS = f"arn:aws:events:us-east-1:{CENTRAL_ACCOUNT}:event-bus/default"
# the modules of the core that call EC2, EKS and Auto Scaling (module name = IAM service prefix)
CALLERS = ("ec2", "eks", "autoscaling")
CORE_AWS = REPO / "layers" / "core" / "python" / "serverless_nth" / "aws"


def _member(**parameters: str) -> Stack:
    if not MEMBER.exists():
        raise AssertionError(f"{MEMBER.relative_to(REPO)} is missing")
    return Stack(load_template(MEMBER), MEMBER_PARAMETERS | parameters)


def _patterns(stack: Stack) -> list[str]:
    """Each rule's resolved pattern without its account filter, as sorted JSON text."""
    found = []
    for rule in stack.rules().values():
        pattern = stack.resolve(rule["Properties"]["EventPattern"])
        pattern.pop("account", None)
        found.append(json.dumps(pattern, sort_keys=True))
    return sorted(found)


def _central_hook(central: Stack) -> str:
    (hook,) = {
        name
        for rule in central.rules().values()
        for name in central.resolve(rule["Properties"]["EventPattern"]).get("detail", {}).get("LifecycleHookName", [])
    }
    return str(hook)


def _statements(stack: Stack, role: str) -> list[dict[str, Any]]:
    props = stack.resolve(stack.resources[role]["Properties"])
    found = [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for policy in stack.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            found += stack.resolve(policy["Properties"]["PolicyDocument"])["Statement"]
    return found


def _listed(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    """The EC2, EKS and Auto Scaling actions the statements grant."""
    return {a for s in statements for a in _listed(s) if a.split(":")[0] in CALLERS}


def _code_calls() -> set[str]:
    """service:Operation for every EC2, EKS and Auto Scaling call in serverless_nth/aws/, checked
    against botocore's models, plus the operations AWS_SERVICES lists."""
    session = get_session()
    calls = set()
    for service in CALLERS:
        operations = set(session.get_service_model(service).operation_names)
        text = (CORE_AWS / f"{service}.py").read_text()
        for method in set(re.findall(r"self\._(?:client|eks)\.([a-z][a-z_]+)", text)) - {"meta"}:
            operation = "".join(part.capitalize() for part in method.split("_"))
            assert operation in operations, f"{service}.py calls {method}, which is no {service} operation"
            calls.add(f"{service}:{operation}")
        calls |= {f"{service}:{op}" for op in AWS_SERVICES.get(service) or ()}
    return calls


def test_the_member_template_lints_clean() -> None:
    if not CFN_LINT.exists():
        pytest.fail(f"{CFN_LINT} is missing: run `make venv` first")
    done = subprocess.run(
        [str(CFN_LINT), "--regions", "us-east-1", "--", str(MEMBER)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stdout.strip(), done.stdout


def test_it_forwards_exactly_what_the_central_rules_match(deploys: dict[str, Stack]) -> None:
    central = deploys["baseline"]  # every rule, long drains included
    member = _member(LifecycleHookName=_central_hook(central))
    assert _patterns(member) == _patterns(central)
    for name, rule in member.rules().items():
        assert member.resolve(rule["Properties"]["EventPattern"])["account"] == ["123456789012"], name


def test_without_a_hook_name_it_forwards_every_terminate_lifecycle_action(deploys: dict[str, Stack]) -> None:
    """The central rule keeps only its own hook's; the member, not knowing the central cluster's
    name, forwards them all unless told the hook name."""
    central = _patterns(deploys["baseline"])
    widened = []
    for text in central:
        pattern = json.loads(text)
        if "LifecycleHookName" in pattern.get("detail", {}):
            del pattern["detail"]["LifecycleHookName"]
            if not pattern["detail"]:
                del pattern["detail"]
        widened.append(json.dumps(pattern, sort_keys=True))
    assert _patterns(_member()) == sorted(widened)


def test_each_rule_sends_to_the_central_bus_with_a_role_that_may_only_put_events_there() -> None:
    member = _member()
    roles = set()
    for name, rule in member.rules().items():
        (target,) = member.resolve(rule["Properties"]["Targets"])
        assert target["Arn"] == CENTRAL_BUS, name
        # needed when the central bus admits the member through the organization (PutTargets)
        assert isinstance(target.get("RoleArn"), dict), f"{name}: no RoleArn"
        roles.add(target["RoleArn"]["Fn::GetAtt"][0])
    (role,) = roles
    trust = member.resolve(member.resources[role]["Properties"]["AssumeRolePolicyDocument"])["Statement"]
    assert [(s["Principal"], s["Action"]) for s in trust] == [({"Service": "events.amazonaws.com"}, "sts:AssumeRole")]
    statements = _statements(member, role)
    assert [(s["Action"], s["Resource"]) for s in statements] == [("events:PutEvents", CENTRAL_BUS)]


def test_the_member_role_grants_the_central_code_s_calls_and_no_more(deploys: dict[str, Stack]) -> None:
    member = _member()
    roles = [k for k, v in member.of_type("AWS::IAM::Role").items() if "RoleName" in v["Properties"]]
    assert len(roles) == 1, roles
    role = roles[0]
    props = member.resolve(member.resources[role]["Properties"])
    assert props["RoleName"] == "serverless-nth-member"
    assert [(s["Principal"], s["Action"]) for s in props["AssumeRolePolicyDocument"]["Statement"]] == [
        ({"AWS": CENTRAL_ROLE}, "sts:AssumeRole")
    ]
    granted = _actions(_statements(member, role))
    calls = _code_calls()
    assert calls <= granted, f"the central code calls {sorted(calls - granted)}, which the member role does not grant"
    # what the central role grants itself for the same services, with every option on
    central = _actions(_statements(deploys["baseline"], "FunctionRole"))
    central |= _actions(_statements(deploys["parameter Clusters"], "FunctionRole"))
    assert granted == central, f"member only: {sorted(granted - central)}; central only: {sorted(central - granted)}"
    # nothing beyond EC2, EKS and Auto Scaling
    every = {a for s in _statements(member, role) for a in _listed(s)}
    assert every == granted, sorted(every - granted)


def test_the_access_entry_lets_the_central_role_in_as_the_central_stack_s_own_does(deploys: dict[str, Stack]) -> None:
    assert not _member().of_type("AWS::EKS::AccessEntry"), "no ClusterName: no access entry"
    assert not _member(ClusterName="team-a", CreateAccessEntry="false").of_type("AWS::EKS::AccessEntry")
    member = _member(ClusterName="team-a")
    (entry,) = (member.resolve(e["Properties"]) for e in member.of_type("AWS::EKS::AccessEntry").values())
    central = deploys["baseline"].resolve(deploys["baseline"].resources["FunctionAccessEntry"]["Properties"])
    assert entry["ClusterName"] == "team-a"
    assert entry["PrincipalArn"] == CENTRAL_ROLE
    assert entry["Type"] == "STANDARD"
    assert (entry["KubernetesGroups"], entry["Username"]) == (central["KubernetesGroups"], central["Username"])
    assert "AccessPolicies" not in entry


def test_the_docs_give_the_stackset_and_access_entry_commands() -> None:
    text = (REPO / "docs" / "multi-cluster.md").read_text()
    for needed in ("create-stack-set", "create-stack-instances", "create-access-entry", "k8s/rbac.yaml", MEMBER.name):
        assert needed in text, needed
