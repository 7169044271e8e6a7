"""Reads template.yaml the way the local invoke needs it: a function's handler, code, layers and
environment, with parameters resolved (defaults, then overrides)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localeks.cluster import REPO


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub, ...) as their long form."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    handler: str
    code_dir: Path
    layer_dirs: list[Path]
    timeout: int
    memory: int
    environment: dict[str, str]
    durable: bool = False  # a Lambda durable function (DurableConfig): run under the durable runner


def load_template(path: Path = REPO / "template.yaml") -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 (SafeLoader subclass)


def function_spec(logical_id: str, overrides: dict[str, str], template: dict[str, Any] | None = None) -> FunctionSpec:
    template = template or load_template()
    resources = template.get("Resources", {})
    resource = resources.get(logical_id)
    if not resource or resource.get("Type") != "AWS::Serverless::Function":
        names = sorted(k for k, v in resources.items() if v.get("Type") == "AWS::Serverless::Function")
        raise SystemExit(f"{logical_id!r} is not a function of template.yaml; functions: {', '.join(names)}")
    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    unknown = set(overrides) - set(params)
    if unknown:
        raise SystemExit(f"unknown template parameters: {', '.join(sorted(unknown))}")
    params.update(overrides)
    glob = template.get("Globals", {}).get("Function", {})
    props = {**glob, **resource["Properties"]}
    env = {
        **glob.get("Environment", {}).get("Variables", {}),
        **resource["Properties"].get("Environment", {}).get("Variables", {}),
    }
    layers = [*glob.get("Layers", []), *resource["Properties"].get("Layers", [])]
    layer_dirs = []
    for layer in layers:
        ref = layer.get("Ref") if isinstance(layer, dict) else None
        if ref in resources and resources[ref]["Type"] == "AWS::Serverless::LayerVersion":
            layer_dirs.append(REPO / resources[ref]["Properties"]["ContentUri"])
    return FunctionSpec(
        logical_id=logical_id,
        handler=props["Handler"],
        code_dir=REPO / props["CodeUri"],
        layer_dirs=layer_dirs,
        timeout=int(_resolve(props.get("Timeout", 3), params)),
        memory=int(_resolve(props.get("MemorySize", 128), params)),
        environment={k: _resolve(v, params, template.get("Conditions", {}), set(resources)) for k, v in env.items()},
        durable="DurableConfig" in props,
    )


def _resolve(
    value: Any, params: dict[str, str], conditions: dict[str, Any] | None = None, resources: set[str] | None = None
) -> str:
    """A value of the environment; a Ref to a resource (the long-drain starter's durable functions)
    is that resource's logical ID, which stands for its name locally (tests create moto's functions
    under that name)."""
    if isinstance(value, dict) and "Fn::If" in value:
        name, then, otherwise = value["Fn::If"]
        chosen = then if _condition((conditions or {})[name], params, conditions) else otherwise
        return _resolve(chosen, params, conditions, resources)
    if isinstance(value, dict) and "Ref" in value and value["Ref"] in params:
        return params[value["Ref"]]
    if isinstance(value, dict) and "Ref" in value and value["Ref"] in (resources or set()):
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: params.get(m.group(1), m.group(0)), value["Fn::Sub"])
    if isinstance(value, dict):
        raise SystemExit(f"the local invoke cannot resolve {value}")
    return str(value).lower() if isinstance(value, bool) else str(value)


def _condition(value: Any, params: dict[str, str], conditions: dict[str, Any] | None) -> bool:
    """The template's conditions, as far as the functions' environment needs them."""
    if "Fn::Equals" in value:
        left, right = (_resolve(v, params, conditions) for v in value["Fn::Equals"])
        return left == right
    if "Fn::Not" in value:
        return not _condition(value["Fn::Not"][0], params, conditions)
    if "Condition" in value:
        return _condition((conditions or {})[value["Condition"]], params, conditions)
    raise SystemExit(f"the local invoke cannot evaluate the condition {value}")
