"""A small run of bench/multi.py (issue #21: one deployment, many clusters), so that it cannot
rot. It asserts requests and outcomes, no timing. It starts the local EKS of three clusters in two
accounts beside this process's cluster state (``<state>-multi``), or reuses one running there."""

from __future__ import annotations

from pathlib import Path

from tests.bench.smoke import missing_figures, run_smoke
from tests.conftest import cluster_state

REQUIRED = [
    "multi_clusters_known",
    "multi_requests_per_event_1_cluster_warm",
    "multi_requests_per_event_1_cluster_cold",
    "multi_cpu_ms_per_event_1_cluster_warm",
    "multi_cpu_ms_per_event_1_cluster_cold",
    "multi_warm_ratio_requests",
    "multi_warm_ratio_cpu",
    "multi_discovery_extra_requests",
    "multi_discovery_extra_ms",
    "multi_discovery_extra_requests_member",
    "multi_discovery_extra_ms_member",
    "multi_wave_cordon_p50_s",
    "multi_wave_cordon_p99_s",
]


def test_bench_multi_smoke_writes_every_figure(tmp_path: Path) -> None:
    results = run_smoke("bench.multi", cluster_state(), tmp_path, "multi.json", timeout=900)
    assert missing_figures(results, REQUIRED) == []
    known = results["multi_clusters_known"]
    assert known >= 6
    runs = results["details"]["runs"]
    for name in ("single_alpha", f"fleet_{known}_alpha", f"fleet_{known}_beta", f"fleet_{known}_gamma"):
        assert runs[name]["outcomes"] == {"drained": 3}, name
    single, beta, gamma = runs["single_alpha"], runs[f"fleet_{known}_beta"], runs[f"fleet_{known}_gamma"]
    # warm: DescribeInstances and the Kubernetes requests, the same whatever the clusters known
    assert single["warm"]["requests"] == beta["warm"]["requests"] == gamma["warm"]["requests"]
    assert beta["warm"]["aws_list_clusters"] == beta["warm"]["aws_describe_cluster"] == 0
    # cold: a single-cluster deployment describes its cluster; another cluster of this account
    # also lists the account's clusters; a member account's also assumes the member role
    assert single["cold"]["aws_describe_cluster"] == 1
    assert single["cold"]["aws_list_clusters"] == 0
    assert beta["cold"]["aws_list_clusters"] == 1
    assert beta["cold"]["aws_assume_role"] == 0
    assert gamma["cold"]["aws_list_clusters"] == 1
    assert gamma["cold"]["aws_assume_role"] >= 1
    # the core's counters agree with the requests counted at botocore's endpoint
    for run in (single, beta, gamma):
        assert sum(run["cold"]["aws_at_transport"].values()) == run["cold"]["requests"] - run["cold"]["kube"]
    wave = results["details"]["wave"]
    assert wave["outcomes"] == {"drained": 9}
    assert set(wave["by_cluster_p99_s"]) == {"alpha", "beta", "gamma"}
    assert results["details"]["wave_single_cluster"]["outcomes"] == {"drained": 9}
    assert "Spot wave" in (tmp_path / "multi.md").read_text()
