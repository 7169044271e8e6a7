"""A small run of the benchmark code, so that it cannot rot. It asserts no timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from localeks.cluster import REPO

REQUIRED = [
    "drain_6_evictions_sent_s",
    "drain_6_complete_s",
    "kubectl_drain_6_complete_s",
    "drain_speedup_vs_kubectl",
    "pdb_freed_to_eviction_s",
    "kubectl_pdb_freed_to_eviction_s",
    "pdb_refusals_per_pod_minute",
    "kubectl_pdb_refusals_per_pod_minute",
    "cordon_warm_s",
    "cordon_cold_s",
    "api_calls_before_cordon",
    "burst_events",
    "burst_all_cordoned_s",
    "burst_all_drained_s",
    "api_calls_per_event_small_cluster",
    "api_calls_per_event_large_cluster",
    "handler_import_s",
    "naive_import_s",
    "deployment_unzipped_mb",
]


def test_bench_smoke_run_writes_every_figure(cluster_env: dict[str, str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOCALEKS_STATE": str(Path(cluster_env["KUBECONFIG"]).parent)}
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        check=True,
        timeout=600,
    )
    results = json.loads((tmp_path / "latest.json").read_text())
    missing = [k for k in REQUIRED if not isinstance(results.get(k), int | float)]
    assert missing == []
    assert results["burst_events"] == 8
    assert results["details"]["burst"]["large"]["outcomes"] == {"drained": 8}
    assert results["api_calls_before_cordon"] == 3  # DescribeInstances, GET node, PATCH node
    assert (tmp_path / "latest.png").stat().st_size > 10_000
    assert "kubectl drain" in (tmp_path / "latest.md").read_text()
