"""The deployed stack, as CloudFormation receives it after the SAM transform: rule targets, their
permissions and async settings agree; nothing piles up; `sam delete` leaves nothing behind;
outputs name what EventBridge invokes; rules only take this account's events."""

from __future__ import annotations

from typing import Any

from tests.deploy.cfn import PSEUDO, Stack


def _targets(stack: Stack) -> list[tuple[str, Any]]:
    return [(rule, arn) for rule in stack.rules() for arn in stack.rule_targets(rule)]


def test_each_rule_may_invoke_exactly_what_it_targets(deploys: dict[str, Stack]) -> None:
    stack = deploys["baseline"]
    permissions = stack.of_type("AWS::Lambda::Permission")
    for rule, arn in _targets(stack):
        granted = [
            p["Properties"]
            for p in permissions.values()
            if p["Properties"].get("SourceArn") == {"Fn::GetAtt": [rule, "Arn"]}
        ]
        assert len(granted) == 1, f"{rule}: {len(granted)} permissions"
        assert granted[0]["Principal"] == "events.amazonaws.com"
        assert granted[0]["Action"] == "lambda:InvokeFunction"
        assert stack.follow(granted[0]["FunctionName"]) == stack.follow(arn), f"{rule}: permission on another target"


def test_retries_and_the_on_failure_queue_apply_to_what_the_rules_invoke(deploys: dict[str, Stack]) -> None:
    """An EventInvokeConfig on another qualifier than the one invoked would leave Lambda's defaults
    (2 retries, 6 hours, no destination) in force. A durable function takes no destinations: its
    failed events go to the function's dead-letter queue, the same on-failure queue."""
    stack = deploys["baseline"]
    configs = {
        (c["Properties"]["FunctionName"]["Ref"], c["Properties"]["Qualifier"]): c["Properties"]
        for c in stack.of_type("AWS::Lambda::EventInvokeConfig").values()
    }
    for rule, arn in _targets(stack):
        target = stack.follow(arn)
        function = stack.resources[target.function]["Properties"]
        if "DurableConfig" in function:
            queue = function.get("DeadLetterConfig", {}).get("TargetArn")
            assert queue == {"Fn::GetAtt": ["FailedInvocationQueue", "Arn"]}, f"{target.describe()}: {queue}"
            assert (target.function, target.qualifier) not in configs, f"{target.describe()}: a destination"
            continue
        config = configs.get((target.function, target.qualifier))
        assert config is not None, f"{rule} invokes {target.describe()}, which has no EventInvokeConfig: {configs}"
        assert "OnFailure" in config["DestinationConfig"], f"{target.describe()}: no on-failure destination"


def test_outputs_name_what_each_rule_invokes(deploys: dict[str, Stack]) -> None:
    stack = deploys["baseline"]
    outputs = stack.outputs
    for rule, arn in _targets(stack):
        named = [k for k, o in outputs.items() if o["Value"] == arn]
        assert named, f"no output gives {arn}, which {rule} invokes; outputs: {sorted(outputs)}"


def test_old_versions_do_not_pile_up(deploys: dict[str, Stack]) -> None:
    """A replaced AWS::Lambda::Version or AWS::Lambda::LayerVersion is deleted by the update that
    replaces it, unless its DeletionPolicy is Retain (SAM's default for versions)."""
    for name, stack in deploys.items():
        for kind in ("AWS::Lambda::Version", "AWS::Lambda::LayerVersion"):
            for logical_id, resource in stack.of_type(kind).items():
                assert resource.get("DeletionPolicy", "Delete") == "Delete", (
                    f"{name}: {logical_id} ({kind}) has DeletionPolicy {resource['DeletionPolicy']}: "
                    "one more is kept on every deploy that replaces it"
                )


def test_sam_delete_leaves_nothing(deploys: dict[str, Stack]) -> None:
    stack = deploys["baseline"]
    retained = {
        k: v["DeletionPolicy"] for k, v in stack.resources.items() if v.get("DeletionPolicy", "Delete") != "Delete"
    }
    assert not retained, f"kept after sam delete: {retained}"


def test_each_function_logs_to_a_log_group_of_the_stack_with_a_retention(deploys: dict[str, Stack]) -> None:
    """A log group that Lambda creates itself keeps its logs forever and outlives `sam delete`."""
    for name in ("baseline", "parameter LogRetentionDays"):
        stack = deploys.get(name)
        if stack is None:
            raise AssertionError(f"no deploy {name!r}: the template has no parameter LogRetentionDays")
        groups = stack.of_type("AWS::Logs::LogGroup")
        used = set()
        for function in stack.of_type("AWS::Lambda::Function"):
            group = stack.resources[function]["Properties"].get("LoggingConfig", {}).get("LogGroup")
            assert isinstance(group, dict), f"{function} logs to the log group Lambda makes itself"
            assert group.get("Ref") in groups, f"{function} logs to {group}, not a log group of the stack"
            used.add(group["Ref"])
            retention = stack.resolve(groups[group["Ref"]]["Properties"]["RetentionInDays"])
            assert str(retention) == stack.params["LogRetentionDays"]
        assert used == set(groups), "one log group per function"
        assert len(used) == len(stack.of_type("AWS::Lambda::Function"))


def test_rules_match_only_this_accounts_events(deploys: dict[str, Stack]) -> None:
    """With the defaults (no MemberAccounts, no OrganizationId; tests/deploy/test_multi_cluster.py
    for those)."""
    stack = deploys["baseline"]
    for rule, resource in stack.rules().items():
        pattern = stack.resolve(resource["Properties"]["EventPattern"])
        assert pattern.get("account") == [PSEUDO["AWS::AccountId"]], f"{rule}: {pattern}"


def test_no_snapstart_where_the_rules_invoke_latest(deploys: dict[str, Stack]) -> None:
    """SnapStart applies to published versions only: set on a function invoked as $LATEST, it does nothing."""
    for name, stack in deploys.items():
        for rule, arn in _targets(stack):
            target = stack.follow(arn)
            if target.version is None:
                snap = stack.function_config(target.function).get("SnapStart", {})
                assert snap.get("ApplyOn", "None") == "None", f"{name}: {rule} invokes $LATEST, SnapStart {snap}"


def test_the_backstop_s_schedule_may_invoke_exactly_its_function_whose_failures_reach_the_queue(
    deploys: dict[str, Stack],
) -> None:
    """The instance-status backstop (InstanceStatusChecks=true in the baseline): Scheduler invokes
    with the schedule's own role, which may invoke the function and nothing else; the function's
    async settings (no retry: the next run is the retry) send a failed run to the on-failure queue;
    its one Lambda permission is to invoke the long-drain starter."""
    stack = deploys["baseline"]
    (schedule,) = stack.schedules().values()
    target = schedule["Properties"]["Target"]
    assert stack.follow(target["Arn"]).function == "InstanceStatusFunction"
    role = stack.resources[target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert [(s["Action"], s["Resource"]) for s in statements] == [("lambda:InvokeFunction", target["Arn"])]
    (config,) = [
        c["Properties"]
        for c in stack.of_type("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": "InstanceStatusFunction"}
    ]
    assert (config["Qualifier"], config["MaximumRetryAttempts"]) == ("$LATEST", 0)
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FailedInvocationQueue", "Arn"]}
    policy = stack.resources["InstanceStatusPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [(s["Action"], s["Resource"]) for s in policy] == [
        ("ec2:DescribeInstanceStatus", "*"),
        ("lambda:InvokeFunction", {"Fn::GetAtt": ["LongDrainStartFunction", "Arn"]}),
    ]
