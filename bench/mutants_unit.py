"""`make mutants`' unit part (bench/mutants.py says what the whole does): mutmut on the pure core
(SCOPE) in a staging directory, against the unit tier; every survivor must be in ACCEPTED with the
reason it is acceptable. Also what both parts share: where the repo and the core are, the work
directory, and the environment their subprocesses get (``_clean_env``)."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
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
