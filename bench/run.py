"""`make bench`: every benchmark against the local EKS; writes results/latest.{json,md,png}.

    python -m bench.run            # the full run (under 15 minutes on 2 cores)
    python -m bench.run --smoke    # tiny sizes, to keep the code from rotting (the test suite runs it)

Phases: imports and cold start (bench/size.py), reaction (event to cordon, warm and cold), drain
(ours against `kubectl drain` at kwok speed 0.1), pdb (a budget freeing up, both sides at once),
burst (per-event CPU and requests, cordon bursts with every event in flight, the harness alone, a
Spot burst), real-grace (the 110-pod drain against `kubectl drain` at kwok speed 1, on a second
local EKS started for it). The load average at the start and the end is recorded: on a shared
machine the timings are contended. Figures are medians over repeated runs where repeated;
nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import REPO, function_environment, handle, load_average, machine, median, warm_service
from localeks.cluster import DEFAULT_STATE, Paths, supervisor_alive, up
from localeks.progress import Progress, duration
from localeks.scenes import Scenes

HANDLERS = ["spot_interruption", "rebalance_recommendation", "state_change"]
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "drain": {30: 1, 110: 2},  # pods -> repeats
        "real_grace": (110, 1),  # pods, repeats; at kwok speed 1
        # burst: (nodes cordoned with every event in flight, nodes drained one event each for
        # the per-event sample, nodes drained by the burst at `workers * threads` in flight)
        "burst_small": (100, 20, 0),
        "burst_large": (1000, 20, 100),
        "burst_pods": 20,
        "workers": 10,
        "threads": 10,
        "imports": 3,
        "reactions": 5,
        "pdb_blocked_s": 10.0,
        "pdb_rounds": 3,
    },
    "smoke": {
        "drain": {6: 1},
        "real_grace": (6, 1),
        "burst_small": (4, 2, 0),
        "burst_large": (8, 2, 4),
        "burst_pods": 2,
        "workers": 2,
        "threads": 2,
        "imports": 1,
        "reactions": 2,
        "pdb_blocked_s": 3.0,
        "pdb_rounds": 1,
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


def bench_drain(cluster_env: dict[str, str], scenes: Scenes, service: Any, sizes: dict[int, int]) -> dict[str, Any]:
    from bench.drain import kubectl, ours, seed_node

    out: dict[str, Any] = {}
    for size, repeats in sizes.items():
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
        out[str(size)]["repeats"] = repeats
        out[str(size)]["speedup"] = round(out[str(size)]["kubectl_s"] / out[str(size)]["complete_s"], 2)
        print(f"bench: drain {size} pods: {out[str(size)]}", flush=True)
    return out


def speed1_paths(state: Path) -> Paths:
    """The state of the kwok-speed-1 cluster the real-grace drain runs on: in the temp directory,
    named after the main cluster's state (LOCALEKS_SPEED1_STATE says otherwise)."""
    digest = hashlib.sha256(str(state).encode()).hexdigest()[:8]
    default = Path(tempfile.gettempdir()) / f"localeks-speed1-{digest}"
    return Paths(Path(os.environ.get("LOCALEKS_SPEED1_STATE", default)).resolve())


def bench_real_grace(state: Path, pods: int, repeats: int) -> dict[str, Any]:
    """The 110-pod drain at real grace periods, on a second local EKS whose kwok runs at speed 1
    (started for this phase unless one runs already, and stopped after it if started here), from
    a process of its own: the function's AWS session there is that cluster's."""
    paths = speed1_paths(state)
    started_here = not (supervisor_alive(paths) and paths.env_file.exists())
    began = time.monotonic()
    up(paths, "local-eks", 1.0)
    try:
        up_s = time.monotonic() - began
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "bench.drain", str(paths.state), str(pods), str(repeats)]
        try:
            out = child_json(argv, env)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"the real-grace drain failed: {exc.stderr[-3000:]}") from exc
        out["cluster_up_s"] = round(up_s, 1)
        print(f"bench: real grace: {out}", flush=True)
        return out
    finally:
        if started_here:  # stopped in the background: it takes up to half a minute
            subprocess.Popen(
                [sys.executable, "-m", "localeks", "down", "--state", str(paths.state)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )


def bench_pdb(
    cluster_env: dict[str, str], scenes: Scenes, service: Any, blocked_s: float, rounds: int
) -> dict[str, Any]:
    from bench import pdb

    results = pdb.compare(cluster_env, scenes, service, blocked_s, rounds)
    print(f"bench: PDB freed -> eviction: ours {results['ours']}, kubectl {results['kubectl']}", flush=True)
    return results


def bench_burst(cluster_env: dict[str, str], state: Path, size: dict[str, Any]) -> dict[str, Any]:
    """Per cluster size: every node's rebalance recommendation in flight at once (cordon only);
    a sample of Spot interruptions, one per worker (the per-event requests and CPU with little
    else running); on the large cluster a burst of Spot interruptions at ``workers x threads`` in
    flight (cordon, taint, drain). And the harness alone: the same release of every thread with
    no handler."""
    from bench.burst import Workers, cluster_nodes, seed_pool

    results: dict[str, Any] = {}
    workers = Workers(cluster_env, str(state), size["workers"])
    results["workers"] = workers.startup
    try:
        for label in ("small", "large"):
            cordon_n, sample_n, drain_n = size[f"burst_{label}"]
            started = time.monotonic()
            pool = seed_pool(cluster_env, sample_n + drain_n + cordon_n, size["burst_pods"], label, sample_n + drain_n)
            sample, drained = pool[:sample_n], pool[sample_n : sample_n + drain_n]
            cordoned = pool[sample_n + drain_n :]
            per_worker = -(-cordon_n // size["workers"])  # every event in flight
            out: dict[str, Any] = {
                "cluster_nodes": cluster_nodes(cluster_env),
                "seed_s": round(time.monotonic() - started, 1),
            }
            out["harness_only"] = workers.burst("noop", cordoned, per_worker)
            out["cordon"] = workers.burst("cordon", cordoned, per_worker)
            out["sample"] = workers.burst("drain", sample, 1)
            if drained:
                out["drain"] = workers.burst("drain", drained, size["threads"])
            results[label] = out
            brief = {
                k: {x: y for x, y in v.items() if x != "handler_cpu_ms"} if isinstance(v, dict) else v
                for k, v in out.items()
            }
            print(f"bench: burst {label}: {brief}", flush=True)
    finally:
        workers.close()
    return results


def unzipped_mb() -> float:
    build = REPO / ".aws-sam" / "build"
    if not build.exists():
        subprocess.run(
            [str(REPO / ".venv-sam" / "bin" / "sam"), "build"], cwd=REPO, check=True, stdout=subprocess.DEVNULL
        )
    total = sum(p.stat().st_size for p in build.rglob("*") if p.is_file() and p.name != "template.yaml")
    return round(total / 1e6, 1)


PHASES = ["imports", "cold-start", "reaction", "drain", "pdb", "burst", "real-grace"]


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


def cpu_percentiles(bursts: list[dict[str, Any]]) -> tuple[float, float]:
    """Median and p99 of the handler CPU per event over ``bursts``; the per-event lists are then
    taken out of the details (thousands of numbers)."""
    from bench.burst import percentile

    values = [v for b in bursts for v in b.pop("handler_cpu_ms")]
    return round(percentile(values, 0.5), 2), round(percentile(values, 0.99), 2)


def bench_cold_start(
    cluster_env: dict[str, str], scenes: Scenes, imports: dict[str, Any], repeats: int
) -> dict[str, Any]:
    """``first_event_vs_naive`` (the first event handled by a built function, init included,
    against the naive import) and ``deployment_unzipped_mb``, from bench/size.py. Should it be
    missing or fail, the import-with-init ratio above and the unzipped build stand in, and
    ``error`` says why."""
    fallback = {
        "first_event_vs_naive": round(imports["handler_import_s"] / imports["naive_import_s"], 3),
        "deployment_unzipped_mb": unzipped_mb(),
    }
    try:
        from bench.size import cold_start_and_size

        return dict(cold_start_and_size(cluster_env, scenes, repeats))
    except Exception as exc:  # the rest of the run still counts; the error is recorded
        stderr = getattr(exc, "stderr", "") or ""
        print(f"bench: cold start from the build failed, figures from the imports phase: {exc} {stderr[-1500:]}")
        return {**fallback, "error": f"{type(exc).__name__}: {exc}"[:500] + stderr[-1000:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    size = SIZES["smoke" if args.smoke else "full"]
    started = time.monotonic()
    load_start = load_average()
    state = Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)).resolve()
    paths = Paths(state)
    cluster_env = up(paths, "local-eks", 0.1)
    scenes = Scenes(cluster_env)
    service = warm_service(cluster_env)
    service.kube().request("GET", "/version")  # warm: cluster data, token, connection

    phases = Phases(args.out, args.smoke)
    with phases.phase("imports"):
        imports = bench_imports(cluster_env, size["imports"])
    print(f"bench: imports {imports}", flush=True)
    with phases.phase("cold-start"):
        cold = bench_cold_start(cluster_env, scenes, imports, size["imports"])
    print(f"bench: cold start and size {cold}", flush=True)
    with phases.phase("reaction"):
        reaction = bench_reaction(cluster_env, scenes, service, size["reactions"])
    print(f"bench: reaction {reaction}", flush=True)
    with phases.phase("drain"):
        drain = bench_drain(cluster_env, scenes, service, size["drain"])
    with phases.phase("pdb"):
        budget = bench_pdb(cluster_env, scenes, service, size["pdb_blocked_s"], size["pdb_rounds"])
    with phases.phase("burst"):
        burst = bench_burst(cluster_env, state, size)
    with phases.phase("real-grace"):
        real = bench_real_grace(state, *size["real_grace"])
    key = "110" if "110" in drain else next(iter(drain))
    small, large = burst["small"], burst["large"]
    # the samples: one event per worker process at a time, the least the harness can add
    cpu_p50, cpu_p99 = cpu_percentiles([small["sample"], large["sample"]])
    cordon_cpu_p50, cordon_cpu_p99 = cpu_percentiles([small["cordon"], large["cordon"]])
    for label in ("small", "large"):
        for name in ("harness_only", "sample", "cordon", "drain"):
            burst[label].get(name, {}).pop("handler_cpu_ms", None)
    n_small, n_large = size["burst_small"][0], size["burst_large"][0]
    in_small, in_large = small["cordon"]["in_flight"], large["cordon"]["in_flight"]
    rg = real["pods"]
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "load_average_start": load_start,
        "kwok_speed": float(cluster_env["LOCALEKS_SPEED"]),
        "smoke": args.smoke,
        f"drain_{key}_evictions_sent_s": drain[key]["evictions_sent_s"],
        f"drain_{key}_evictions_answered_s": drain[key]["evictions_answered_s"],
        f"drain_{key}_complete_s": drain[key]["complete_s"],
        f"kubectl_drain_{key}_complete_s": drain[key]["kubectl_s"],
        "drain_speedup_vs_kubectl": drain[key]["speedup"],
        # at kwok speed 1, no PDB: seconds over the floor (longest grace + one eviction round trip)
        f"drain_{rg}_real_grace_overhead_s": real["overhead_s"],
        f"kubectl_drain_{rg}_real_grace_overhead_s": real["kubectl_overhead_s"],
        f"drain_{rg}_real_grace_complete_s": real["complete_s"],
        f"kubectl_drain_{rg}_real_grace_complete_s": real["kubectl_s"],
        "real_grace_floor_s": real["floor_s"],
        "pdb_freed_to_eviction_s": budget["ours"]["freed_to_eviction_s"],
        "kubectl_pdb_freed_to_eviction_s": budget["kubectl"]["freed_to_eviction_s"],
        "pdb_refusals_per_pod_minute": budget["ours"]["refusals_per_pod_minute"],
        "kubectl_pdb_refusals_per_pod_minute": budget["kubectl"]["refusals_per_pod_minute"],
        "cordon_warm_s": reaction["cordon_warm_s"],
        "cordon_cold_s": reaction["cordon_cold_s"],
        "api_calls_before_cordon": reaction["api_calls_before_cordon"],
        "api_calls_before_cordon_cold": reaction["api_calls_before_cordon_cold"],
        "burst_events": large["drain"]["events"],
        "burst_pods": size["burst_pods"],
        "burst_in_flight": large["drain"]["in_flight"],
        "burst_all_cordoned_s": large["drain"]["all_cordoned_s"],
        "burst_all_drained_s": large["drain"]["all_done_s"],
        # Kubernetes requests per Spot interruption (20 pods drained), one event per worker
        "api_calls_per_event_small_cluster": small["sample"]["kube_requests_per_event"],
        "api_calls_per_event_large_cluster": large["sample"]["kube_requests_per_event"],
        # every request the handler sent (Kubernetes and EC2), counted at its transport
        f"requests_per_event_{n_small}_nodes": small["sample"]["requests_per_event"],
        f"requests_per_event_{n_large}_nodes": large["sample"]["requests_per_event"],
        "requests_per_event_growth": round(
            large["sample"]["requests_per_event"] / small["sample"]["requests_per_event"], 3
        ),
        "handler_cpu_ms_per_event_p50": cpu_p50,
        "handler_cpu_ms_per_event_p99": cpu_p99,
        "handler_cpu_ms_per_cordon_event_p50": cordon_cpu_p50,
        "handler_cpu_ms_per_cordon_event_p99": cordon_cpu_p99,
        f"cordon_p50_s_{in_small}_in_flight": small["cordon"]["event_to_cordon_p50_s"],
        f"cordon_p99_s_{in_small}_in_flight": small["cordon"]["event_to_cordon_p99_s"],
        f"cordon_p50_s_{in_large}_in_flight": large["cordon"]["event_to_cordon_p50_s"],
        f"cordon_p99_s_{in_large}_in_flight": large["cordon"]["event_to_cordon_p99_s"],
        # events of the cordon bursts that failed (Lambda would retry them); the percentiles are
        # of the others
        f"cordon_errors_{in_small}_in_flight": small["cordon"]["errors"],
        f"cordon_errors_{in_large}_in_flight": large["cordon"]["errors"],
        f"harness_dispatch_p99_s_{in_large}_in_flight": large["harness_only"]["dispatch_p99_s"],
        "handler_import_s": imports["handler_import_s"],
        "naive_import_s": imports["naive_import_s"],
        "handler_modules_import_s": imports["handler_modules_import_s"],
        "handler_import_vs_naive": round(imports["handler_import_s"] / imports["naive_import_s"], 3),
        "handler_modules_import_vs_naive": round(imports["handler_modules_import_s"] / imports["naive_import_s"], 3),
        "first_event_vs_naive": cold["first_event_vs_naive"],
        "deployment_unzipped_mb": cold["deployment_unzipped_mb"],
        "details": {
            "drain": drain,
            "real_grace": real,
            "burst": burst,
            "imports": imports,
            "reaction": reaction,
            "pdb": budget,
            "cold_start": cold,
        },
        "bench_seconds": round(time.monotonic() - started, 1),
        "load_average_end": load_average(),
        "phase_seconds": phases.seconds,  # the next run's estimates
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    from bench.report import write_chart, write_table

    write_table(results, args.out / "latest.md")
    write_chart(results, args.out / "latest.png")
    print(
        f"bench: done in {results['bench_seconds']} s (load average {load_start} at the start, "
        f"{results['load_average_end']} at the end); {args.out / 'latest.json'}"
    )


if __name__ == "__main__":
    main()
