"""CloudFormation's view of a translated template: what each EventBridge rule invokes, and the code
and configuration that runs there after a stack update.

Only what decides a Lambda function's deployment is evaluated: parameters (defaults, then the
deploy's values), pseudo parameters, conditions, Fn::If/Sub/Join/Select/Equals/Not/And/Or. A
reference to a layer version stands for that layer version's properties (its S3 content above all),
so a function's configuration changes when a layer's content does; other references to resources
stay symbolic (the same logical ID is the same resource).

How CloudFormation updates what a rule invokes:
- the unqualified function ($LATEST): every changed property of the AWS::Lambda::Function is
  applied to it, so it runs what the template now says;
- an alias -> AWS::Lambda::Version: a version is published once, when its resource is created, and
  is immutable after. A version resource whose logical ID and properties did not change is left
  alone, so it keeps running what it was published with; a new logical ID publishes $LATEST as it
  is after the function's update.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::StackName": "serverless-nth",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": (
        "arn:aws:cloudformation:us-east-1:123456789012:stack/serverless-nth/1c2fa620-982a-11e3-aff7-50e2416294e0"
    ),
}


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VAR = re.compile(r"\$\{([^}!]+)\}")


@dataclass(frozen=True)
class Target:
    """What a rule's target ARN invokes."""

    function: str  # logical ID of the AWS::Lambda::Function
    qualifier: str  # "$LATEST", or the alias name
    version: str | None = None  # logical ID of the AWS::Lambda::Version behind the alias

    def describe(self) -> str:
        if self.version is None:
            return f"{self.function} ({self.qualifier})"
        return f"{self.function} alias {self.qualifier!r} -> {self.version}"


class Stack:
    """One deploy: a translated template and the parameter values it was deployed with."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str]) -> None:
        self.template = template
        self.params: dict[str, Any] = {}
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, spec.get("Default"))
            if value is None:
                raise AssertionError(f"parameter {name} has no value and no default")
            value = str(value)
            self.params[name] = value.split(",") if spec["Type"] == "CommaDelimitedList" else value
        # CloudFormation creates a resource (and an output) only when its Condition holds
        self.resources: dict[str, dict[str, Any]] = {
            k: v for k, v in template["Resources"].items() if "Condition" not in v or self.condition(v["Condition"])
        }
        self.outputs: dict[str, dict[str, Any]] = {
            k: v
            for k, v in template.get("Outputs", {}).items()
            if "Condition" not in v or self.condition(v["Condition"])
        }

    # --- intrinsics

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(v) for v in arg)
                return a == b
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key == "Fn::Join":
                sep, items = arg
                items = self.resolve(items)
                if all(isinstance(i, str) for i in items):
                    return sep.join(items)
                return {"Fn::Join": [sep, items]}
            if key == "Fn::Split":
                sep, text = arg[0], self.resolve(arg[1])
                if isinstance(text, str):
                    return text.split(sep)
                return {"Fn::Split": [sep, text]}
            if key == "Fn::Select":
                index, items = (self.resolve(v) for v in arg)
                return items[int(index)]
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::GetAtt":
                ref = arg.split(".", 1) if isinstance(arg, str) else arg
                return {"Fn::GetAtt": list(ref)}
        out = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        resource = self.resources.get(name)
        if resource is None:
            raise AssertionError(f"Ref to {name}, which is neither a parameter nor a resource")
        if resource["Type"] == "AWS::Lambda::LayerVersion":
            # the ARN of a layer version is new for every new content; stand for it by what it holds
            return {"LayerVersion": self.resolve(resource.get("Properties", {}))}
        return {"Ref": name}

    def _sub(self, arg: Any) -> Any:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        variables = {k: self.resolve(v) for k, v in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                value = variables[name]
            elif "." in name:
                return match.group(0)  # an attribute of a resource: stays symbolic
            else:
                value = self._ref(name)
            return value if isinstance(value, str) else "${" + json.dumps(value, sort_keys=True) + "}"

        return _SUB_VAR.sub(one, text)

    # --- Lambda

    def of_type(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == cfn_type}

    def function_config(self, function: str) -> dict[str, Any]:
        """Everything CloudFormation sets on the function: code, layers (by content), environment,
        memory, timeout, architecture, SnapStart, VPC, role, logging, ..."""
        resource = self.resources[function]
        assert resource["Type"] == "AWS::Lambda::Function", f"{function} is not a Lambda function"
        config: dict[str, Any] = self.resolve(resource.get("Properties", {}))
        return config

    def started_by(self, function: str) -> list[str]:
        """The functions a function's environment names by Ref: those the long-drain starter starts."""
        variables = self.resources[function]["Properties"].get("Environment", {}).get("Variables", {})
        return [
            v["Ref"]
            for v in variables.values()
            if isinstance(v, dict)
            and set(v) == {"Ref"}
            and self.resources.get(v["Ref"], {}).get("Type") == "AWS::Lambda::Function"
        ]

    def rules(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::Events::Rule")

    def rule_targets(self, rule: str) -> list[Any]:
        return [t["Arn"] for t in self.resources[rule]["Properties"]["Targets"]]

    def schedules(self) -> dict[str, dict[str, Any]]:
        """EventBridge Scheduler schedules (SAM's ScheduleV2: the instance-status backstop's)."""
        return self.of_type("AWS::Scheduler::Schedule")

    def invocations(self) -> list[tuple[str, Any]]:
        """(rule or schedule, the ARN it invokes): everything from outside that invokes a function."""
        found = [(rule, arn) for rule in self.rules() for arn in self.rule_targets(rule)]
        return found + [(name, s["Properties"]["Target"]["Arn"]) for name, s in self.schedules().items()]

    def follow(self, arn: Any) -> Target:
        """The function, and the version if any, that an ARN expression invokes."""
        if isinstance(arn, dict) and "Fn::GetAtt" in arn:
            name, attr = arn["Fn::GetAtt"] if isinstance(arn["Fn::GetAtt"], list) else arn["Fn::GetAtt"].split(".", 1)
            if attr == "Arn" and self.resources[name]["Type"] == "AWS::Lambda::Function":
                return Target(name, "$LATEST")
        if isinstance(arn, dict) and "Ref" in arn:
            resource = self.resources[arn["Ref"]]
            if resource["Type"] == "AWS::Lambda::Function":  # a function's name: unqualified
                return Target(arn["Ref"], "$LATEST")
            if resource["Type"] == "AWS::Lambda::Alias":
                props = resource["Properties"]
                version_ref = props["FunctionVersion"]
                version = version_ref["Fn::GetAtt"][0]
                assert version_ref["Fn::GetAtt"][1] == "Version"
                assert self.resources[version]["Type"] == "AWS::Lambda::Version"
                return Target(self._function_of(version), props["Name"], version)
            if resource["Type"] == "AWS::Lambda::Version":
                return Target(self._function_of(arn["Ref"]), "version", arn["Ref"])
        if isinstance(arn, dict) and "Fn::Sub" in arn and isinstance(arn["Fn::Sub"], str):
            match = re.fullmatch(r"\$\{(\w+)\.Arn\}:(\S+)", arn["Fn::Sub"])
            if match and self.resources[match.group(1)]["Type"] == "AWS::Lambda::Function":
                function, qualifier = match.groups()
                if qualifier == "$LATEST":
                    return Target(function, "$LATEST")
                aliases = [
                    k
                    for k, v in self.of_type("AWS::Lambda::Alias").items()
                    if v["Properties"]["Name"] == qualifier and v["Properties"]["FunctionName"] == {"Ref": function}
                ]
                assert len(aliases) == 1, f"no alias {qualifier} of {function} in the template"
                return self.follow({"Ref": aliases[0]})
        raise AssertionError(f"cannot tell what this target invokes: {arn}")

    def qualifier(self, arn: Any) -> str | None:
        """The qualifier an ARN expression names, as Lambda reads the ARN: None for the unqualified
        function, else the text after the function name ("$LATEST", a version, an alias name)."""
        if isinstance(arn, dict) and "Fn::GetAtt" in arn:
            return None
        if isinstance(arn, dict) and "Ref" in arn:
            resource = self.resources[arn["Ref"]]
            if resource["Type"] == "AWS::Lambda::Function":
                return None
            if resource["Type"] == "AWS::Lambda::Alias":
                return str(self.resolve(resource["Properties"]["Name"]))
            if resource["Type"] == "AWS::Lambda::Version":
                return f"version {arn['Ref']}"
        if isinstance(arn, dict) and "Fn::Sub" in arn and isinstance(arn["Fn::Sub"], str):
            match = re.fullmatch(r"\$\{(\w+)\.Arn\}:(\S+)", arn["Fn::Sub"])
            if match:
                return match.group(2)
        if isinstance(arn, str) and ":function:" in arn:
            parts = arn.split(":function:", 1)[1].split(":")
            return parts[1] if len(parts) > 1 else None
        raise AssertionError(f"cannot tell the qualifier of {arn}")

    def _function_of(self, version: str) -> str:
        ref = self.resources[version]["Properties"]["FunctionName"]
        assert isinstance(ref, dict), f"{version}: FunctionName is not a Ref to a function"
        assert "Ref" in ref, f"{version}: FunctionName is not a Ref to a function"
        return str(ref["Ref"])


def running_after_update(before: Stack, after: Stack, target: Target) -> dict[str, Any]:
    """The configuration that `target` (in `after`) runs once CloudFormation has updated `before`
    to `after`."""
    if target.version is None:
        return after.function_config(target.function)
    previous = before.resources.get(target.version)
    if previous is not None and previous == after.resources[target.version]:
        # the same version resource: not published again; it still runs what `before` published
        return before.function_config(before._function_of(target.version))
    return after.function_config(target.function)


def changed_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
