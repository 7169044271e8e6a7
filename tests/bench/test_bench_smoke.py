"""A small run of the benchmark code, so that it cannot rot. It asserts no timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.smoke import missing_figures, run_smoke

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
    "first_event_vs_naive",
    # issue 13: the drain at real grace periods (kwok speed 1), ours and kubectl's overhead
    "drain_6_real_grace_overhead_s",
    "kubectl_drain_6_real_grace_overhead_s",
    "real_grace_floor_s",
    # per-event figures of the bursts (the smoke's pools: 4 and 8 nodes, every event in flight)
    "handler_cpu_ms_per_event_p50",
    "handler_cpu_ms_per_event_p99",
    "handler_cpu_ms_per_cordon_event_p50",
    "requests_per_event_4_nodes",
    "requests_per_event_8_nodes",
    "requests_per_event_growth",
    "cordon_p50_s_4_in_flight",
    "cordon_p99_s_4_in_flight",
    "cordon_p99_s_8_in_flight",
    "harness_dispatch_p99_s_8_in_flight",
    # issue 22: drain order at a Spot warning's deadline (the smoke's: 12 s, 6 ordinary pods, 2 critical)
    "order_ordinary_gone_s",
    "order_critical_first_sigterm_s",
    "order_critical_gone_s",
    "order_left_before_deadline_s",
    # issue 23: APF's 429s in the Spot burst without and with k8s/flowcontrol.yaml
    "burst_apf_rejected",
    "burst_apf_rejected_with_flowcontrol",
]


def test_bench_smoke_run_writes_every_figure(cluster_env: dict[str, str], tmp_path: Path) -> None:
    state = Path(cluster_env["KUBECONFIG"]).parent
    results = run_smoke("bench.run", state, tmp_path, "latest.json", timeout=600)
    assert missing_figures(results, REQUIRED) == []
    assert results["burst_events"] == 4
    burst = results["details"]["burst"]
    assert burst["large"]["drain"]["outcomes"] == {"drained": 4}
    assert burst["small"]["cordon"]["outcomes"] == {"cordoned": 4}
    assert burst["large"]["cordon"]["outcomes"] == {"cordoned": 8}
    assert burst["large"]["cordon"]["in_flight"] == 8  # every event at once
    assert burst["large"]["harness_only"]["outcomes"] == {"noop": 8}
    # counted at the transport: DescribeInstances, GET node, PATCH node, the node's Event
    assert burst["small"]["cordon"]["requests_per_event"] == 4
    assert results["handler_cpu_ms_per_event_p50"] > 0
    real = results["details"]["real_grace"]
    assert real["kwok_speed"] == 1.0
    assert real["floor_s"] == pytest.approx(real["longest_grace_s"] + real["eviction_round_trip_s"], abs=1e-3)
    order = results["details"]["order"]
    assert order["outcome"] == "drained"
    assert results["order_critical_after_ordinary"] is True  # an order, not a timing
    assert results["order_all_gone_before_deadline"] is True
    pdb = results["details"]["pdb"]
    assert pdb["ours"]["blocked_for_s"] >= 3.0
    assert results["api_calls_before_cordon"] == 3  # DescribeInstances, GET node, PATCH node
    assert (tmp_path / "latest.png").stat().st_size > 10_000
    table = (tmp_path / "latest.md").read_text()
    assert "kubectl drain" in table
    assert "overhead over the floor" in table
    # issue 23: the same Spot burst with k8s/flowcontrol.yaml (its requests in the manifest's flow
    # schema, not global-default), and the API server's own latency for the functions' requests
    spot, spot_apf = burst["large"]["drain"], burst["large"]["drain_flowcontrol"]
    assert spot_apf["outcomes"] == {"drained": 4}
    assert set(spot["apiserver_view"]["apf_execution"]) == {"global-default"}
    assert set(spot_apf["apiserver_view"]["apf_execution"]) == {"serverless-nth"}
    assert spot["apiserver_view"]["request_latency"]["POST pods/eviction"]["count"] >= 4 * 2
    assert "| POST pods/eviction |" in table
