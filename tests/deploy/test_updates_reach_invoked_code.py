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


def test_every_function_is_invoked_by_a_rule_or_started_by_the_starter_a_rule_invokes(
    deploys: dict[str, Stack],
) -> None:
    """The durable functions are not behind a rule (tests/deploy/test_refused_wiring.py): the
    long-drain starter, which a rule invokes unqualified (so the test above covers it), names them
    in its environment and starts each execution on PublishVersion's answer, a version of the
    durable function's $LATEST at that moment (layers/core/.../long_drain_start.py; PublishVersion:
    "Lambda doesn't publish a version if the function's configuration and code haven't changed
    since the last version"; tests/integration/test_long_drain_start.py runs it against the local
    Lambda). So every change reaches a durable function at its next event too."""
    for name in ("baseline", "parameter LongDrains"):
        stack = deploys[name]
        functions = set(stack.of_type("AWS::Lambda::Function"))
        by_rules = {stack.follow(arn) for rule in stack.rules() for arn in stack.rule_targets(rule)}
        # the instance-status backstop's schedule (when on) invokes its function unqualified too
        invoked = {stack.follow(arn) for _, arn in stack.invocations()}
        assert all(t.version is None for t in invoked), f"{name}: a rule or schedule invokes a version: {invoked}"
        invoked_names = {t.function for t in invoked}
        # what the starters (rule-invoked) start; the backstop hands its events to a starter instead
        started = {
            started: starter for starter in {t.function for t in by_rules} for started in stack.started_by(starter)
        }
        assert invoked_names | set(started) == functions, (
            f"{name}: neither invoked nor started: {functions - invoked_names - set(started)}"
        )
        assert not invoked_names & set(started), f"{name}: invoked by a rule and started too"
        for durable in started:
            assert "DurableConfig" in stack.resources[durable]["Properties"], f"{name}: {durable} is not durable"
