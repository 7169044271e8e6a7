"""The markdown table and the chart of a benchmark run (the README shows both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _cpu(b: dict[str, Any]) -> str:
    cpu = b["cpu_s"]
    parts = [f"handlers {cpu['handlers']:.1f}", f"harness {cpu['harness']:.1f}"]
    for name, label in (
        ("kube-apiserver", "apiserver"),
        ("moto+webhook", "moto+webhook"),
        ("etcd", "etcd"),
        ("kwok", "kwok"),
    ):
        if name in cpu:
            parts.append(f"{label} {cpu[name]:.1f}")
    return ", ".join(parts)


def _order_rows(o: dict[str, Any]) -> list[str]:
    """Drain order at a Spot warning's deadline (bench/order.py), from the handler's start."""
    return [
        f"| drain order: {o['ordinary']} ordinary pods ({o['ordinary_grace']} s grace), {o['critical']} critical "
        f"({o['critical_grace']} s), a {o['deadline_s']} s deadline, kwok speed 1 | seconds |",
        "|---|---|",
        f"| ordinary pods: first SIGTERM / all gone (grace given {o['ordinary_grace_given_s']} s) "
        f"| {o['ordinary_first_sigterm_s']:.2f} / {o['ordinary_gone_s']:.2f} |",
        f"| critical pods: first SIGTERM / all gone (grace given {o['critical_grace_given_s']} s) "
        f"| {o['critical_first_sigterm_s']:.2f} / {o['critical_gone_s']:.2f} |",
        f"| critical SIGTERM after the ordinary pods were gone / all gone before the deadline "
        f"| {o['critical_after_ordinary']} / {o['all_gone_before_deadline']} ({o['left_before_deadline_s']:.2f} s left) |",
    ]


def write_table(r: dict[str, Any], path: Path) -> None:
    drain = r["details"]["drain"]
    real = r["details"]["real_grace"]
    burst = r["details"]["burst"]
    pdb = r["details"]["pdb"]
    small, large = burst["small"], burst["large"]
    lines = [
        f"Run of {r['date']} on {r['machine']}; load average {r['load_average_start']} at the start, "
        f"{r['load_average_end']} at the end (the machine was shared: the timings are contended); "
        f"`make bench` wrote it in {r['bench_seconds'] / 60:.1f} min.",
        "",
        f"Drains at kwok speed factor {r['kwok_speed']} (a 30 s grace period lasts {30 * r['kwok_speed']:.0f} s), "
        "a fifth of the pods under PDBs; medians of the runs:",
        "",
        "| drain of one node | runs | all evictions sent / answered | drain complete | `kubectl drain` | speed-up | our API requests |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, d in drain.items():
        lines.append(
            f"| {size} pods | {d.get('repeats', '')} | {d['evictions_sent_s']:.2f} s / {d['evictions_answered_s']:.2f} s "
            f"| {d['complete_s']:.2f} s | {d['kubectl_s']:.2f} s | {d['speedup']:.1f}x | {d['api_requests']:.0f} |"
        )
    lines += [
        "",
        f"| {real['pods']}-pod drain at real grace periods (kwok speed {real['kwok_speed']:g}, no PDB, the same pods) | ours | `kubectl drain` |",
        "|---|---|---|",
        f"| drain complete | {real['complete_s']:.2f} s | {real['kubectl_s']:.2f} s |",
        f"| floor: longest grace {real['longest_grace_s']} s + one eviction round trip {real['eviction_round_trip_s'] * 1000:.0f} ms "
        f"| {real['floor_s']:.2f} s | {real['floor_s']:.2f} s |",
        f"| **overhead over the floor** | **{real['overhead_s']:.2f} s** | **{real['kubectl_overhead_s']:.2f} s** |",
        "",
        *_order_rows(r["details"]["order"]),
        "",
        "| reaction | figure |",
        "|---|---|",
        f"| handler start to node cordoned, warm | {r['cordon_warm_s'] * 1000:.0f} ms |",
        f"| same, cold (fresh process: import + first event) | {r['cordon_cold_s'] * 1000:.0f} ms |",
        f"| requests before the cordon, warm / cold | {r['api_calls_before_cordon']} / {r['api_calls_before_cordon_cold']} |",
        f"| handler module import with its init: settings, AWS clients, tracer (slowest of three) | {r['handler_import_s'] * 1000:.0f} ms |",
        f"| the same imports without the init | {r['handler_modules_import_s'] * 1000:.0f} ms |",
        f"| naive import (boto3, kubernetes CoreV1Api/PolicyV1Api, Powertools + parser) | {r['naive_import_s'] * 1000:.0f} ms |",
        f"| ratio to naive: with init / imports only | {r['handler_import_vs_naive'] * 100:.0f}% / {r['handler_modules_import_vs_naive'] * 100:.0f}% |",
        f"| first event reached, init included, against the naive import (`first_event_vs_naive`) | {r['first_event_vs_naive'] * 100:.0f}% |",
        f"| function + layers, unzipped | {r['deployment_unzipped_mb']} MB |",
        "",
        f"| PDB freed up (both sides at once, budgets opened after {pdb['rounds'][0]['blocked_s']:.0f} s and later; "
        f"median of {len(pdb['rounds'])} rounds) | ours | `kubectl drain` |",
        "|---|---|---|",
        f"| budget reports a disruption allowed -> first pod deleting | {r['pdb_freed_to_eviction_s']:.2f} s "
        f"| {r['kubectl_pdb_freed_to_eviction_s']:.2f} s |",
        f"| eviction refusals per blocked pod per minute | {r['pdb_refusals_per_pod_minute']:.1f} "
        f"| {r['kubectl_pdb_refusals_per_pod_minute']:.1f} |",
        "",
        "| per event, measured inside the handler's process | figure |",
        "|---|---|",
        f"| handler CPU (user + sys) per Spot interruption (cordon, taint, drain of {r.get('burst_pods', 20)} pods), "
        f"median / p99, one event per worker process | {r['handler_cpu_ms_per_event_p50']:.1f} ms / "
        f"{r['handler_cpu_ms_per_event_p99']:.1f} ms |",
        f"| the same in the Spot burst ({large['drain']['in_flight']} in flight: more polls and 429 retries per event) "
        f"| {large['drain']['handler_cpu_ms_p50']:.1f} ms / {large['drain']['handler_cpu_ms_p99']:.1f} ms |",
        f"| handler CPU per rebalance recommendation (cordon and taint only), median / p99 "
        f"| {r['handler_cpu_ms_per_cordon_event_p50']:.1f} ms / {r['handler_cpu_ms_per_cordon_event_p99']:.1f} ms |",
        f"| requests per Spot interruption (Kubernetes + EC2), {small['cordon']['events']}-node pool "
        f"({small['cluster_nodes']} nodes in the cluster) / {large['cordon']['events']}-node pool ({large['cluster_nodes']}) "
        f"| {small['sample']['requests_per_event']} / {large['sample']['requests_per_event']} "
        f"(x{r['requests_per_event_growth']:.2f}) |",
    ]
    lines += ["", *burst_lines(burst)]
    multi = r["details"].get("multi_cluster")
    if multi:  # one deployment serving many clusters (bench/multi.py)
        from bench.multi import lines as multi_lines

        lines += ["", "One deployment, many clusters (bench/multi.py):", "", *multi_lines(multi)]
    path.write_text("\n".join(lines) + "\n")


def burst_lines(burst: dict[str, Any]) -> list[str]:
    """The bursts' table, the Spot burst without and with k8s/flowcontrol.yaml, and the API
    server's own latency during each burst of the large cluster (also bench/wave.py's report)."""
    small, large = burst["small"], burst["large"]
    lines = [
        "| burst | events in flight | event -> cordoned, p50 / p99 | of which the harness's dispatch, p50 / p99 "
        "| requests / event (APF 429 retries) | CPU seconds while it ran |",
        "|---|---|---|---|---|---|",
    ]
    for b in (small, large):
        for name, what in (("harness_only", "harness alone (no handler)"), ("cordon", "rebalance: cordon only")):
            x = b[name]
            cordon = (
                "—"
                if name == "harness_only"
                else f"{x['event_to_cordon_p50_s']:.2f} s / {x['event_to_cordon_p99_s']:.2f} s"
            )
            requests = "—" if name == "harness_only" else f"{x['requests_per_event']} ({x['apf_retries_per_event']})"
            if x.get("errors"):
                cordon += f" ({x['errors']} of {x['events']} failed)"
            lines.append(
                f"| {what}, {b['cordon']['events']} nodes | {x['in_flight']} | {cordon} "
                f"| {x['dispatch_p50_s']:.3f} s / {x['dispatch_p99_s']:.3f} s | {requests} | {_cpu(x)} |"
            )
    spot = [("drain", "")] + (
        [("drain_flowcontrol", ", k8s/flowcontrol.yaml applied")] if "drain_flowcontrol" in large else []
    )
    for name, how in spot:
        d = large[name]
        lines.append(
            f"| Spot interruptions: cordon, taint, drain ({d['events']} nodes of {large['cluster_nodes']}{how}) "
            f"| {d['in_flight']} | {d['event_to_cordon_p50_s']:.2f} s / {d['event_to_cordon_p99_s']:.2f} s "
            f"| {d['dispatch_p50_s']:.3f} s / {d['dispatch_p99_s']:.3f} s | {d['requests_per_event']} ({d['apf_retries_per_event']}) "
            f"| {_cpu(d)} |"
        )
    lines.append("")
    for name, how in spot:
        d = large[name]
        lines.append(
            f"Spot interruption burst{how}: {d['events']} events, {d['in_flight']} in flight: all cordoned after "
            f"{d['all_cordoned_s']:.1f} s, all drained after {d['all_done_s']:.1f} s; outcomes {d['outcomes']}; "
            f"API priority and fairness answered 429 {d['apf_rejected']:.0f} times "
            f"(seats of the functions' level at the start: {_seats(d)})."
        )
    return [*lines, "", *_latency_lines(large, [("cordon", "cordon wave"), *spot])]


def _seats(b: dict[str, Any]) -> str:
    return ", ".join(f"{level} {n:.0f}" for level, n in b.get("apiserver_view", {}).get("seats_at_start", {}).items())


def _latency_lines(large: dict[str, Any], bursts: list[tuple[str, str]]) -> list[str]:
    named = [(large[name], how.removeprefix(", ") or name.replace("_", " ")) for name, how in bursts if name in large]
    named = [(b, label) for b, label in named if "apiserver_view" in b]
    if not named:
        return []
    lines = [
        "The API server's own latency during the bursts (its /metrics before and after; p50 / p99 from the "
        "histogram's buckets, count of requests), for the kinds of request the functions send, and the "
        "time their requests waited in API priority and fairness' queues:",
        "",
        "| request | " + " | ".join(label for _, label in named) + " |",
        "|---|" + "---|" * len(named),
    ]
    views = [b["apiserver_view"] for b, _ in named]
    for part in ("request_latency", "apf_queue_wait", "apf_execution"):
        keys = sorted({k for v in views for k in v[part]})
        for key in keys:
            cells = []
            for v in views:
                q = v[part].get(key)
                cells.append(f"{q['p50_s']:.3f} s / {q['p99_s']:.3f} s ({q['count']:.0f})" if q else "—")
            what = {"request_latency": "", "apf_queue_wait": "APF queue wait, ", "apf_execution": "APF execution, "}[
                part
            ]
            lines.append(f"| {what}{key} | " + " | ".join(cells) + " |")
    return lines


def write_chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drain = r["details"]["drain"]
    real = r["details"]["real_grace"]
    burst = r["details"]["burst"]
    sizes = list(drain)
    fig, ((left, middle), (bottom_left, right)) = plt.subplots(2, 2, figsize=(12, 8))
    x = range(len(sizes))
    width = 0.38
    left.bar([i - width / 2 for i in x], [drain[s]["complete_s"] for s in sizes], width, label="serverless-nth")
    left.bar([i + width / 2 for i in x], [drain[s]["kubectl_s"] for s in sizes], width, label="kubectl drain")
    left.set_xticks(list(x), [f"{s} pods" for s in sizes])
    left.set_ylabel("seconds to drain complete")
    left.set_title(f"Drain of one node, kwok speed {r['kwok_speed']:g}, PDBs")
    left.legend()

    sides = ["serverless-nth", "kubectl drain"]
    floor = [real["floor_s"], real["floor_s"]]
    over = [real["overhead_s"], real["kubectl_overhead_s"]]
    middle.barh(sides, floor, color="C7", label=f"floor: longest grace {real['longest_grace_s']} s + one eviction")
    middle.barh(sides, over, left=floor, color=["C0", "C1"], label="overhead over the floor")
    for i, v in enumerate(over):
        middle.text(floor[i] + v, i, f" +{v:.2f} s", va="center")
    middle.set_xlabel("seconds to drain complete")
    middle.set_title(f"{real['pods']}-pod drain at real grace periods (kwok speed 1, no PDB)")
    middle.legend(loc="lower right", fontsize=8)

    labels = ["handler import", "naive import", "cordon warm", "cordon cold"]
    values = [r["handler_import_s"], r["naive_import_s"], r["cordon_warm_s"], r["cordon_cold_s"]]
    bottom_left.barh(labels, [v * 1000 for v in values], color=["C0", "C7", "C0", "C0"])
    bottom_left.set_xlabel("milliseconds (median)")
    bottom_left.set_title("Cold start and reaction")

    pools = [burst["small"]["cordon"], burst["large"]["cordon"]]
    names = [f"{p['in_flight']} in flight" for p in pools]
    xs = range(len(pools))
    right.bar(
        [i - width / 2 for i in xs], [p["event_to_cordon_p50_s"] for p in pools], width, label="event -> cordoned p50"
    )
    right.bar([i + width / 2 for i in xs], [p["event_to_cordon_p99_s"] for p in pools], width, label="p99")
    right.bar(
        [i + width / 2 for i in xs],
        [p["dispatch_p99_s"] for p in pools],
        width * 0.5,
        color="C7",
        label="harness dispatch p99",
    )
    right.set_xticks(list(xs), names)
    right.set_ylabel("seconds")
    right.set_title(
        f"Cordon burst, every event in flight (CPU/event: {r['handler_cpu_ms_per_cordon_event_p50']:.0f} ms median)"
    )
    right.legend(fontsize=8)
    fig.suptitle(
        f"serverless-nth benchmarks, {r['date'][:10]}, {r['machine'].split(' (')[0]}, "
        f"load {r['load_average_start'].split()[0]}-{r['load_average_end'].split()[0]} (contended)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
