"""The wave part of `make bench` alone: the burst phase (bench/phases.bench_burst) at its full
sizes, with the load average before and after; writes wave.json and wave.md.

    python -m bench.wave --out bench/results/<date>
"""

from __future__ import annotations

import time

from bench.common import arguments, load_average, local_eks_state, phase_results, write_results
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
    results = phase_results(started, load_start, args.smoke, {"burst": burst})
    write_results(args.out, "wave", results, "Wave of", "python -m bench.wave", burst_lines(burst))


if __name__ == "__main__":
    main()
