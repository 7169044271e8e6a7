"""`make mutants`' scenario part (bench/mutants.py says what the whole does): each SCENARIO, one
hand-written bug, applied to a copy of the work tree, with the named tests run there against the
local EKS; the tests must pass unmutated (the baseline), then fail with the bug (killed)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.mutants_unit import CORE, REPO, _clean_env

# --- scenario part: curated mutations against the local EKS ----------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    bug: str  # what the mutation breaks, in words
    path: str  # the file, relative to the repo
    find: str  # exact text, present once
    replace: str
    tests: tuple[str, ...]  # pytest node ids that must fail with the bug


PODS = f"{CORE}/kube/pods.py"
EVICT = f"{CORE}/kube/evict.py"
SCENARIOS = (
    Scenario(
        "grace-not-capped",
        "the eviction carries the pod's own grace period whatever the deadline leaves",
        PODS,
        "    return max(GRACE_FLOOR_SECONDS, min(grace, int(seconds_left)))\n",
        "    return grace\n",
        ("tests/integration/test_stale_events.py::test_spot_event_on_time_still_caps_grace_to_the_time_left",),
    ),
    Scenario(
        "pdb-refusal-not-retried",
        "a PodDisruptionBudget's 429 makes the pod blocked at once: no watch, no retry",
        EVICT,
        "            self.budgets.follow(pod.namespace)\n",
        "            return Attempt(PodFate.BLOCKED, pdb_refused=True)\n",
        (
            "tests/integration/test_drain_cases.py"
            "::test_a_drain_held_by_a_pdb_reacts_when_the_budget_frees_not_by_polling",
        ),
    ),
    Scenario(
        "identity-not-checked",
        "a node with the instance's private DNS name is taken for the instance without proof",
        f"{CORE}/kube/nodes.py",
        '        matches adds nothing the name did not say)."""\n',
        '        matches adds nothing the name did not say)."""\n        return True\n',
        (
            "tests/integration/test_drain_cases.py::"
            "test_a_node_with_the_instance_name_but_no_provider_id_is_left_alone_as_unproven",
        ),
    ),
    Scenario(
        "incomplete-drain-reported-complete",
        "a drain that ends with pods left is reported complete",
        f"{CORE}/kube/drain.py",
        "        result.completed = (\n"
        "            not self.options.dry_run and not result.remaining"
        " and all(f in DONE_FATES for f in result.pods.values())\n"
        "        )\n",
        "        result.completed = True\n",
        (
            "tests/integration/test_incomplete_drains.py"
            "::test_respect_pdb_leaves_the_blocked_pods_and_reports_the_drain_incomplete",
        ),
    ),
    Scenario(
        "event-names-not-derived",
        "Kubernetes Event names no longer derive from the EventBridge event id: a redelivery adds Events",
        f"{CORE}/kube/events.py",
        "hashlib.sha256(f\"{delivery_id}/{regarding.get('uid', '')}/{reason}\".encode())",
        "hashlib.sha256(f\"{datetime.datetime.now().isoformat()}/{regarding.get('uid', '')}/{reason}\".encode())",
        ("tests/integration/test_handlers.py::test_same_event_twice_ends_as_one_delivery",),
    ),
    Scenario(
        "pdb-never-overridden",
        "delete-before-deadline never deletes a blocked pod: it dies with the instance, without SIGTERM",
        EVICT,
        "            and self.options.blocked_pod_policy is BlockedPodPolicy.DELETE_BEFORE_DEADLINE\n",
        "            and self.options.blocked_pod_policy is BlockedPodPolicy.RESPECT_PDB\n",
        (
            "tests/integration/test_incomplete_drains.py"
            "::test_delete_before_deadline_deletes_a_blocked_pod_when_only_its_grace_period_is_left",
        ),
    ),
    Scenario(
        "respect-pdb-ignored",
        "BlockedPodPolicy=respect-pdb deletes past the PDB all the same",
        EVICT,
        "            and self.options.blocked_pod_policy is BlockedPodPolicy.DELETE_BEFORE_DEADLINE\n",
        "            and self.options.blocked_pod_policy is not None\n",
        (
            "tests/integration/test_incomplete_drains.py"
            "::test_respect_pdb_leaves_the_blocked_pods_and_reports_the_drain_incomplete",
        ),
    ),
    Scenario(
        "emptydir-metric-not-emitted",
        "PodsWithEmptyDirEvicted is no longer emitted",
        f"{CORE}/report.py",
        "    count(Metric.PODS_WITH_LOCAL_DATA, drain.emptydir_pods)\n",
        "",
        (
            "tests/integration/test_incomplete_drains.py"
            "::test_the_pods_with_emptydir_data_and_without_a_controller_are_counted",
        ),
    ),
    # the long drains (issue 20): each bug below passed the integration tier before its test
    Scenario(
        "stale-lease-never-taken-over",
        "a drain lease whose holder missed its own promise is never taken over: a replay drains nothing",
        f"{CORE}/kube/lease.py",
        "    if now >= until + STALE_MARGIN_SECONDS:\n        return None  # its holder missed its own promise: gone\n",
        "",
        (
            "tests/integration/test_health_followed.py::test_a_replay_takes_over_the_lease_of_an_execution_that_missed_its_own_promise",
        ),
    ),
    Scenario(
        "round-ignores-the-lease",
        "a drain round drains whoever holds the node's lease: two executions drain one node",
        f"{CORE}/long_drain.py",
        "        held = hold_lease(service.kube(), found, holder, self.clock(), stop_by + next_round_within)\n",
        "        held = None\n",
        (
            "tests/integration/test_health_followed.py::test_a_draining_execution_stops_when_a_newer_version_takes_over_and_when_the_event_closes",
        ),
    ),
    Scenario(
        "one-instance-stops-the-others",
        "one instance's failed round stops the rounds of every other instance of the Health event",
        f"{CORE}/long_drain_each.py",
        "                del draining[instance_id]\n                last = None\n",
        "                raise\n",
        (
            "tests/reliability/test_health_instance_faults.py"
            "::test_one_instance_failing_for_good_leaves_the_other_drained_and_the_execution_failed",
        ),
    ),
    Scenario(
        "closed-event-drains",
        "a closed Health event cordons and drains a running node instead of handing it back",
        f"{CORE}/policy.py",
        "    if event.health is not None and event.health.closed and presence is Presence.LIVE:\n",
        "    if False:\n",
        (
            "tests/integration/test_health_followed.py::test_a_closed_event_hands_a_running_node_back_and_leaves_an_operators_cordon",
        ),
    ),
    Scenario(
        "no-recheck-after-the-wait",
        "an instance stopped and started during the wait is drained all the same",
        f"{CORE}/long_drain.py",
        "        if instance is not None and instance.restarted_since(event.time):\n",
        "        if False:\n",
        (
            "tests/integration/test_health_followed.py::test_an_instance_stopped_and_started_since_the_event_is_not_drained_and_is_handed_back",
        ),
    ),
    Scenario(
        "reboot-never-handed-back",
        "after a reboot maintenance the node stays cordoned for good",
        f"{CORE}/scheduled_drain.py",
        "    if reboots(events[0]):\n",
        "    if False:\n",
        (
            "tests/integration/test_health_followed.py::test_after_a_reboot_maintenance_the_node_is_handed_back_once_it_booted_again_and_runs",
        ),
    ),
    Scenario(
        "rounds-share-an-invocation",
        "the rounds of every instance of a Health event run in one invocation, towards its timeout",
        f"{CORE}/long_drain_each.py",
        '            ctx.wait(PAUSE, name=f"pause-{instance_id}-{rounds}")\n',
        "",
        (
            "tests/integration/test_long_drains.py"
            "::test_a_health_event_for_three_instances_cordons_all_at_once_and_drains_each_at_its_lead_time",
        ),
    ),
)

# What a copy of the work tree leaves out: tools, caches, the local EKS's state, build output.
NOT_COPIED = (
    ".git",
    ".venv",
    ".venv-sam",
    ".local",
    ".local-*",  # make test's tiers and workers: a local EKS each
    ".tier-logs",
    ".aws-sam",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "__pycache__",
    "*.pyc",
    "*.png",
)


@dataclass
class ScenarioResult:
    name: str
    bug: str
    path: str
    tests: list[str]
    status: str  # killed, survived, stale (the text is not there once), invalid (baseline failed), error
    detail: str = ""
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_clean(path: str) -> bool | None:
    done = subprocess.run(["git", "diff", "--quiet", "--exit-code", "--", path], cwd=REPO, check=False)
    return {0: True, 1: False}.get(done.returncode)


def _pytest(tree: Path, tests: list[str], junit: Path, timeout: float) -> tuple[int, dict[str, str], str]:
    """Runs ``tests`` in ``tree`` (its own code on the path) against the running local EKS; the exit
    code, each test's outcome (passed, failed, error, skipped) and the output's tail."""
    env = {**_clean_env(), "PYTHONPATH": str(tree), "LOCALEKS_STATE": str(_state())}
    command = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return -1, {}, f"timed out after {timeout:.0f} s"
    outcomes: dict[str, str] = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 (pytest's own report)
            name = f"{case.get('classname')}::{case.get('name')}"
            kinds = {child.tag for child in case}
            outcomes[name] = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        junit.unlink()
    return done.returncode, outcomes, (done.stdout + done.stderr)[-2500:]


def run_scenarios(
    scenarios: tuple[Scenario, ...] | list[Scenario], workdir: Path, timeout: float = 900
) -> list[ScenarioResult]:
    """Each scenario on one copy of the work tree: the file mutated, the tests run, the file put
    back (checked), the repo's own file never written (checked by hash and git)."""
    tree = workdir / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(*NOT_COPIED))
    results: list[ScenarioResult] = []
    started_here = (
        _local_eks_up() if any(t.startswith("tests/integration/") for s in scenarios for t in s.tests) else None
    )
    try:
        all_tests = sorted({t for s in scenarios for t in s.tests})
        print(f"scenarios: baseline of {len(all_tests)} test(s) on the unmutated copy", flush=True)
        _, baseline, baseline_out = _pytest(tree, all_tests, workdir / "baseline.xml", timeout)
        for scenario in scenarios:
            results.append(_run_one(scenario, tree, workdir, baseline, baseline_out, timeout))
            print(f"  {scenario.name}: {results[-1].status} ({results[-1].seconds:.0f} s)", flush=True)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
        if started_here is not None:
            from localeks.cluster import down

            down(started_here)
    return results


def _state() -> Path:
    return Path(os.environ.get("LOCALEKS_STATE") or REPO / ".local").resolve()


def _local_eks_up() -> Any:
    """Starts the local EKS unless it runs (the tests' fixture would start and stop it for each
    scenario); returns its Paths when it was started here, to be stopped at the end."""
    from localeks.cluster import Paths, supervisor_alive, up

    paths = Paths(_state())
    if supervisor_alive(paths) and paths.env_file.exists():
        return None
    print("scenarios: starting the local EKS", flush=True)
    up(paths, "local-eks", 0.1)
    return paths


def _failing(outcomes: dict[str, str], tests: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The named tests' ids (a node id names a test, or all the cases of a parametrized one) that
    failed, and those that did not pass for another reason (an error in setup, skipped, not run)."""
    failed, other = [], []
    for test in tests:
        module, _, name = test.partition("::")
        classname = module.removesuffix(".py").replace("/", ".")
        cases = {
            k: v for k, v in outcomes.items() if k == f"{classname}::{name}" or k.startswith(f"{classname}::{name}[")
        }
        if not cases:
            other.append(f"{test}: not run")
        failed += [k for k, v in cases.items() if v == "failure"]
        other += [f"{k}: {v}" for k, v in cases.items() if v in ("error", "skipped")]
    return failed, other


def _run_one(
    scenario: Scenario,
    tree: Path,
    workdir: Path,
    baseline: dict[str, str],
    baseline_out: str,
    timeout: float,
) -> ScenarioResult:
    started = time.monotonic()
    result = ScenarioResult(scenario.name, scenario.bug, scenario.path, list(scenario.tests), "error")
    original_file = REPO / scenario.path
    repo_sha, repo_clean = _sha(original_file), _git_clean(scenario.path)
    target = tree / scenario.path
    original = target.read_text()
    try:
        failed, other = _failing(baseline, scenario.tests)
        if failed or other:
            result.status, result.detail = "invalid", f"fails unmutated: {failed + other}\n{baseline_out}"
            return result
        if original.count(scenario.find) != 1:
            result.status = "stale"
            result.detail = f"the text to mutate is in {scenario.path} {original.count(scenario.find)} times, not once"
            return result
        target.write_text(original.replace(scenario.find, scenario.replace))
        code, outcomes, out = _pytest(tree, list(scenario.tests), workdir / "scenario.xml", timeout)
        failed, other = _failing(outcomes, scenario.tests)
        result.failed = failed
        if failed:
            result.status = "killed"
        elif code == 0 and not other:
            result.status = "survived"
        else:
            result.detail = f"exit {code}; {other}\n{out}"
    finally:
        target.write_text(original)
        result.seconds = round(time.monotonic() - started, 1)
    if target.read_text() != original:
        raise SystemExit(f"{scenario.name}: the copy of {scenario.path} was not restored")
    if _sha(original_file) != repo_sha or _git_clean(scenario.path) != repo_clean:
        raise SystemExit(f"{scenario.name}: {scenario.path} in the repo changed while its scenario ran")
    return result
