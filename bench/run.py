"""`make bench`: every benchmark against the local EKS; writes results/latest.{json,md,png}.

    python -m bench.run            # the full run (under 15 minutes on 2 cores)
    python -m bench.run --smoke    # tiny sizes, to keep the code from rotting (the test suite runs it)

Phases: imports and cold start (bench/size.py), reaction (event to cordon, warm and cold), drain
(ours against `kubectl drain` at kwok speed 0.1), pdb (a budget freeing up, both sides at once),
burst (per-event CPU and requests, cordon bursts with every event in flight, the harness alone, a
Spot burst), real-grace (the 110-pod drain against `kubectl drain` at kwok speed 1, on a second
local EKS started for it), multi-cluster (one deployment serving many clusters, issue #21:
requests and CPU per event with 1 and 100 clusters known, the cold start's discovery, a Spot wave
over three clusters; bench/multi.py, on its own local EKS of three clusters in two accounts; the
smoke skips it, tests/bench/test_bench_multi_smoke.py runs `python -m bench.multi --smoke`). The load average at the start and the end is recorded: on a shared
machine the timings are contended. Figures are medians over repeated runs where repeated;
nothing here asserts a timing.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import arguments, load_average, local_eks_state, machine, warm_service
from bench.multi import SIZES as MULTI_SIZES
from bench.multi import bench_multi, headline
from bench.order import bench_order
from bench.phases import (  # noqa: F401 (the names callers used from here)
    HANDLERS,
    Speed1,
    bench_burst,
    bench_cold_start,
    bench_drain,
    bench_imports,
    bench_pdb,
    bench_reaction,
    bench_real_grace,
    child_env,
    child_json,
    cpu_percentiles,
    speed1_paths,
    unzipped_mb,
)
from localeks.cluster import Paths, up
from localeks.progress import Progress, duration
from localeks.scenes import Scenes

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
        "cold_functions": None,  # every built function's cold import
        "reactions": 5,
        "pdb_blocked_s": 10.0,
        "pdb_rounds": 3,
        # a Spot warning's 120 s; the ordinary pods' own 100 s would leave the critical pods'
        # 30 s no room after them: the split has to give it to them
        "order": {"ordinary": 100, "critical": 5, "ordinary_grace": 100, "critical_grace": 30, "deadline_s": 120},
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
        "cold_functions": 1,  # one built function's cold import (the first event is measured as in the full run)
        "reactions": 2,
        "pdb_blocked_s": 3.0,
        "pdb_rounds": 1,
        "order": {"ordinary": 6, "critical": 2, "ordinary_grace": 10, "critical_grace": 3, "deadline_s": 12},
    },
}


PHASES = ["imports", "cold-start", "reaction", "drain", "pdb", "burst", "order", "real-grace", "multi-cluster"]


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
    args = arguments()
    size = SIZES["smoke" if args.smoke else "full"]
    started = time.monotonic()
    load_start = load_average()
    state = local_eks_state()
    paths = Paths(state)
    cluster_env = up(paths, "local-eks", 0.1)
    scenes = Scenes(cluster_env)
    service = warm_service(cluster_env)
    service.kube().request("GET", "/version")  # warm: cluster data, token, connection

    phases = Phases(args.out, args.smoke)
    speed1 = Speed1(state)
    if args.smoke:  # its start overlaps the phases before real-grace (the smoke's timings are no results)
        speed1.start()
    try:
        with phases.phase("imports"):
            imports = bench_imports(cluster_env, size["imports"])
        print(f"bench: imports {imports}", flush=True)
        with phases.phase("cold-start"):
            cold = bench_cold_start(cluster_env, scenes, imports, size["imports"], size["cold_functions"])
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
        with phases.phase("order"):  # on the kwok-speed-1 local EKS, which real-grace then stops
            order = bench_order(speed1, size["order"])
        with phases.phase("real-grace"):
            real = bench_real_grace(state, *size["real_grace"], speed1)
    finally:
        speed1.stop()
    multi: dict[str, Any] = {}
    if not args.smoke:  # the smoke's is tests/bench/test_bench_multi_smoke.py, on its own local EKS
        with phases.phase("multi-cluster"):  # after real-grace stopped the kwok-speed-1 local EKS
            multi = bench_multi(state, MULTI_SIZES["full"])
    key = "110" if "110" in drain else next(iter(drain))
    small, large = burst["small"], burst["large"]
    # the samples: one event per worker process at a time, the least the harness can add
    cpu_p50, cpu_p99 = cpu_percentiles([small["sample"], large["sample"]])
    cordon_cpu_p50, cordon_cpu_p99 = cpu_percentiles([small["cordon"], large["cordon"]])
    for label in ("small", "large"):
        for name in ("harness_only", "sample", "cordon", "drain", "drain_flowcontrol"):
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
        # the same Spot burst on other nodes with k8s/flowcontrol.yaml applied: APF's 429s without and with
        "burst_apf_rejected": large["drain"]["apf_rejected"],
        "burst_apf_rejected_with_flowcontrol": large["drain_flowcontrol"]["apf_rejected"],
        "burst_all_drained_s_with_flowcontrol": large["drain_flowcontrol"]["all_done_s"],
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
        # drain order at a Spot warning's deadline, kwok speed 1: seconds from the handler's start
        "order_ordinary_gone_s": order["ordinary_gone_s"],
        "order_critical_first_sigterm_s": order["critical_first_sigterm_s"],
        "order_critical_gone_s": order["critical_gone_s"],
        "order_left_before_deadline_s": order["left_before_deadline_s"],
        "order_critical_after_ordinary": order["critical_after_ordinary"],
        "order_all_gone_before_deadline": order["all_gone_before_deadline"],
        "deployment_unzipped_mb": cold["deployment_unzipped_mb"],
        # one deployment serving many clusters (bench/multi.py)
        **(headline(multi) if multi else {}),
        "details": {
            "multi_cluster": multi,
            "drain": drain,
            "real_grace": real,
            "order": order,
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
