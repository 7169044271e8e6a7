"""A small run of `make mutants`' scenario runner (bench/mutants.py), so that it cannot rot: one
cheap mutation against unit tests, on a copy of the work tree. It must tell a mutation its test
catches from one it does not, refuse a mutation whose text is gone, and never write the repo."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from bench.mutants import SCENARIOS, Scenario, render, run_scenarios, verdict

REPO = Path(__file__).resolve().parents[2]
PODS = "layers/core/python/serverless_nth/kube/pods.py"
UNCAPPED = ("    return max(GRACE_FLOOR_SECONDS, min(grace, int(seconds_left)))\n", "    return grace\n")
GRACE_TEST = "tests/unit/test_drain_rules.py::test_grace_period_is_capped_only_by_a_deadline_and_never_below_the_floor"
OTHER_TEST = "tests/unit/test_drain_rules.py::test_daemonset_mirror_and_finished_pods_are_skipped"


def digest(path: str) -> str:
    return hashlib.sha256((REPO / path).read_bytes()).hexdigest()


def test_the_runner_tells_killed_from_survived_and_leaves_the_repo_untouched(tmp_path: Path) -> None:
    before = digest(PODS)
    clean_before = subprocess.run(["git", "diff", "--quiet", "--", PODS], cwd=REPO, check=False).returncode
    scenarios = [
        Scenario("caught", "grace not capped", PODS, *UNCAPPED, (GRACE_TEST,)),
        Scenario("missed", "grace not capped, against a test of something else", PODS, *UNCAPPED, (OTHER_TEST,)),
        Scenario("gone", "a mutation whose text is no longer there", PODS, "no such line\n", "", (GRACE_TEST,)),
    ]
    results = {r.name: r for r in run_scenarios(scenarios, tmp_path, timeout=120)}
    assert {name: r.status for name, r in results.items()} == {
        "caught": "killed",
        "missed": "survived",
        "gone": "stale",
    }
    assert results["caught"].failed
    assert all(GRACE_TEST.split("::")[1] in test for test in results["caught"].failed)
    # the repo's file is as it was, and the copy is gone
    assert digest(PODS) == before
    assert subprocess.run(["git", "diff", "--quiet", "--", PODS], cwd=REPO, check=False).returncode == clean_before
    assert not (tmp_path / "tree").exists()
    report = {"scenarios": {"results": [vars(r) for r in results.values()]}}
    assert "| caught | grace not capped |" in render(report)
    assert sorted(p.split(":")[0] for p in verdict(report)) == ["scenario gone", "scenario missed"]


def test_every_curated_scenario_still_applies_once_to_the_code() -> None:
    for scenario in SCENARIOS:
        text = (REPO / scenario.path).read_text()
        assert text.count(scenario.find) == 1, (
            f"{scenario.name}: its text is in {scenario.path} {text.count(scenario.find)} times"
        )
        assert scenario.tests
        for test in scenario.tests:
            assert (REPO / test.split("::")[0]).exists(), test
