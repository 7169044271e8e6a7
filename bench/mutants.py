"""`make mutants`: mutation testing as a standing tool. Writes bench/results/mutants.{json,md}.

    python -m bench.mutants                      # both parts
    python -m bench.mutants --unit               # mutmut on the pure core, against the unit tier
    python -m bench.mutants --scenarios [NAME]   # the curated scenario mutations, against the local EKS

**Unit part.** mutmut (3.x) mutates the pure parts of the core (SCOPE) and runs, for each mutant,
the unit tests that reach the mutated function. mutmut names a mutant after its file's path, which
must be the module the tests import, so it runs in a staging directory where the core layer sits at
``src/serverless_nth`` (``[tool.mutmut]`` in pyproject.toml is written for that layout); the repo is
never mutated. Every survivor must be listed in ACCEPTED with the reason it is acceptable.

**Scenario part.** What only the local EKS shows (the grace period the API server received, a PDB
retry, a node's proof of identity, an incomplete drain, Event names): each SCENARIO is one
hand-written bug, applied to a copy of the work tree (never the repo itself: others edit it while
this runs), with the named tests run there against the running local EKS. The named tests must
pass unmutated first (the baseline), then fail with the bug: killed.

The exit status is non-zero when the unit score is below THRESHOLD, a survivor has no accepted
reason, or a scenario is not killed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.mutants_scenarios import (  # noqa: F401 (the names tests and callers use from here)
    NOT_COPIED,
    SCENARIOS,
    Scenario,
    ScenarioResult,
    run_scenarios,
)
from bench.mutants_unit import (  # noqa: F401
    ACCEPTED,
    CORE,
    REPO,
    RESULTS,
    SCOPE,
    THRESHOLD,
    WORKDIR,
    run_unit,
    stage,
)

# --- the report --------------------------------------------------------------------------------


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "mutants.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "mutants.md").write_text(render(report))


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Mutation testing",
        "",
        f"`make mutants` ({report.get('generated', '?')}, {report.get('machine', '')})",
        "",
    ]
    unit = report.get("unit")
    if unit:
        lines += [
            f"## Unit tier: {unit['tool']} on the pure core",
            "",
            f"**{unit['killed'] + unit['timeout']} of {unit['total']} mutants killed ({unit['score']:.1%})**: "
            f"{unit['killed']} by a failing test, {unit['timeout']} by a timeout; {unit['survived']} survived, "
            f"{unit['no_tests']} reached by no unit test. Threshold {THRESHOLD:.0%}. {unit['seconds']:.0f} s.",
            "",
            "| module | killed | not killed |",
            "|---|---|---|",
            *(f"| `{m}` | {c.get('detected', 0)} | {c.get('undetected', 0)} |" for m, c in unit["by_module"].items()),
            "",
        ]
        if unit["survivors"]:
            lines += ["Survivors, each with the reason it is acceptable:", ""]
            lines += ["| mutant | original | mutated | why acceptable |", "|---|---|---|---|"]
            for s in unit["survivors"]:
                name = s["mutant"].removeprefix("serverless_nth.")
                reason = s["reason"] or "**UNEXPLAINED**"
                lines.append(f"| `{name}` ({s['status']}) | `{s['original']}` | `{s['mutated']}` | {reason} |")
            lines.append("")
    scenarios = report.get("scenarios")
    if scenarios:
        killed = sum(1 for s in scenarios["results"] if s["status"] == "killed")
        lines += [
            "## Curated scenarios against the local EKS",
            "",
            f"**{killed} of {len(scenarios['results'])} killed.**",
            "",
            "| scenario | the bug | file | test | result |",
            "|---|---|---|---|---|",
        ]
        for s in scenarios["results"]:
            tests = "<br>".join(f"`{t.split('::')[-1]}`" for t in s["tests"])
            lines.append(f"| {s['name']} | {s['bug']} | `{Path(s['path']).name}` | {tests} | {s['status']} |")
        lines.append("")
    return "\n".join(lines)


def verdict(report: dict[str, Any]) -> list[str]:
    problems = []
    unit = report.get("unit")
    if unit:
        if unit["score"] < THRESHOLD:
            problems.append(f"unit mutation score {unit['score']:.1%} is below {THRESHOLD:.0%}")
        if unit["unexplained"]:
            problems.append(f"{len(unit['unexplained'])} survivors without an accepted reason")
    for s in (report.get("scenarios") or {}).get("results", []):
        if s["status"] != "killed":
            problems.append(f"scenario {s['name']}: {s['status']} {s.get('detail', '')[:500]}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unit", action="store_true", help="only the mutmut part")
    parser.add_argument("--scenarios", nargs="*", metavar="NAME", help="only the scenarios (all, or those named)")
    parser.add_argument("--workers", type=int, default=2, help="mutmut's parallel test runs (default 2)")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    both = not args.unit and args.scenarios is None
    previous = args.out / "mutants.json"
    report: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    if both or args.unit:
        report["unit"] = run_unit(args.workdir / "unit", args.workers)
    if both or args.scenarios is not None:
        chosen = [s for s in SCENARIOS if not args.scenarios or s.name in args.scenarios]
        unknown = set(args.scenarios or ()) - {s.name for s in SCENARIOS}
        if unknown:
            raise SystemExit(f"no such scenario: {', '.join(sorted(unknown))}")
        results = run_scenarios(chosen, args.workdir / "scenarios")
        kept = {r["name"]: r for r in (report.get("scenarios") or {}).get("results", [])} if args.scenarios else {}
        kept.update({r.name: asdict(r) for r in results})
        report["scenarios"] = {"results": [kept[s.name] for s in SCENARIOS if s.name in kept]}
    report["generated"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # when it ended
    report["machine"] = f"{os.cpu_count()} cores"
    write_report(report, args.out)
    print(render(report))
    problems = verdict(report)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
