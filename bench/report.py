"""The markdown table and the chart of a benchmark run (the README shows both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_table(r: dict[str, Any], path: Path) -> None:
    drain = r["details"]["drain"]
    burst = r["details"]["burst"]
    lines = [
        f"Run of {r['date']} on {r['machine']}; kwok speed factor {r['kwok_speed']} (a 30 s grace period lasts "
        f"{30 * r['kwok_speed']:.0f} s); medians. `make bench` wrote it.",
        "",
        "| drain of one node | all evictions sent / answered | drain complete | `kubectl drain` | speed-up | our API requests |",
        "|---|---|---|---|---|---|",
    ]
    for size, d in drain.items():
        lines.append(
            f"| {size} pods | {d['evictions_sent_s']:.2f} s / {d['evictions_answered_s']:.2f} s | {d['complete_s']:.2f} s | {d['kubectl_s']:.2f} s "
            f"| {d['speedup']:.1f}x | {d['api_requests']:.0f} |"
        )
    lines += [
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
        f"| function + layers, unzipped | {r['deployment_unzipped_mb']} MB |",
        "",
        "| PDB freed up (budget opened after the node waited on it) | ours | `kubectl drain` |",
        "|---|---|---|",
        f"| budget reports a disruption allowed -> first pod deleting | {r['pdb_freed_to_eviction_s']:.2f} s "
        f"| {r['kubectl_pdb_freed_to_eviction_s']:.2f} s |",
        f"| eviction refusals per blocked pod per minute | {r['pdb_refusals_per_pod_minute']:.1f} "
        f"| {r['kubectl_pdb_refusals_per_pod_minute']:.1f} |",
        "",
        "| burst of Spot interruptions | nodes / pods | events | concurrency | all cordoned | all drained | API server requests / event | APF 429s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, b in burst.items():
        lines.append(
            f"| {label} cluster | {b['nodes']} / {b['pods']} | {b['events']} | {b['concurrency']} | {b['all_cordoned_s']:.1f} s "
            f"| {b['all_drained_s']:.1f} s | {b['apiserver_requests_per_event']} | {b['apf_rejected']:.0f} |"
        )
    path.write_text("\n".join(lines) + "\n")


def write_chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drain = r["details"]["drain"]
    sizes = list(drain)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(sizes))
    width = 0.38
    left.bar([i - width / 2 for i in x], [drain[s]["complete_s"] for s in sizes], width, label="serverless-nth")
    left.bar([i + width / 2 for i in x], [drain[s]["kubectl_s"] for s in sizes], width, label="kubectl drain")
    left.set_xticks(list(x), [f"{s} pods" for s in sizes])
    left.set_ylabel("seconds to drain complete (median)")
    left.set_title("Drain of one node")
    left.legend()
    labels = ["handler import", "naive import", "cordon warm", "cordon cold"]
    values = [r["handler_import_s"], r["naive_import_s"], r["cordon_warm_s"], r["cordon_cold_s"]]
    right.barh(labels, [v * 1000 for v in values], color=["C0", "C7", "C0", "C0"])
    right.set_xlabel("milliseconds (median)")
    right.set_title("Cold start and reaction")
    fig.suptitle(f"serverless-nth benchmarks, {r['date'][:10]}, {r['machine'].split(' (')[0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
