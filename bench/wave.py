"""The wave part of `make bench` alone: the burst phase (bench/phases.bench_burst) at its full
sizes, with the load average before and after; writes wave.json and wave.md.

    python -m bench.wave --out bench/results/<date>
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

from bench.common import REPO, load_average, machine
from bench.phases import bench_burst
from bench.report import burst_lines
from bench.run import SIZES
from localeks.cluster import DEFAULT_STATE, Paths, up


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    size = SIZES["smoke" if args.smoke else "full"]
    load_start, started = load_average(), time.monotonic()
    state = Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)).resolve()
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
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wave.json").write_text(json.dumps(results, indent=2) + "\n")
    head = (
        f"Wave of {results['date']} on {results['machine']} (`python -m bench.wave`, {results['seconds']} s); "
        f"load average {load_start} at the start, {results['load_average_end']} at the end."
    )
    (args.out / "wave.md").write_text("\n".join([head, "", *burst_lines(burst)]) + "\n")
    print(f"bench: wave done in {results['seconds']} s; {args.out / 'wave.md'}")


if __name__ == "__main__":
    main()
