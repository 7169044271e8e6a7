"""No wiring that Lambda or CloudFormation refuses, with long drains on and off.

Each rule is read from the API reference (the text ships in botocore's ``lambda/2015-03-31``
model, which the deps layer carries) or CloudFormation's resource reference, and quoted where it
is checked:

- AddPermission: "Lambda does not support adding policies to version $LATEST." A stack with such
  an ``AWS::Lambda::Permission`` fails at that resource and rolls back whole.
- AddPermission: "If you use a qualifier, the invoker must use the full Amazon Resource Name (ARN)
  of that version or alias to invoke the function." So a rule's permission names exactly the
  qualifier the rule's target names (an unqualified permission does not cover ``fn:1``, nor the
  reverse).
- Invoke, ``Qualifier``: "Specify a version or alias to invoke a published version of the
  function"; AWS's guide for durable functions: durable functions require qualified ARNs, and a
  qualified ``$LATEST`` cannot take the permission above. So nothing EventBridge invokes is a
  durable function: the rules invoke ordinary functions only (the long-drain starter starts the
  durable executions with ``Invoke(Qualifier=<published version>)``, docs/deploy.md).
- AWS::Lambda::EventInvokeConfig, ``Qualifier``: "Version - A version number. Alias - An alias
  name. Latest - To specify the unpublished version, use $LATEST." The async settings must be on
  the qualifier that is invoked: ``$LATEST`` for an unqualified target (what SAM generates), never
  ``$LATEST`` for a target invoked by version or alias.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.cfn import Stack

SETTINGS = {"long drains on": "baseline", "long drains off": "parameter LongDrains"}


def _permissions(stack: Stack) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in stack.of_type("AWS::Lambda::Permission").items()}


@pytest.fixture(params=list(SETTINGS), ids=list(SETTINGS))
def stack(request: pytest.FixtureRequest, deploys: dict[str, Stack]) -> Stack:
    name = SETTINGS[request.param]
    if name not in deploys:
        raise AssertionError(f"no deploy {name!r}: template.yaml has no parameter LongDrains")
    return deploys[name]


def test_no_permission_names_latest(stack: Stack) -> None:
    refused = {
        k: p["FunctionName"] for k, p in _permissions(stack).items() if stack.qualifier(p["FunctionName"]) == "$LATEST"
    }
    assert not refused, f"AddPermission: 'Lambda does not support adding policies to version $LATEST': {refused}"


def test_each_rule_target_has_a_permission_for_that_rule_on_the_same_qualifier(stack: Stack) -> None:
    for rule in stack.rules():
        for arn in stack.rule_targets(rule):
            granted = [p for p in _permissions(stack).values() if p.get("SourceArn") == {"Fn::GetAtt": [rule, "Arn"]}]
            qualifiers = [stack.qualifier(p["FunctionName"]) for p in granted]
            assert stack.qualifier(arn) in qualifiers, (
                f"{rule} invokes {arn} (qualifier {stack.qualifier(arn)!r}); its permissions name {qualifiers}: "
                "'the invoker must use the full ARN of that version or alias'"
            )
            assert any(stack.follow(p["FunctionName"]) == stack.follow(arn) for p in granted)


def test_rules_invoke_no_durable_function(stack: Stack) -> None:
    for rule in stack.rules():
        for arn in stack.rule_targets(rule):
            target = stack.follow(arn)
            function = stack.resources[target.function]["Properties"]
            assert "DurableConfig" not in function, (
                f"{rule} invokes the durable function {target.describe()}: it needs a qualified ARN, and "
                "$LATEST takes no permission"
            )


def test_async_settings_sit_on_the_invoked_qualifier(stack: Stack) -> None:
    for key, config in stack.of_type("AWS::Lambda::EventInvokeConfig").items():
        props = config["Properties"]
        function = props["FunctionName"]["Ref"]
        invoked = {
            stack.qualifier(arn) or "$LATEST"
            for _, arn in stack.invocations()
            if stack.follow(arn).function == function
        }
        assert invoked == {props["Qualifier"]}, f"{key}: async settings on {props['Qualifier']}, invoked as {invoked}"
