"""Every `sam deploy` reaches what the EventBridge rules invoke.

For each kind of change (handler code, each layer's content, memory, timeout, architecture, every
template parameter), the baseline and the changed sources are built with `sam build`, packaged and
transformed as `sam deploy` and CloudFormation do (conftest.py), and each rule's target is followed
to what it invokes. After the update, that must run exactly the configuration the new template
gives its function; and the same when deploying back."""

from __future__ import annotations

import pytest

from tests.deploy.cfn import Stack, changed_keys, running_after_update
from tests.deploy.changes import Change, changes

CHANGES = changes()


def _stale(before: Stack, after: Stack) -> list[str]:
    problems = []
    for rule in after.rules():
        for arn in after.rule_targets(rule):
            target = after.follow(arn)
            wanted = after.function_config(target.function)
            running = running_after_update(before, after, target)
            if running != wanted:
                problems.append(
                    f"rule {rule} invokes {target.describe()}, which still runs the previous deploy's "
                    f"{', '.join(changed_keys(running, wanted))}"
                )
    return problems


@pytest.mark.parametrize("change", CHANGES, ids=[c.name for c in CHANGES])
def test_the_next_deploy_reaches_what_the_rules_invoke(deploys: dict[str, Stack], change: Change) -> None:
    baseline, changed = deploys["baseline"], deploys[change.name]
    problems = [f"deploying it: {p}" for p in _stale(baseline, changed)]
    problems += [f"deploying back: {p}" for p in _stale(changed, baseline)]
    assert not problems, f"{change.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("change", [c for c in CHANGES if c.alters_functions], ids=lambda c: c.name)
def test_each_change_alters_a_function_so_the_test_above_proves_something(
    deploys: dict[str, Stack], change: Change
) -> None:
    baseline, changed = deploys["baseline"], deploys[change.name]
    functions = baseline.of_type("AWS::Lambda::Function")
    assert set(functions) == set(changed.of_type("AWS::Lambda::Function"))
    altered = [f for f in functions if baseline.function_config(f) != changed.function_config(f)]
    assert altered, f"{change.name} changed no function's configuration"


def test_every_rule_invokes_one_of_the_stacks_functions(deploys: dict[str, Stack]) -> None:
    stack = deploys["baseline"]
    rules = stack.rules()
    assert len(rules) == len(stack.of_type("AWS::Lambda::Function"))
    invoked = {stack.follow(arn).function for rule in rules for arn in stack.rule_targets(rule)}
    assert invoked == set(stack.of_type("AWS::Lambda::Function"))
