"""``make fuzz``: the properties of tests/reliability/fuzzing.py at full size, at least 10,000
cases per normaliser (valid envelopes, mutated envelopes, arbitrary input), with the figures
(cases, seconds, verdicts, failures) written to bench/results/fuzz.json.

    python -m tests.reliability.fuzz [--scale 1.0] [--out bench/results/fuzz.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import given, settings

from tests.reliability.fuzzing import (
    COMMON,
    FUZZ_EXAMPLES,
    TARGETS,
    Target,
    arbitrary_input,
    check_hostile,
    check_round_trip,
    mutated_envelopes,
    valid_envelopes,
)

REPO = Path(__file__).resolve().parent.parent.parent


def run_kind(target: Target, kind: str, examples: int) -> dict[str, Any]:
    verdicts: Counter[str] = Counter()

    if kind == "valid":

        @given(valid_envelopes(target))
        def prop(case: Any) -> None:
            verdicts["cases"] += 1
            check_round_trip(target, case)
            verdicts["round-trip"] += 1

    else:
        strategy = mutated_envelopes(target) if kind == "mutated" else arbitrary_input()

        @given(strategy)
        def prop(event: Any) -> None:
            verdicts["cases"] += 1
            verdicts[check_hostile(target, event)] += 1

    started = time.perf_counter()
    failure = None
    try:
        settings(max_examples=examples, **COMMON)(prop)()
    except Exception as exc:  # the property failed: hypothesis raises the shrunk example's error
        failure = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
    return {
        "cases": verdicts.pop("cases", 0),
        "seconds": round(time.perf_counter() - started, 2),
        "verdicts": dict(verdicts),
        "failure": failure,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="tests.reliability.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of examples")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fuzz.json")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "run": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "hypothesis": hypothesis.__version__,
        "normalisers": {},
    }
    failures = 0
    for name, target in sorted(TARGETS.items()):
        kinds = {kind: run_kind(target, kind, int(n * args.scale)) for kind, n in FUZZ_EXAMPLES.items()}
        entry = {
            "cases": sum(k["cases"] for k in kinds.values()),
            "seconds": round(sum(k["seconds"] for k in kinds.values()), 2),
            "failures": sum(k["failure"] is not None for k in kinds.values()),
            "inputs": kinds,
        }
        failures += entry["failures"]
        report["normalisers"][name] = entry
        print(f"{name}: {entry['cases']} cases in {entry['seconds']} s, {entry['failures']} failures", flush=True)
    report["total"] = {
        "cases": sum(e["cases"] for e in report["normalisers"].values()),
        "seconds": round(sum(e["seconds"] for e in report["normalisers"].values()), 2),
        "failures": failures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"fuzz: {report['total']}; written to {args.out}")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
