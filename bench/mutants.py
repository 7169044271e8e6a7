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
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORE = Path("layers/core/python/serverless_nth")
RESULTS = REPO / "bench" / "results"
THRESHOLD = 0.90
WORKDIR = Path(os.environ.get("MUTANTS_WORKDIR") or Path(tempfile.gettempdir()) / "serverless-nth-mutants")

# --- unit part: mutmut on the pure core ------------------------------------------------------

# Which mutants count, by mutmut's names (module.x_function__mutmut_N, or module.xǁClassǁmethod__...):
# the pure parts of the core. Of kube/client.py only the error mapping is pure.
SCOPE = (
    "serverless_nth.events.*",  # every parser, the envelope checks, the event's age
    "serverless_nth.policy.*",  # the decision table and the per-node policy
    "serverless_nth.config.*",  # environment -> Settings
    "serverless_nth.instance.*",  # EC2's state -> presence, the cluster tags
    "serverless_nth.kube.pods.*",  # kubectl drain's filters, grace periods, the DaemonSet check
    "serverless_nth.kube.nodes.*",  # node identity (providerID, InternalIP) and the lookup
    "serverless_nth.kube.cordon.*",  # the cordon and restore patches, their 409 retries
    "serverless_nth.kube.client.x__error__mutmut_*",  # HTTP answer -> typed error
    "serverless_nth.kube.client.x__retry_after__mutmut_*",
    "serverless_nth.kube.client.x__json__mutmut_*",
)
# Unit test files that are not run under mutmut: this runner's own smoke test drives the runner.
NOT_STAGED = ("test_mutation_runner.py",)

# Survivors that are acceptable, by function and the mutated line (mutmut's numbering changes with
# the code; the line does not). Each says why no test can or should tell it apart.
_PY311_Z = (
    "equivalent: datetime.fromisoformat reads a trailing Z itself since Python 3.11 (Lambda runs 3.13), and "
    "the timestamps read here (RFC 3339 from EventBridge, Kubernetes' own) never have a lower-case z"
)
_SAME_LENGTH = "equivalent: both sequences zipped are made from the same list, so their lengths are always equal"
_NO_TZ = (
    "unreachable: the envelope's time has matched RFC 3339 with Z or an offset before pydantic parses it, so "
    "the parsed time always has a zone; the check stays as a guard"
)
_TAINT_KEY = (
    "unreachable: the API server refuses a taint without a key; without one the mutant reads it as not ours too"
)
_HAS_METADATA = "unreachable: an object the API server returns (here a DaemonSet) always has metadata"
_SAME_KEY = (
    "equivalent: every DaemonSet pod's key is in the verdicts, made by the same expression, so the default "
    "is never used (and None is as false as False)"
)
_THREADS = "equivalent: the bound on threads asking for DaemonSets changes how many run at once, not any answer"
_DECODE = (
    "equivalent: this decode runs only on a body json.loads read, which is valid UTF-8, so the error handler is "
    "never called; errors=None raises TypeError, caught, and the fallback decodes the same way"
)
_UNSCHEDULABLE = "equivalent: bool(None) is False, as bool(False)"
ACCEPTED: dict[tuple[str, str], str] = {
    **{
        ("serverless_nth.events.capacity_reservation.x_normalise", line): _PY311_Z
        for line in (
            'ends_at = datetime.datetime.fromisoformat(parsed.detail.termination_time.replace("XXZXX", "+00:00"))',
            'ends_at = datetime.datetime.fromisoformat(parsed.detail.termination_time.replace("z", "+00:00"))',
        )
    },
    **{
        ("serverless_nth.kube.pods.x_deletion_time", line): _PY311_Z
        for line in (
            'return datetime.datetime.fromisoformat(str(stamp).replace("XXZXX", "+00:00")).timestamp()',
            'return datetime.datetime.fromisoformat(str(stamp).replace("z", "+00:00")).timestamp()',
        )
    },
    **{
        ("serverless_nth.events.parsing.x_parse_eventbridge", line): _NO_TZ
        for line in (
            "raise MalformedEvent(None)",
            'raise MalformedEvent("XXevent time has no timezoneXX")',
            'raise MalformedEvent("EVENT TIME HAS NO TIMEZONE")',
        )
    },
    **{
        (
            "serverless_nth.kube.client.x__error",
            f'reason = str(status_body.get("message", "")) or {decode}[:300]',
        ): _DECODE
        for decode in ("data.decode(errors=None)", 'data.decode(errors="XXreplaceXX")', 'data.decode(errors="REPLACE")')
    },
    (
        "serverless_nth.kube.client.x__retry_after",
        'return seconds if seconds is not None and 0 <= seconds < float("INF") else None',
    ): 'equivalent: float("INF") is float("inf")',
    **{
        ("serverless_nth.kube.cordon.x__restore_patch", line): _SAME_LENGTH
        for strict in ("strict=None", "", "strict=False")
        for line in (
            f'undone = [str(t.get("key")) for t, mine in zip(node.taints, is_ours, {strict}) if mine]',
            f'spec["taints"] = [t for t, mine in zip(node.taints, is_ours, {strict}) if not mine] or None',
        )
    },
    **{
        ("serverless_nth.kube.cordon.x__restore_patch", line): _TAINT_KEY
        for line in (
            'is_ours = [t.get("key", ).startswith(f"{TAINT_PREFIX}/") or t.get("key") in ours for t in node.taints]',
            'is_ours = [t.get("key", None).startswith(f"{TAINT_PREFIX}/") or t.get("key") in ours for t in node.taints]',
            'is_ours = [t.get("key", "XXXX").startswith(f"{TAINT_PREFIX}/") or t.get("key") in ours for t in node.taints]',
        )
    },
    (
        "serverless_nth.kube.cordon.x_cordon_and_taint",
        "done = CordonResult(None, not current.unschedulable, tuple(t.key for t in missing), add_label)",
    ): (
        "equivalent: this result is returned only after a PATCH, and then with the node the server answered; "
        "when nothing is written the other branch returns the node as it is"
    ),
    **{
        ("serverless_nth.kube.nodes.xǁNodeǁfrom_api", line): _UNSCHEDULABLE
        for line in (
            'unschedulable=bool(spec.get("unschedulable", None)),',
            'unschedulable=bool(spec.get("unschedulable", )),',
        )
    },
    **{
        ("serverless_nth.kube.pods.x_orphaned_daemonset_pods", line): _HAS_METADATA
        for line in (
            'return bool(uid) and found.get("metadata", None).get("uid") != uid',
            'return bool(uid) and found.get("metadata", ).get("uid") != uid',
        )
    },
    **{
        ("serverless_nth.kube.pods.x_orphaned_daemonset_pods", line): _THREADS
        for line in (
            "with ThreadPoolExecutor(max_workers=None) as pool:",
            "with ThreadPoolExecutor(max_workers=min(17, len(owners))) as pool:",
        )
    },
    **{
        ("serverless_nth.kube.pods.x_orphaned_daemonset_pods", line): _SAME_LENGTH
        for strict in ("strict=None", "", "strict=False")
        for line in (f"verdicts = dict(zip(owners, pool.map(gone, owners), {strict}))",)
    },
    **{
        ("serverless_nth.kube.pods.x_orphaned_daemonset_pods", line): _SAME_KEY
        for default in ("None", "", "True")
        for line in (
            "return [p for p in pods if (o := daemonset_owner(p)) is not None and "
            f"verdicts.get(_key(p, o), {default})]",
        )
    },
}

DETECTED = {"killed", "timeout"}


def _function_of(mutant: str) -> str:
    return mutant.partition("__mutmut_")[0]


def _in_scope(mutant: str) -> bool:
    return any(fnmatch.fnmatchcase(mutant, pattern) for pattern in SCOPE)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def stage(workdir: Path) -> None:
    """The staging directory: the core at src/serverless_nth, the unit tier, what it reads, and a
    pyproject.toml with the repo's [tool.mutmut] and a pytest setup for this layout."""
    shutil.rmtree(workdir, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *NOT_STAGED)
    shutil.copytree(REPO / CORE, workdir / "src" / "serverless_nth", ignore=ignore)
    (workdir / "tests").mkdir(parents=True)
    for name in ("__init__.py", "conftest.py", "eventfiles.py"):
        shutil.copy2(REPO / "tests" / name, workdir / "tests" / name)
    shutil.copytree(REPO / "tests" / "unit", workdir / "tests" / "unit", ignore=ignore)
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    for name in config.get("also_copy", []):  # what the unit tests read: sample events, the template
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=ignore)
        else:
            shutil.copy2(source, workdir / name)
    lines = ["[tool.mutmut]", *(f"{k} = {_toml_value(v)}" for k, v in config.items())]
    lines += ["", "[tool.pytest.ini_options]", 'pythonpath = ["."]', "timeout = 300", ""]
    (workdir / "pyproject.toml").write_text("\n".join(lines))


def _statuses(workdir: Path) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code

    statuses: dict[str, str] = {}
    for meta in sorted((workdir / "mutants" / "src").rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if _in_scope(name):
                statuses[name] = status_by_exit_code[code]
    return statuses


def _diffs(workdir: Path, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    script = (
        "import json, sys\n"
        "from mutmut.mutation.diff_apply import get_diff_for_mutant\n"
        "print(json.dumps({n: get_diff_for_mutant(n) for n in json.load(sys.stdin)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=workdir,
        input=json.dumps(names),
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
    )
    return dict(json.loads(done.stdout))


def _changed_lines(diff: str, sign: str) -> str:
    lines = diff.splitlines()[2:]  # after the --- / +++ header
    return " / ".join(line[1:].strip() for line in lines if line.startswith(sign))


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the staging directory's own layout only
    env.pop("MUTANT_UNDER_TEST", None)
    return env


def run_unit(workdir: Path, workers: int) -> dict[str, Any]:
    """mutmut on SCOPE in a fresh staging directory; the verdict of every mutant in scope."""
    started = time.monotonic()
    stage(workdir)
    log = workdir / "mutmut.log"
    print(f"mutmut: staged in {workdir}; running with {workers} worker(s), log in {log}", flush=True)
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(workers), *SCOPE],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"mutmut failed ({done.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    statuses = _statuses(workdir)
    if not statuses:
        raise SystemExit(f"mutmut produced no mutant in scope; see {log}")
    undetected = sorted(n for n, s in statuses.items() if s not in DETECTED)
    diffs = _diffs(workdir, undetected)
    survivors = []
    for name in undetected:
        mutated = _changed_lines(diffs[name], "+")
        reason = ACCEPTED.get((_function_of(name), mutated))
        survivors.append(
            {
                "mutant": name,
                "status": statuses[name],
                "original": _changed_lines(diffs[name], "-"),
                "mutated": mutated,
                "reason": reason,
            }
        )
    counts = Counter(statuses.values())
    by_module: dict[str, Counter[str]] = {}
    for name, status in statuses.items():
        module = _function_of(name).rpartition(".")[0]
        by_module.setdefault(module, Counter())["detected" if status in DETECTED else "undetected"] += 1
    detected = sum(counts[s] for s in DETECTED)
    return {
        "tool": f"mutmut {_mutmut_version()}",
        "scope": list(SCOPE),
        "tests": "tests/unit",
        "total": len(statuses),
        "killed": counts["killed"],
        "timeout": counts["timeout"],
        "survived": counts["survived"],
        "no_tests": counts["no tests"],
        "other": {s: c for s, c in counts.items() if s not in ("killed", "timeout", "survived", "no tests")},
        "score": round(detected / len(statuses), 4),
        "by_module": {m: dict(c) for m, c in sorted(by_module.items())},
        "survivors": survivors,
        "unexplained": [s["mutant"] for s in survivors if not s["reason"]],
        "seconds": round(time.monotonic() - started, 1),
    }


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


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
)

# What a copy of the work tree leaves out: tools, caches, the local EKS's state, build output.
NOT_COPIED = (
    ".git",
    ".venv",
    ".venv-sam",
    ".local",
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
