"""The wave part of `make bench` alone: the burst phase (bench/phases.bench_burst) at its full
sizes, with the load average before and after; writes wave.json and wave.md.

    python -m bench.wave --out bench/results/<date>
"""

from __future__ import annotations

import datetime
import time

from bench.common import arguments, load_average, local_eks_state, machine, write_results
from bench.phases import bench_burst
from bench.report import burst_lines
from bench.run import SIZES
from localeks.cluster import Paths, up


def main() -> None:
    args = arguments()
    size = SIZES["smoke" if args.smoke else "full"]
    load_start, started = load_average(), time.monotonic()
    state = local_eks_state()
    cluster_env = up(Paths(state), "local-eks", 0.1)
    burst = bench_burst(cluster_env, state, size)
    for label in ("small", "large"):
        for part in burst[label].values():
            if isinstance(part, dict):
                part.pop("handler_cpu_ms", None)
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "load_average_start": load_start,
        "smoke": args.smoke,
        "burst": burst,
        "seconds": round(time.monotonic() - started, 1),
        "load_average_end": load_average(),
    }
    head = (
        f"Wave of {results['date']} on {results['machine']} (`python -m bench.wave`, {results['seconds']} s); "
        f"load average {load_start} at the start, {results['load_average_end']} at the end."
    )
    write_results(args.out, "wave", results, head, burst_lines(burst))


if __name__ == "__main__":
    main()
