"""The changes a deploy can carry, each as `sam build` and `sam deploy` would see it: an edit of a
copy of the sources (then a real `sam build`), or other parameter values for the same build.

Every parameter of template.yaml gets a change of its own, so a parameter added later is covered
without editing this file (or fails here, asking for an alternative value)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localeks.template import load_template

# What `sam deploy --guided` asks for; samconfig.toml's local invokes use the same cluster name.
# the optional instance-status backstop on, so that its function and schedule are checked too
BASE_PARAMETERS = {"ClusterName": "my-cluster", "InstanceStatusChecks": "true"}

# Parameters whose other valid value cannot be derived from AllowedValues or a Number's range.
ALTERNATIVES: dict[str, dict[str, str]] = {
    "ClusterName": {"ClusterName": "other-cluster"},
    "NotificationTopicArn": {"NotificationTopicArn": "arn:aws:sns:us-east-1:123456789012:nth-alerts"},
    # the template's Rules ask for security groups with subnets
    "VpcSubnetIds": {
        "VpcSubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
        "VpcSecurityGroupIds": "sg-0123456789abcdef0",
    },
    "VpcSecurityGroupIds": {"VpcSecurityGroupIds": "sg-0123456789abcdef0"},
    "ManagedTag": {"ManagedTag": "aws-node-termination-handler/managed"},
    "LifecycleHookName": {"LifecycleHookName": "drain-before-terminate"},
    "InstanceStatusSchedule": {"InstanceStatusSchedule": "rate(5 minutes)"},
    # many clusters and accounts (docs/multi-cluster.md); tests/deploy/test_multi_cluster.py reads these deploys
    "Clusters": {"Clusters": "*"},
    "MemberAccounts": {"MemberAccounts": "111111111111,222222222222"},
    "OrganizationId": {"OrganizationId": "o-a1b2c3d4e5"},
    "MemberRoleName": {"MemberRoleName": "nth-member"},
}


@dataclass(frozen=True)
class Change:
    name: str
    # edits a copy of the repository's template.yaml, samconfig.toml, handlers/ and layers/;
    # None: the baseline's build, deployed with other parameter values
    edit: Callable[[Path], None] | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    # the change alters at least one function's deployment (else a test of it would prove nothing)
    alters_functions: bool = True


def _append(path: Path, text: str) -> None:
    assert path.is_file(), f"{path} does not exist"
    path.write_text(path.read_text() + text)


def _sub_template(pattern: str, repl: Callable[[re.Match[str]], str], count: int | None = 1) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        template = root / "template.yaml"
        text, n = re.subn(pattern, repl, template.read_text(), flags=re.MULTILINE)
        assert n == count if count is not None else n > 0, f"{pattern!r} matched {n} times in template.yaml"
        template.write_text(text)

    return edit


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}


def _layers(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::LayerVersion"}


def _edit_handlers(template: dict[str, Any]) -> Callable[[Path], None]:
    code_dirs = [f["Properties"]["CodeUri"] for f in _functions(template).values()]

    def edit(root: Path) -> None:
        for code_dir in code_dirs:
            _append(root / code_dir / "app.py", "\n# deploy test: a changed handler\n")

    return edit


def _edit_layer(content_uri: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        layer = root / content_uri
        if (layer / "requirements.txt").is_file():  # the deps layer: its build's input
            _append(layer / "requirements.txt", "# deploy test: a changed pin\n")
        else:  # the core layer: a module of the package
            modules = sorted((layer / "python").rglob("__init__.py"))
            assert modules, f"no package in {layer}/python"
            _append(modules[0], "\n# deploy test: a changed module\n")

    return edit


def _alternative(name: str, spec: dict[str, Any]) -> dict[str, str]:
    if name in ALTERNATIVES:
        return ALTERNATIVES[name]
    default = str(spec.get("Default"))
    if "AllowedValues" in spec:
        return {name: next(str(v) for v in spec["AllowedValues"] if str(v) != default)}
    if spec["Type"] == "Number":
        value = int(default) + 1
        if "MaxValue" in spec and value > int(spec["MaxValue"]):
            value = int(default) - 1
        return {name: str(value)}
    raise AssertionError(f"parameter {name}: give it another valid value in tests/deploy/changes.py ALTERNATIVES")


def _refs(value: Any) -> set[str]:
    """Names that a value references with Ref or inside a Fn::Sub string."""
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    if set(value) == {"Ref"}:
        return {value["Ref"]}
    if set(value) == {"Fn::Sub"}:
        text, variables = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        return set(re.findall(r"\$\{(\w+)\}", text)) | _refs(list(variables.values()))
    return _refs(list(value.values()))


def environment_parameters(template: dict[str, Any]) -> set[str]:
    """Parameters that feed the functions' environment (Globals and each function)."""
    sources = [template.get("Globals", {}).get("Function", {})] + [
        f["Properties"] for f in _functions(template).values()
    ]
    names = _refs([props.get("Environment", {}) for props in sources])
    return names & set(template.get("Parameters", {}))


def changes(template: dict[str, Any] | None = None) -> list[Change]:
    template = template or load_template()
    found = [Change("handler code of every function", _edit_handlers(template))]
    for layer, spec in _layers(template).items():
        found.append(Change(f"{layer} content", _edit_layer(spec["Properties"]["ContentUri"])))
    found += [
        Change(
            "MemorySize",
            _sub_template(r"^(    MemorySize: )(\d+)$", lambda m: f"{m.group(1)}{int(m.group(2)) + 128}"),
        ),
        Change(
            "Timeout of every function",
            _sub_template(r"^(      Timeout: )(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 10}", count=None),
        ),
        Change("Architectures", _sub_template(r"^(    Architectures: )\[arm64\]$", lambda m: f"{m.group(1)}[x86_64]")),
    ]
    env_params = environment_parameters(template)
    for name, spec in template.get("Parameters", {}).items():
        alt = _alternative(name, spec)
        found.append(Change(f"parameter {name}", parameters=alt, alters_functions=name in env_params))
    return found
