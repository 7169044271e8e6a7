"""Cold start and deployment size of what `sam build` produced (.aws-sam/build), as Lambda runs it.

    python -m bench.size            # prints the figures (starts the local EKS if needed)

The bench runner calls ``cold_start_and_size(cluster_env, scenes, repeats)``. Figures:

- ``deployment_unzipped_mb``: the functions plus their layers, unzipped (every file of
  .aws-sam/build but the template).
- ``first_event_s``: a fresh process imports a built function's handler module (Lambda's init:
  settings, AWS clients, tracer) and handles its first event, a rebalance recommendation for a
  node of the local EKS (cordon and taint), until the handler returns; median of ``repeats``.
- ``naive_import_s``: the naive import the brief compares against (bench/naive_import.py, in .venv).
- ``first_event_vs_naive``: their ratio, in the same run; ``first_event_vs_naive_cpu`` the ratio
  of the same runs' CPU time (user + sys), which other work on a shared machine disturbs less.

The functions run as Lambda lays them out: the function's build directory is the task root, the
core layer's and the deps layer's python/ directories stand for /opt/python, and the interpreter
runs with ``-S`` (no site-packages: nothing comes from .venv). One difference, said here and in the
README: the deps layer is built for this machine (same layers/deps/Makefile, same requirements and
slimming, wheels for this CPU and Python), since the arm64 extension modules of the built layer
(pydantic-core and others) cannot load on x86_64. Everything else is the `sam build` output.
Tracing is off, as under `sam local` (AWS_SAM_LOCAL); ``first_event_tracing_on_s`` is the same
first event with Powertools' Tracer on (X-Ray SDK loaded, botocore patched; no daemon listens).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, function_environment, median

# sam build's output; NTH_BUILD_DIR names another (sam build --build-dir), e.g. to leave a shared
# checkout's .aws-sam alone
BUILD = Path(os.environ.get("NTH_BUILD_DIR", REPO / ".aws-sam" / "build")).resolve()
DEPS = REPO / "layers" / "deps"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "eks-nth-deps-host"
FIRST_EVENT_FUNCTION = "RebalanceRecommendationFunction"


def deployment_unzipped_mb(build: Path = BUILD) -> float:
    """Functions plus layers as `sam build` left them, unzipped, in MB (10^6 bytes)."""
    total = sum(
        p.stat().st_size
        for p in build.rglob("*")
        if p.is_file() and p.name != "template.yaml" and "__pycache__" not in p.parts
    )
    return round(total / 1e6, 1)


def built_functions(build: Path = BUILD) -> list[str]:
    """Logical IDs of the built functions (their directories hold the handler module)."""
    return sorted(p.parent.name for p in build.glob("*/app.py"))


def host_deps_layer() -> Path:
    """The deps layer built for this machine by layers/deps/Makefile (its python/ directory),
    cached by the inputs of the build."""
    machine = platform.machine()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = hashlib.sha256()
    for name in ("requirements.txt", "Makefile", "slim.py"):
        key.update((DEPS / name).read_bytes())
    key.update((REPO / "layers/core/python/serverless_nth/aws/clients.py").read_bytes())
    key.update(f"{machine} {version}".encode())
    layer = CACHE / key.hexdigest()[:16]
    if (layer / "python").is_dir():
        return layer / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
    platforms = " ".join(f"{tag}_{machine}" for tag in ("manylinux2014", "manylinux_2_17", "manylinux_2_28"))
    subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(DEPS),
            "build-DepsLayer",
            f"ARTIFACTS_DIR={scratch}",
            f"PYTHON_VERSION={version}",
            f"PLATFORMS={platforms}",
            f"SO_TAG={machine}-linux-gnu",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        scratch.rename(layer)
    except OSError:  # built meanwhile by another run
        shutil.rmtree(scratch, ignore_errors=True)
    for old in CACHE.iterdir():  # layers of earlier inputs (about 58 MB each)
        if old != layer and not old.name.startswith(("build-", "pycache")):
            shutil.rmtree(old, ignore_errors=True)
    return layer / "python"


def lambda_layout(function: str, build: Path = BUILD) -> tuple[Path, list[Path]]:
    """Task root and the /opt/python directories of a built function (core layer, then deps)."""
    return build / function, [build / "CoreLayer" / "python", host_deps_layer()]


def _child(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=REPO).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH "))
    return dict(json.loads(line[len("BENCH ") :]))


def _env(cluster_env: dict[str, str], tracing: bool = False, build: Path = BUILD) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(REPO),  # bench.cold_child and localeks.lambda_runtime: standard library only
        # byte code cached between runs, as for the naive import, but outside the build output
        "PYTHONPYCACHEPREFIX": str(CACHE / "pycache"),
        **function_environment(cluster_env),
    }
    if tracing:  # as in Lambda with tracing active: the task root is set, no `sam local`
        del env["AWS_SAM_LOCAL"]
        env.update(
            LAMBDA_TASK_ROOT=str(build / FIRST_EVENT_FUNCTION),
            AWS_XRAY_CONTEXT_MISSING="LOG_ERROR",
            AWS_XRAY_DAEMON_ADDRESS="127.0.0.1:2000",
            _X_AMZN_TRACE_ID="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
    return env


def _cold_argv(function: str, *extra: str, build: Path = BUILD) -> list[str]:
    task_root, (core, deps) = lambda_layout(function, build)
    return [sys.executable, "-S", "-m", "bench.cold_child", str(task_root), str(core), *extra, f"--deps={deps}"]


def first_event(cluster_env: dict[str, str], scenes: Any, tracing: bool = False, build: Path = BUILD) -> dict[str, Any]:
    """One cold start of the rebalance function with its first event, for a fresh spot node."""
    from tests.eventfiles import load_event

    scene = scenes.worker_node(spot=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(load_event("rebalance-recommendation", instance_id=scene.instance_id, now=True), f)
    try:
        return _child(_cold_argv(FIRST_EVENT_FUNCTION, f.name, build=build), _env(cluster_env, tracing, build))
    finally:
        os.unlink(f.name)


def cold_start(
    cluster_env: dict[str, str], scenes: Any, repeats: int, build: Path = BUILD, functions: int | None = None
) -> dict[str, Any]:
    """Cold starts from the build: each built function's import with its init (the first
    ``functions`` of them when given: the smoke's tiny size), the first event, the naive import."""
    env = _env(cluster_env, build=build)
    per_function = {}
    for function in built_functions(build)[:functions]:
        argv = _cold_argv(function, build=build)
        _child(argv, env)  # the first run writes the .pyc files, as for the naive import
        per_function[function] = median([_child(argv, env)["import_s"] for _ in range(repeats)])
    firsts = [first_event(cluster_env, scenes, build=build) for _ in range(repeats)]
    traced = [first_event(cluster_env, scenes, tracing=True, build=build) for _ in range(repeats)]
    naive_argv = [sys.executable, "-m", "bench.naive_import"]
    _child(naive_argv, env)
    naives = [_child(naive_argv, env) for _ in range(repeats)]
    naive = median([r["import_s"] for r in naives])
    first = median([r["import_s"] + r["handled_s"] for r in firsts])
    # CPU time (user + sys) of the same runs: less sensitive to other work on a shared machine
    first_cpu = median([r["import_cpu_s"] + r["handled_cpu_s"] for r in firsts])
    naive_cpu = median([r["import_cpu_s"] for r in naives])
    return {
        "first_event_s": first,
        "first_event_cpu_s": first_cpu,
        "first_event_init_s": median([r["import_s"] for r in firsts]),
        "first_event_handled_s": median([r["handled_s"] for r in firsts]),
        "first_event_tracing_on_s": median([r["import_s"] + r["handled_s"] for r in traced]),
        "first_event_tracing_on_cpu_s": median([r["import_cpu_s"] + r["handled_cpu_s"] for r in traced]),
        "built_handler_import_s": per_function,  # import with its init, each function
        "naive_import_s": naive,
        "naive_import_cpu_s": naive_cpu,
        "first_event_vs_naive": round(first / naive, 3),
        "first_event_vs_naive_cpu": round(first_cpu / naive_cpu, 3),
        "init_vs_naive": round(max(per_function.values()) / naive, 3),
    }


def cold_start_and_size(
    cluster_env: dict[str, str], scenes: Any, repeats: int, build: Path = BUILD, functions: int | None = None
) -> dict[str, Any]:
    """What the bench runner records: ``first_event_vs_naive`` and ``deployment_unzipped_mb`` (keys
    of latest.json), with the figures behind them (for ``details``)."""
    if not built_functions(build):
        subprocess.run(
            [str(REPO / ".venv-sam" / "bin" / "sam"), "build", "--build-dir", str(build)], cwd=REPO, check=True
        )
    return {
        "deployment_unzipped_mb": deployment_unzipped_mb(build),
        **cold_start(cluster_env, scenes, repeats, build, functions),
    }


def main() -> None:
    import argparse

    from localeks.cluster import DEFAULT_STATE, Paths, up
    from localeks.scenes import Scenes

    parser = argparse.ArgumentParser(prog="bench.size", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--build-dir", type=Path, default=BUILD, help="sam build's output (default .aws-sam/build)")
    args = parser.parse_args()
    cluster_env = up(Paths(Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)).resolve()), "local-eks", 0.1)
    figures = cold_start_and_size(cluster_env, Scenes(cluster_env), args.repeats, args.build_dir.resolve())
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
