"""One deployment serving many clusters (issue #21 part 6): what routing costs per event, what
discovery costs on a cold start, and a Spot wave over three real clusters. A phase of `make
bench`; alone:

    python -m bench.multi --out bench/results/<date>        # the full sizes, a few minutes
    python -m bench.multi --smoke --out /tmp/x              # tiny (tests/bench runs it)

It starts its own local EKS of three clusters in two accounts (``<state>-multi``, as
tests/integration/multi.py does: alpha and beta in 123456789012, gamma in 210987654321) and stops
it at the end (one already running there is reused and left running).

1. Per event, one execution environment (a fresh process running handlers/spot_interruption/app.py,
   Powertools and all) handling Spot warnings one after the other: the first is the cold start's,
   the rest are warm. Configurations: ``single`` (CLUSTERS empty: a single-cluster deployment of
   alpha, 1 cluster known), ``fleet_3`` (CLUSTERS="*" and the member account; the three real
   clusters are all moto's EKS knows), ``fleet_100_*`` (the same after registering clusters in
   moto's EKS of both accounts up to 100, only the three real ones with an API server), each on
   nodes of alpha (the stack's own), beta (another of this account: the ClusterDirectory is asked)
   and gamma (the member account: AssumeRole). Requests are the core's own counters (HandlerResult's
   Kubernetes ``api_requests``; Ec2Instances, EksAccess, ClusterDirectory and AccountClients
   counts), checked against a count at botocore's endpoint; CPU is ``time.process_time`` around
   the handler call.
2. Cold against warm: the first event's requests and milliseconds less the warm median's.
3. A Spot wave over the three clusters through one deployment: ``workers`` processes of
   ``threads`` environments each (a Fleet each, warm on the three clusters), every event released
   at once; event→cordon is from the release to the cordon (harness queueing included).
Nodes are kwok nodes without pods; instances are Spot instances tagged to their cluster
(``eks:eks-cluster-name`` and ``kubernetes.io/cluster/<name>``), gamma's in the member account.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    arguments,
    cluster_cpu,
    function_environment,
    load_average,
    local_eks_state,
    phase_results,
    spot_instances,
    spot_node,
    write_results,
)
from localeks.accounts import MEMBER_ACCOUNT_ID, ClusterSpec
from localeks.cluster import ACCOUNT_ID, Paths, down, read_env, supervisor_alive, up
from localeks.clusters import ClusterHandle, Clusters, session_in
from localeks.progress import Progress

HOME, BETA, GAMMA = "alpha", "beta", "gamma"
MORE_CLUSTERS = [ClusterSpec(BETA), ClusterSpec(GAMMA, MEMBER_ACCOUNT_ID, {"env": "prod"})]
SIZES: dict[str, dict[str, int]] = {
    # events: per environment (the first cold), repeats: environments per configuration; wave:
    # nodes per real cluster (and 3 x wave in alpha alone for the single-cluster wave), each wave
    # ``wave_repeats`` times, the two kinds alternately
    "full": {"known": 100, "events": 12, "repeats": 3, "wave": 40, "wave_repeats": 3, "workers": 2, "threads": 10},
    "smoke": {"known": 6, "events": 3, "repeats": 1, "wave": 3, "wave_repeats": 1, "workers": 1, "threads": 2},
}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 4)


def register_clusters(env: dict[str, str], clusters: Clusters, known: int) -> dict[str, int]:
    """Clusters in moto's EKS, without an API server, until both accounts together list ``known``:
    half in each account. Returns how many each account lists."""
    accounts = [clusters.home_account, *clusters.member_accounts]
    eks = {a: session_in(env, a).client("eks", endpoint_url=env["AWS_ENDPOINT_URL"]) for a in accounts}

    def listed(account: str) -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            reply = eks[account].list_clusters(**({"nextToken": token} if token else {}))
            names += reply["clusters"]
            token = reply.get("nextToken") or ""
            if not token:
                return names

    have = {a: listed(a) for a in accounts}
    missing = known - sum(len(v) for v in have.values())
    taken = {name for names in have.values() for name in names}
    free = (f"registered-{i:03d}" for i in range(10_000) if f"registered-{i:03d}" not in taken)
    jobs = [(accounts[i % len(accounts)], next(free)) for i in range(max(0, missing))]
    if not jobs:
        return {a: len(names) for a, names in have.items()}

    def create(job: tuple[str, str]) -> None:
        account, name = job
        eks[account].create_cluster(
            name=name,
            roleArn=f"arn:aws:iam::{account}:role/eks-cluster",
            resourcesVpcConfig={"subnetIds": []},
            tags={"registered-by": "bench.multi"},
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, jobs))
    return {a: len(listed(a)) for a in accounts}


def seed_nodes(env: dict[str, str], handle: ClusterHandle, count: int) -> list[dict[str, str]]:
    """``count`` Spot instances in the cluster's account tagged to it, and their kwok Nodes (no
    pods). Returns [{"instance_id", "account", "cluster"}]."""
    from kubernetes import client, config

    ec2 = session_in(env, handle.account).client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"])
    api = config.new_client_from_config(handle.kubeconfig)
    api.configuration.connection_pool_maxsize = 32
    core = client.CoreV1Api(api)
    names = {n.metadata.name for n in core.list_node().items}
    tags = {f"kubernetes.io/cluster/{handle.name}": "owned", "eks:eks-cluster-name": handle.name}
    instances = spot_instances(ec2, count, tags, names)

    def make(instance: dict[str, Any]) -> dict[str, str]:
        core.create_node(spot_node(instance))
        return {"instance_id": instance["InstanceId"], "account": handle.account, "cluster": handle.name}

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(make, instances))


def spot_event(target: dict[str, str]) -> dict[str, Any]:
    """The sample Spot warning for the instance, now, as its own account's bus has it (a member
    account's forwarded unchanged to the central bus)."""
    from tests.eventfiles import load_event

    event = load_event("spot-interruption", instance_id=target["instance_id"], now=True)
    moved: dict[str, Any] = json.loads(json.dumps(event).replace(ACCOUNT_ID, target["account"]))
    return moved


def _child_env(env: dict[str, str], settings: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **function_environment({**env, "CLUSTER_NAME": HOME}, **settings),
        "PYTHONPATH": str(REPO),
    }


def run_events(
    env: dict[str, str], settings: dict[str, str], targets: list[dict[str, str]], repeats: int
) -> dict[str, Any]:
    """``repeats`` fresh execution environments, one after the other, each handling its share of
    the targets one event after the other: the first event of each is a cold start's."""
    share = len(targets) // repeats
    outs = []
    for i in range(repeats):
        job = {"mode": "events", "events": [spot_event(t) for t in targets[i * share : (i + 1) * share]]}
        done = subprocess.run(
            [sys.executable, "-m", "bench.multi_child"],
            input=json.dumps(job) + "\n",
            capture_output=True,
            text=True,
            cwd=REPO,
            env=_child_env(env, settings),
            timeout=600,
            check=True,
        )
        line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH "))
        outs.append(json.loads(line[6:]))
    return summarise(outs)


def summarise(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """Cold (the median of each environment's first event) and warm (the median of the others),
    and cold less warm. Request counts are the same in every environment (the medians say so)."""
    firsts = [o["events"][0] for o in outs]
    rest = [e for o in outs for e in o["events"][1:]]

    def median(events: list[dict[str, Any]], key: str, sub: str | None = None) -> float:
        values = [(e[key][sub] if sub else e[key]) for e in events]
        return round(statistics.median(values), 3) if values else float("nan")

    def figures(events: list[dict[str, Any]]) -> dict[str, float]:
        return {
            "cpu_ms": median(events, "cpu_ms"),
            "wall_ms": median(events, "wall_ms"),
            "requests": median(events, "requests"),
            "kube": median(events, "kube"),
            **{f"aws_{k}": median(events, "aws", k) for k in firsts[0]["aws"]},
        }

    warm, cold = figures(rest), figures(firsts)
    extra = {k: round(cold[k] - warm[k], 3) for k in warm}
    outcomes = dict(collections.Counter(e["outcome"] for e in firsts + rest))
    return {
        "environments": len(outs),
        "init_ms": median(outs, "init_ms"),
        "init_cpu_ms": median(outs, "init_cpu_ms"),
        "cold": {**cold, "aws_at_transport": firsts[0]["aws_at_transport"]},
        "warm": warm,
        "cold_extra": extra,
        "cold_cpu_ms_each": [e["cpu_ms"] for e in firsts],
        "cold_wall_ms_each": [e["wall_ms"] for e in firsts],
        "warm_cpu_ms_p10_p90": [
            _percentile([e["cpu_ms"] for e in rest], 0.1),
            _percentile([e["cpu_ms"] for e in rest], 0.9),
        ],
        "warm_aws_at_transport": rest[-1]["aws_at_transport"] if rest else {},
        "outcomes": outcomes,
        "environments_events": [o["events"] for o in outs],
    }


def run_wave(
    env: dict[str, str],
    settings: dict[str, str],
    targets: list[dict[str, str]],
    workers: int,
    threads: int,
    state: Path,
) -> dict[str, Any]:
    """Every target's Spot warning released at once to ``workers`` x ``threads`` warm environments."""
    warm_on = [[None if a == ACCOUNT_ID else a, c] for a, c in sorted({(t["account"], t["cluster"]) for t in targets})]
    child_env = {**_child_env(env, settings), "BENCH_HOME_ACCOUNT": ACCOUNT_ID, "BENCH_WARM_ON": json.dumps(warm_on)}
    # interleaved, so that each worker takes events of every cluster
    shares = [targets[i::workers] for i in range(workers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.multi_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=child_env,
        )
        for _ in shares
    ]
    for proc, share in zip(procs, shares, strict=True):
        assert proc.stdin is not None
        job = {"mode": "wave", "threads": threads, "events": [spot_event(t) for t in share]}
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
    for proc in procs:
        assert proc.stdout is not None
        while proc.stdout.readline().strip() != "READY":
            if proc.poll() is not None:
                raise RuntimeError("a wave worker ended before it was ready")
    start_at = time.time() + 1.0
    cpu_before = cluster_cpu(str(state))
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start_at}\n")
        proc.stdin.flush()
    events: list[dict[str, Any]] = []
    for proc in procs:
        assert proc.stdout is not None
        out = next(x for x in proc.stdout.read().splitlines() if x.startswith("BENCH "))
        proc.wait(timeout=60)
        events += json.loads(out[6:])["events"]
    cpu_after = cluster_cpu(str(state))
    cordoned = [e for e in events if e["cordoned"]]
    latencies = [e["cordoned"] - start_at for e in cordoned]
    own = [e["cordoned"] - e["began"] for e in cordoned]  # the handler's part: no queueing
    by_cluster: dict[str, list[float]] = {}
    for e, latency in zip(cordoned, latencies, strict=True):
        by_cluster.setdefault(e["cluster"], []).append(latency)
    return {
        "events": len(events),
        "in_flight": workers * threads,
        "outcomes": dict(collections.Counter(e["outcome"] for e in events)),
        "event_to_cordon_p50_s": _percentile(latencies, 0.5),
        "event_to_cordon_p99_s": _percentile(latencies, 0.99),
        "event_to_cordon_max_s": _percentile(latencies, 1.0),
        "handler_to_cordon_p50_s": _percentile(own, 0.5),
        "handler_to_cordon_p99_s": _percentile(own, 0.99),
        "by_cluster_p99_s": {c: _percentile(v, 0.99) for c, v in sorted(by_cluster.items())},
        "all_done_s": round(max(e["ended"] for e in events) - start_at, 3),
        "handler_cpu_ms_p50": _percentile([e["cpu_ms"] for e in events], 0.5),
        # CPU seconds of the local EKS's processes (every cluster's) during the wave
        "local_eks_cpu_s": {k: round(v - cpu_before.get(k, 0.0), 2) for k, v in sorted(cpu_after.items())},
    }


def bench_multi(state: Path, size: dict[str, int]) -> dict[str, Any]:
    progress = Progress("bench")
    paths = Paths(state.with_name(f"{state.name}-multi"))
    started_here = not (supervisor_alive(paths) and paths.env_file.exists())
    env = up(paths, HOME, 0.1, more_clusters=MORE_CLUSTERS) if started_here else read_env(paths)
    try:
        clusters = Clusters.load(env)
        member = clusters.member_accounts[0]
        single = {"CLUSTERS": "", "MEMBER_ACCOUNTS": "", "ORGANIZATION_ID": ""}
        fleet = {"CLUSTERS": "*", "MEMBER_ACCOUNTS": member, "MEMBER_ROLE_NAME": env["MEMBER_ROLE_NAME"]}
        n, wave, r, waves = size["events"] * size["repeats"], size["wave"], size["repeats"], size["wave_repeats"]
        progress.say(f"multi: seeding nodes in {HOME}, {BETA} and {GAMMA}")
        nodes = {
            name: seed_nodes(env, clusters[name], count)
            for name, count in (
                (HOME, 2 * n + 7 * wave * waves),
                (BETA, 2 * n + wave * waves),
                (GAMMA, n + wave * waves),
            )
        }
        known_before = sum(register_clusters(env, clusters, 0).values())
        runs: dict[str, Any] = {}
        progress.say(f"multi: per event, {known_before} clusters known")
        runs["single_alpha"] = run_events(env, single, nodes[HOME][:n], r)
        runs[f"fleet_{known_before}_beta"] = run_events(env, fleet, nodes[BETA][:n], r)
        listed = register_clusters(env, clusters, size["known"])
        known = sum(listed.values())
        progress.say(f"multi: per event, {known} clusters known")
        runs[f"fleet_{known}_alpha"] = run_events(env, fleet, nodes[HOME][n : 2 * n], r)
        runs[f"fleet_{known}_beta"] = run_events(env, fleet, nodes[BETA][n : 2 * n], r)
        runs[f"fleet_{known}_gamma"] = run_events(env, fleet, nodes[GAMMA][:n], r)
        # one environment's events alternating over the three clusters (its three Services warm)
        mixed = {c: seed_nodes(env, clusters[c], n // 3 + 1) for c in (HOME, BETA, GAMMA)}
        interleaved = [t for group in zip(*mixed.values(), strict=True) for t in group][:n]
        runs[f"fleet_{known}_mixed"] = run_events(env, fleet, interleaved, r)
        spot_waves: list[dict[str, Any]] = []
        single_waves: list[dict[str, Any]] = []
        fleet_one_waves: list[dict[str, Any]] = []
        for i in range(waves):
            spread = [
                t
                for group in zip(*(nodes[c][-wave * (i + 1) :][:wave] for c in (HOME, BETA, GAMMA)), strict=True)
                for t in group
            ]
            alone = nodes[HOME][2 * n + 6 * wave * i : 2 * n + 6 * wave * i + 3 * wave]
            alone_fleet = nodes[HOME][2 * n + 6 * wave * i + 3 * wave : 2 * n + 6 * wave * (i + 1)]
            kinds = [
                (spread, fleet, spot_waves, "over alpha, beta and gamma"),
                (alone, single, single_waves, "in alpha alone, a single-cluster deployment"),
                (alone_fleet, fleet, fleet_one_waves, f"in alpha alone, the deployment of {known} clusters"),
            ]
            for targets, settings, into, label in kinds[i % 3 :] + kinds[: i % 3]:
                progress.say(f"multi: a Spot wave of {len(targets)} nodes {label} ({i + 1}/{waves})")
                into.append(run_wave(env, settings, targets, size["workers"], size["threads"], paths.state))
    finally:
        if started_here:
            down(paths)
    base, many = runs["single_alpha"]["warm"], runs[f"fleet_{known}_beta"]["warm"]
    return {
        "clusters_listed": listed,
        "clusters_known": known,
        "clusters_with_api_server": len(clusters.handles),
        "runs": runs,
        "warm_ratio_requests": round(many["requests"] / base["requests"], 3),
        "warm_ratio_cpu": round(many["cpu_ms"] / base["cpu_ms"], 3),
        "wave": _median_wave(spot_waves),
        "wave_single_cluster": _median_wave(single_waves),
        "wave_fleet_one_cluster": _median_wave(fleet_one_waves),
        "waves": spot_waves,
        "waves_single_cluster": single_waves,
        "waves_fleet_one_cluster": fleet_one_waves,
    }


def _median_wave(waves: list[dict[str, Any]]) -> dict[str, Any]:
    """The wave whose event→cordon p99 is the median of the repeats', with every repeat's p99."""
    ordered = sorted(waves, key=lambda w: w["event_to_cordon_p99_s"])
    return {
        **ordered[(len(ordered) - 1) // 2],
        "repeats": len(waves),
        "event_to_cordon_p99_s_each": [w["event_to_cordon_p99_s"] for w in waves],
        "handler_to_cordon_p99_s_each": [w["handler_to_cordon_p99_s"] for w in waves],
    }


def headline(multi: dict[str, Any]) -> dict[str, Any]:
    """The flat figures for latest.json."""
    known, runs, wave = multi["clusters_known"], multi["runs"], multi["wave"]
    single, beta, gamma = runs["single_alpha"], runs[f"fleet_{known}_beta"], runs[f"fleet_{known}_gamma"]
    return {
        "multi_clusters_known": known,
        "multi_requests_per_event_1_cluster_warm": single["warm"]["requests"],
        f"multi_requests_per_event_{known}_clusters_warm": beta["warm"]["requests"],
        "multi_requests_per_event_1_cluster_cold": single["cold"]["requests"],
        f"multi_requests_per_event_{known}_clusters_cold": beta["cold"]["requests"],
        "multi_cpu_ms_per_event_1_cluster_warm": single["warm"]["cpu_ms"],
        f"multi_cpu_ms_per_event_{known}_clusters_warm": beta["warm"]["cpu_ms"],
        "multi_cpu_ms_per_event_1_cluster_cold": single["cold"]["cpu_ms"],
        f"multi_cpu_ms_per_event_{known}_clusters_cold": beta["cold"]["cpu_ms"],
        "multi_warm_ratio_requests": multi["warm_ratio_requests"],
        "multi_warm_ratio_cpu": multi["warm_ratio_cpu"],
        "multi_discovery_extra_requests": beta["cold_extra"]["requests"],
        "multi_discovery_extra_ms": beta["cold_extra"]["wall_ms"],
        "multi_discovery_extra_requests_member": gamma["cold_extra"]["requests"],
        "multi_discovery_extra_ms_member": gamma["cold_extra"]["wall_ms"],
        "multi_wave_events": wave["events"],
        "multi_wave_cordon_p50_s": wave["event_to_cordon_p50_s"],
        "multi_wave_cordon_p99_s": wave["event_to_cordon_p99_s"],
        "multi_wave_handler_to_cordon_p99_s": wave["handler_to_cordon_p99_s"],
        "multi_wave_single_cluster_cordon_p99_s": multi["wave_single_cluster"]["event_to_cordon_p99_s"],
    }


def lines(multi: dict[str, Any]) -> list[str]:
    """A Markdown table of the runs, and the wave."""
    out = [
        "| run | events | cold req (kube + AWS) | warm req | cold CPU ms | warm CPU ms | cold ms | warm ms | "
        "cold less warm: req, ms | cold AWS (core's counters) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in multi["runs"].items():
        cold, warm, extra = run["cold"], run["warm"], run["cold_extra"]
        aws = ", ".join(
            f"{k[4:]} {v}" for k, v in cold.items() if k.startswith("aws_") and k != "aws_at_transport" and v
        )
        out.append(
            f"| {name} | {sum(run['outcomes'].values())} | {cold['requests']} ({cold['kube']} + "
            f"{cold['requests'] - cold['kube']}) | {warm['requests']} | {cold['cpu_ms']:.1f} | {warm['cpu_ms']:.1f} | "
            f"{cold['wall_ms']:.0f} | {warm['wall_ms']:.0f} | {extra['requests']}, {extra['wall_ms']:.0f} | {aws} |"
        )
    out += [
        "",
        f"Warm, {multi['clusters_known']} clusters known against 1: requests x{multi['warm_ratio_requests']}, "
        f"CPU x{multi['warm_ratio_cpu']}.",
        "",
    ]
    for label, w in (
        ("over 3 clusters", multi["wave"]),
        ("in 1 cluster, single-cluster deployment", multi["wave_single_cluster"]),
        (
            f"in 1 cluster, through the deployment of {multi['clusters_known']} clusters",
            multi["wave_fleet_one_cluster"],
        ),
    ):
        out.append(
            f"Spot wave, {w['events']} events {label}, {w['in_flight']} environments in flight: "
            f"event→cordon p50 {w['event_to_cordon_p50_s']} s, p99 {w['event_to_cordon_p99_s']} s, "
            f"max {w['event_to_cordon_max_s']} s (handler start→cordon p50 {w['handler_to_cordon_p50_s']} s, "
            f"p99 {w['handler_to_cordon_p99_s']} s; event→cordon p99 by cluster {w['by_cluster_p99_s']}); "
            f"all done {w['all_done_s']} s; outcomes {w['outcomes']}. The median of {w['repeats']} waves "
            f"(event→cordon p99 of each: {w['event_to_cordon_p99_s_each']}; handler start→cordon p99: "
            f"{w['handler_to_cordon_p99_s_each']})."
        )
        out.append("")
    return out


def main() -> None:
    args = arguments()
    load_start, started = load_average(), time.monotonic()
    state = local_eks_state()
    multi = bench_multi(state, SIZES["smoke" if args.smoke else "full"])
    command = f"python -m bench.multi{' --smoke' if args.smoke else ''}"
    results = phase_results(started, load_start, args.smoke, {"command": command, **headline(multi), "details": multi})
    title = "Many clusters, one deployment,"
    write_results(args.out, "multi", results, title, command, lines(multi))


if __name__ == "__main__":
    main()
