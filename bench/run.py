"""`make bench`: every benchmark against the local EKS; writes results/latest.{json,md,png}.

    python -m bench.run            # the full run (under 15 minutes on 2 cores)
    python -m bench.run --smoke    # tiny sizes, to keep the code from rotting (the test suite runs it)

Figures are medians over repeated runs; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import REPO, function_environment, handle, machine, median, warm_service
from localeks.cluster import DEFAULT_STATE, Paths, up
from localeks.progress import Progress, duration
from localeks.scenes import Scenes

HANDLERS = ["spot_interruption", "rebalance_recommendation", "state_change"]
SIZES = {
    "full": {
        "drain": [30, 110, 250],
        "repeats": 3,
        "burst_small": (100, 20),
        "burst_large": (1000, 20),
        "workers": 10,
        "threads": 10,
        "imports": 5,
        "reactions": 5,
        "pdb_blocked_s": 15.0,
    },
    "smoke": {
        "drain": [6],
        "repeats": 1,
        "burst_small": (4, 2),
        "burst_large": (8, 2),
        "workers": 2,
        "threads": 2,
        "imports": 2,
        "reactions": 2,
        "pdb_blocked_s": 3.0,
    },
}


def child_json(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=REPO).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH "))
    return dict(json.loads(line[len("BENCH ") :]))


def child_env(cluster_env: dict[str, str]) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(REPO),
        **function_environment(cluster_env),
    }


def bench_imports(cluster_env: dict[str, str], repeats: int) -> dict[str, Any]:
    env = child_env(cluster_env)
    layer = str(REPO / "layers" / "core" / "python")
    per_handler = {}
    for name in HANDLERS:
        argv = [sys.executable, "-m", "bench.cold_child", str(REPO / "handlers" / name), layer]
        child_json(argv, env)  # first run compiles .pyc files; Lambda ships them compiled too
        per_handler[name] = median([child_json(argv, env)["import_s"] for _ in range(repeats)])
    modules_argv = [
        sys.executable,
        "-m",
        "bench.cold_child",
        str(REPO / "handlers" / HANDLERS[0]),
        layer,
        "--modules-only",
    ]
    modules = median([child_json(modules_argv, env)["import_s"] for _ in range(repeats)])
    naive_argv = [sys.executable, "-m", "bench.naive_import"]
    child_json(naive_argv, env)
    naive = median([child_json(naive_argv, env)["import_s"] for _ in range(repeats)])
    return {
        "per_handler_s": per_handler,
        "handler_import_s": max(per_handler.values()),  # import + init, as Lambda's init phase runs it
        "handler_modules_import_s": modules,  # the same imports without the init
        "naive_import_s": naive,
    }


def bench_reaction(cluster_env: dict[str, str], scenes: Scenes, service: Any, repeats: int) -> dict[str, Any]:
    """Handler start -> node cordoned, for a rebalance recommendation (cordon and taint only)."""
    from bench.drain import spot_event
    from serverless_nth.events.model import EventKind

    warm, warm_requests, cold, cold_requests = [], [], [], []
    for _ in range(repeats):
        scene = scenes.worker_node(spot=True)
        event = spot_event(scene.instance_id)
        event = type(event)(
            EventKind.REBALANCE_RECOMMENDATION,
            event.event_id,
            event.instance_id,
            event.region,
            event.account,
            event.time,
        )
        result = handle(service, event)
        warm.append(result.cordoned_after_seconds)
        warm_requests.append(result.requests_to_cordon)
    layer = str(REPO / "layers" / "core" / "python")
    for _ in range(repeats):
        scene = scenes.worker_node(spot=True)
        from tests.eventfiles import load_event

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(load_event("rebalance-recommendation", instance_id=scene.instance_id, now=True), f)
        argv = [
            sys.executable,
            "-m",
            "bench.cold_child",
            str(REPO / "handlers" / "rebalance_recommendation"),
            layer,
            f.name,
        ]
        out = child_json(argv, child_env(cluster_env))
        os.unlink(f.name)
        cold.append(out["import_s"] + out["cordoned_after_s"])
        cold_requests.append(out["requests_to_cordon"])
    return {
        "cordon_warm_s": median(warm),
        "cordon_cold_s": median(cold),
        "api_calls_before_cordon": int(median(warm_requests)),
        "api_calls_before_cordon_cold": int(median(cold_requests)),
    }


def bench_drain(
    cluster_env: dict[str, str], scenes: Scenes, service: Any, sizes: list[int], repeats: int
) -> dict[str, Any]:
    from bench.drain import kubectl, ours, seed_node

    out: dict[str, Any] = {}
    for size in sizes:
        runs: dict[str, list[float]] = {
            "evictions_sent_s": [],
            "evictions_answered_s": [],
            "complete_s": [],
            "kubectl_s": [],
            "api_requests": [],
        }
        for _ in range(repeats):
            ours_node, kubectl_node = seed_node(scenes, size), seed_node(scenes, size)
            for _node in (ours_node, kubectl_node):  # replacements need room: a spare node per node drained
                scenes.worker_node(spot=False)
            mine = ours(service, ours_node)
            runs["evictions_sent_s"].append(mine["evictions_sent_s"])
            runs["evictions_answered_s"].append(mine["evictions_answered_s"])
            runs["complete_s"].append(mine["complete_s"])
            runs["api_requests"].append(mine["api_requests"])
            runs["kubectl_s"].append(kubectl(cluster_env, kubectl_node))
        out[str(size)] = {k: median(v) for k, v in runs.items()}
        out[str(size)]["speedup"] = round(out[str(size)]["kubectl_s"] / out[str(size)]["complete_s"], 2)
        print(f"bench: drain {size} pods: {out[str(size)]}", flush=True)
    return out


def bench_pdb(cluster_env: dict[str, str], scenes: Scenes, service: Any, blocked_s: float) -> dict[str, Any]:
    from bench import pdb

    results = {"ours": pdb.ours(scenes, service, blocked_s), "kubectl": pdb.kubectl(cluster_env, scenes, blocked_s)}
    print(f"bench: PDB freed -> eviction {results}", flush=True)
    return results


def bench_burst(cluster_env: dict[str, str], size: dict[str, Any]) -> dict[str, Any]:
    from bench.burst import run_burst, seed_pool

    results = {}
    for label, (nodes, pods) in (("small", size["burst_small"]), ("large", size["burst_large"])):
        started = time.monotonic()
        pool_nodes = seed_pool(cluster_env, nodes, pods, label)
        seeded = time.monotonic() - started
        results[label] = {
            "nodes": nodes,
            "pods": nodes * pods,
            "seed_s": round(seeded, 1),
            **run_burst(cluster_env, pool_nodes, size["workers"], size["threads"]),
        }
        print(f"bench: burst {label}: {results[label]}", flush=True)
    return results


def unzipped_mb() -> float:
    build = REPO / ".aws-sam" / "build"
    if not build.exists():
        subprocess.run(
            [str(REPO / ".venv-sam" / "bin" / "sam"), "build"], cwd=REPO, check=True, stdout=subprocess.DEVNULL
        )
    total = sum(p.stat().st_size for p in build.rglob("*") if p.is_file() and p.name != "template.yaml")
    return round(total / 1e6, 1)


PHASES = ["imports", "reaction", "drain", "pdb", "burst"]


class Phases:
    """Says which phase runs, a line every 30 s while it does, and how long it took, against the
    same phase of the last run written to ``out`` (``phase_seconds`` in latest.json)."""

    def __init__(self, out: Path, smoke: bool) -> None:
        self.progress = Progress("bench")
        self.seconds: dict[str, float] = {}
        self.started = time.monotonic()
        self.last: dict[str, float] = {}
        last_total = None
        with contextlib.suppress(OSError, ValueError):
            last = json.loads((out / "latest.json").read_text())
            if bool(last.get("smoke")) == smoke:
                self.last = dict(last.get("phase_seconds") or {})
                last_total = last.get("bench_seconds")
        since = f"; the last {'smoke ' if smoke else ''}run took {duration(last_total)}" if last_total else ""
        self.progress.say(f"{len(PHASES)} phases: {', '.join(PHASES)}{since}")

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        last = self.last.get(name)
        than = f" (last run: {duration(last)})" if last else ""
        self.progress.say(f"[{PHASES.index(name) + 1}/{len(PHASES)}] {name}{than}")
        started = time.monotonic()

        def status(elapsed: float) -> str:
            left = f", about {duration(last - elapsed)} left by the last run" if last and last > elapsed else ""
            return f"  still {name}: {duration(elapsed)}{left}"

        with self.progress.ticking(status):
            yield
        self.seconds[name] = round(time.monotonic() - started, 1)
        self.progress.say(
            f"  {name} done in {duration(self.seconds[name])}; whole run {duration(time.monotonic() - self.started)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    size = SIZES["smoke" if args.smoke else "full"]
    started = time.monotonic()
    paths = Paths(Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)).resolve())
    cluster_env = up(paths, "local-eks", 0.1)
    scenes = Scenes(cluster_env)
    service = warm_service(cluster_env)
    service.kube().request("GET", "/version")  # warm: cluster data, token, connection

    phases = Phases(args.out, args.smoke)
    with phases.phase("imports"):
        imports = bench_imports(cluster_env, size["imports"])
    print(f"bench: imports {imports}", flush=True)
    with phases.phase("reaction"):
        reaction = bench_reaction(cluster_env, scenes, service, size["reactions"])
    print(f"bench: reaction {reaction}", flush=True)
    with phases.phase("drain"):
        drain = bench_drain(cluster_env, scenes, service, size["drain"], size["repeats"])
    with phases.phase("pdb"):
        budget = bench_pdb(cluster_env, scenes, service, size["pdb_blocked_s"])
    with phases.phase("burst"):
        burst = bench_burst(cluster_env, size)
    key = "110" if "110" in drain else str(size["drain"][0])
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "kwok_speed": float(cluster_env["LOCALEKS_SPEED"]),
        "smoke": args.smoke,
        f"drain_{key}_evictions_sent_s": drain[key]["evictions_sent_s"],
        f"drain_{key}_evictions_answered_s": drain[key]["evictions_answered_s"],
        f"drain_{key}_complete_s": drain[key]["complete_s"],
        f"kubectl_drain_{key}_complete_s": drain[key]["kubectl_s"],
        "drain_speedup_vs_kubectl": drain[key]["speedup"],
        "pdb_freed_to_eviction_s": round(budget["ours"]["freed_to_eviction_s"], 3),
        "kubectl_pdb_freed_to_eviction_s": round(budget["kubectl"]["freed_to_eviction_s"], 3),
        "pdb_refusals_per_pod_minute": round(budget["ours"]["refusals_per_pod_minute"], 1),
        "kubectl_pdb_refusals_per_pod_minute": round(budget["kubectl"]["refusals_per_pod_minute"], 1),
        "cordon_warm_s": reaction["cordon_warm_s"],
        "cordon_cold_s": reaction["cordon_cold_s"],
        "api_calls_before_cordon": reaction["api_calls_before_cordon"],
        "api_calls_before_cordon_cold": reaction["api_calls_before_cordon_cold"],
        "burst_events": burst["large"]["events"],
        "burst_all_cordoned_s": burst["large"]["all_cordoned_s"],
        "burst_all_drained_s": burst["large"]["all_drained_s"],
        "api_calls_per_event_small_cluster": burst["small"]["apiserver_requests_per_event"],
        "api_calls_per_event_large_cluster": burst["large"]["apiserver_requests_per_event"],
        "handler_import_s": imports["handler_import_s"],
        "naive_import_s": imports["naive_import_s"],
        "handler_modules_import_s": imports["handler_modules_import_s"],
        "handler_import_vs_naive": round(imports["handler_import_s"] / imports["naive_import_s"], 3),
        "handler_modules_import_vs_naive": round(imports["handler_modules_import_s"] / imports["naive_import_s"], 3),
        "deployment_unzipped_mb": unzipped_mb(),
        "details": {"drain": drain, "burst": burst, "imports": imports, "reaction": reaction, "pdb": budget},
        "bench_seconds": round(time.monotonic() - started, 1),
        "phase_seconds": phases.seconds,  # the next run's estimates
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    from bench.report import write_chart, write_table

    write_table(results, args.out / "latest.md")
    write_chart(results, args.out / "latest.png")
    print(f"bench: done in {results['bench_seconds']} s; {args.out / 'latest.json'}")


if __name__ == "__main__":
    main()
