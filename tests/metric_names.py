"""The metric names the core can emit, read from its source rather than listed: the dashboard's
test (unit tier) and the runtime metrics test (integration tier) both compare with this."""

from __future__ import annotations

import ast
from pathlib import Path

import serverless_nth
from serverless_nth.observability import COLD_START, Metric

CORE = Path(serverless_nth.__file__).parent


def names_the_code_emits() -> dict[str, list[str]]:
    """Every metric name the core can emit, read from its source: each ``Metric.X`` it uses outside
    observability.py (where they are defined), and Powertools' ColdStart when a handler is
    decorated with ``capture_cold_start_metric=True``; name -> the files that emit it."""
    values = {k: v for k, v in vars(Metric).items() if k.isupper()}
    found: dict[str, list[str]] = {}
    for source in sorted(CORE.rglob("*.py")):
        if source.name == "observability.py":
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            where = str(source.relative_to(CORE))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Metric":
                assert node.attr in values, f"{where}:{node.lineno}: Metric.{node.attr} is not defined"
                found.setdefault(values[node.attr], []).append(where)
            if (
                isinstance(node, ast.keyword)
                and node.arg == "capture_cold_start_metric"
                and isinstance(node.value, ast.Constant)
                and node.value.value is True
            ):
                found.setdefault(COLD_START, []).append(where)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
                "add_metric",
                "single_metric",
            }:
                name = next((k.value for k in node.keywords if k.arg == "name"), None)
                assert not isinstance(name, ast.Constant), f"{where}:{node.lineno}: a metric named by a literal"
    return found
