"""Bursts of events: many nodes reclaimed at once, and the per-event figures that do not depend on
the harness that plays Lambda here.

The harness: ``Workers`` keeps ``count`` warm execution environments (spawned processes) for the
whole phase; a burst gives each its share of the events and a number of threads, each thread with
a Service of its own (its own API client and connections, as a Lambda execution environment has),
so ``count * threads`` events are in flight at once. The services of one process share its
botocore clients and one EKS token (Lambda environments would each sign their own; one per
process spares the local token webhook, which caches a review for 5 s, a thousand reviews). Every
event is released at the same instant (``start_at``) after the services are warm (cluster data,
token, a TLS connection each).

Per event, measured inside the worker, independently of how many events share the machine:
- CPU time (user + sys) of the handler: the event's thread (``time.thread_time``) plus every task
  the core runs on its thread pools for that event (eviction attempts, Events, owner reads);
- requests sent, counted at the transport (the kubernetes client's ``RESTClientObject.request``)
  with their status, plus the EC2 DescribeInstances calls;
- when the handler started (``began``: the harness's dispatch delay after ``start_at``), when
  the node was cordoned, when it ended.
The harness on its own: a "noop" burst releases the same threads with no handler, and each burst
reports the workers' CPU that is not the handlers'.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config

from bench import apiserver
from bench.burst_worker import _serve
from bench.common import apiserver_metrics, cluster_cpu, function_environment, metrics_delta, spot_instances, spot_node
from localeks import describe_cache
from localeks.apiserver_metrics import scrape
from localeks.cluster import moto_client
from localeks.progress import Counter, Progress

POD_GRACE = 20  # seconds; kwok's speed factor scales it


def seed_pool(
    cluster_env: dict[str, str], nodes: int, pods_per_node: int, label: str, with_pods: int | None = None
) -> list[dict[str, str]]:
    """``nodes`` Spot instances in moto and their Nodes, the first ``with_pods`` of them (all by
    default) with ``pods_per_node`` pods owned by a ReplicaSet; returns [{"instance_id", "node"}].
    Seeded with many requests in flight."""
    with_pods = nodes if with_pods is None else with_pods
    ec2 = moto_client(cluster_env, "ec2")
    api_client = config.new_client_from_config(cluster_env["KUBECONFIG"])
    api_client.configuration.connection_pool_maxsize = 64
    core = client.CoreV1Api(api_client)
    names = {n.metadata.name for n in core.list_node().items}
    cluster = cluster_env["CLUSTER_NAME"]
    tags = {f"kubernetes.io/cluster/{cluster}": "owned", "eks:cluster-name": cluster}
    instances = spot_instances(ec2, nodes, tags, names)
    ns = f"burst-{label}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": ns}})
    # The pods name a ReplicaSet as their controller, but no such object exists: the drain treats
    # them as managed, and no controller floods the burst with replacements (they would have no
    # node to go to anyway: the whole pool is being reclaimed).
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": f"pool-{label}",
        "uid": str(uuid.uuid4()),
        "controller": True,
    }

    def make_node(index: int, instance: dict[str, Any]) -> dict[str, str]:
        name = instance["PrivateDnsName"]
        core.create_node(spot_node(instance))
        for i in range(pods_per_node if index < with_pods else 0):
            core.create_namespaced_pod(
                ns,
                {
                    "metadata": {
                        "name": f"{name.split('.')[0]}-{i}",
                        "labels": {"app": "pool"},
                        "ownerReferences": [owner],
                    },
                    "spec": {
                        "nodeName": name,
                        "terminationGracePeriodSeconds": POD_GRACE,
                        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                    },
                },
            )
        return {"instance_id": instance["InstanceId"], "node": name}

    progress = Progress("bench", every=10)
    seeded = Counter(f"seeding the {label} pool ({with_pods} nodes with {pods_per_node} pods)", nodes, "nodes")

    def make_and_count(item: tuple[int, dict[str, Any]]) -> dict[str, str]:
        made = make_node(*item)
        seeded.add()
        return made

    with progress.ticking(seeded.status), ThreadPoolExecutor(max_workers=32) as pool:
        pool_nodes = list(pool.map(make_and_count, enumerate(instances)))
    deadline = time.monotonic() + 600

    def waiting(elapsed: float) -> str:
        return f"waiting for kwok to run the {label} pool's {with_pods * pods_per_node:,} pods: {elapsed:.0f} s"

    with progress.ticking(waiting):
        while time.monotonic() < deadline:  # kwok turns them Running
            pending = core.list_namespaced_pod(ns, field_selector="status.phase!=Running", limit=1)
            if not pending.items:
                break
            time.sleep(1)
    return pool_nodes


def cluster_nodes(cluster_env: dict[str, str]) -> int:
    api_client = config.new_client_from_config(cluster_env["KUBECONFIG"])
    return len(client.CoreV1Api(api_client).list_node().items)


# --- in the benchmark's process ----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1), linear between ranks; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


class Workers:
    """``count`` warm execution environments, started once and reused by every burst."""

    def __init__(self, cluster_env: dict[str, str], state: str, count: int) -> None:
        self.cluster_env, self.state = cluster_env, state
        self.env = env = function_environment(cluster_env, POLL_INTERVAL_SECONDS="1.0")
        ctx = multiprocessing.get_context("spawn")
        started = time.monotonic()
        self.conns, self.procs = [], []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, env), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        ready = [c.recv() for c in self.conns]
        self.startup = {
            "workers": count,
            "seconds": round(time.monotonic() - started, 2),
            "cpu_s_per_worker": round(statistics.median(r["startup_cpu_s"] for r in ready), 3),
        }

    def close(self) -> None:
        for conn in self.conns:
            conn.send(("stop",))
        for proc in self.procs:
            proc.join(timeout=30)

    def burst(self, mode: str, targets: list[dict[str, str]], threads: int) -> dict[str, Any]:
        """Every target's event released at once; ``threads`` per worker, so at most
        ``len(workers) * threads`` in flight. ``mode``: drain (Spot interruption: cordon, taint,
        drain), cordon (rebalance recommendation: cordon and taint only) or noop (no handler)."""
        count = len(self.conns)
        shares = [[t["instance_id"] for t in targets[i::count]] for i in range(count)]
        warm = []
        for conn, share in zip(self.conns, shares, strict=True):  # warmed one worker at a time
            conn.send(("job", mode, share, min(threads, max(1, len(share)))))
            warm.append(conn.recv())
        before, cpu_before = scrape(self.cluster_env), cluster_cpu(self.state)
        start_at = time.time() + 0.5
        for conn in self.conns:
            conn.send(("go", start_at))
        done = [c.recv() for c in self.conns]
        cpu_after, after = cluster_cpu(self.state), scrape(self.cluster_env)
        events = [e for d in done for e in d["events"]]
        return {
            **summarise(
                events,
                start_at,
                in_flight=min(len(targets), sum(min(threads, max(1, len(s))) for s in shares)),
                worker_cpu_s=sum(d["cpu_s"] for d in done),
                warm_cpu_s=sum(w["warm_cpu_s"] for w in warm),
                apiserver=metrics_delta(apiserver_metrics(before), apiserver_metrics(after)),
                cluster={k: round(cpu_after.get(k, 0) - v, 2) for k, v in cpu_before.items()},
            ),
            "apiserver_view": apiserver.summary(before, after),
        }

    def warm_ec2(self, targets: list[dict[str, str]]) -> None:
        """The local EC2's answers for these instances made ahead, with the workers' credentials
        (localeks/describe_cache.py: kept until moto's state changes), so that a burst measures
        the handlers and the API server, not moto's serializer."""
        import boto3

        ec2 = boto3.client(
            "ec2",
            endpoint_url=self.cluster_env["AWS_ENDPOINT_URL"],
            region_name=self.cluster_env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=self.env["AWS_SESSION_TOKEN"],
        )
        describe_cache.warm(ec2, [t["instance_id"] for t in targets])


def summarise(
    events: list[dict[str, Any]],
    start_at: float,
    in_flight: int,
    worker_cpu_s: float,
    warm_cpu_s: float,
    apiserver: dict[str, float],
    cluster: dict[str, float],
) -> dict[str, Any]:
    n = len(events)
    outcomes: dict[str, int] = {}
    for e in events:
        outcomes[e["outcome"]] = outcomes.get(e["outcome"], 0) + 1
    # an event that failed (Lambda would retry it) has no cordon time: the percentiles are of the
    # events that cordoned, and ``errors`` counts the others
    ok = [e for e in events if not e["outcome"].startswith("error")] or events
    dispatch = [e["began"] - start_at for e in events]
    to_cordon = [e["cordoned"] - start_at for e in ok]
    handler_to_cordon = [e["cordoned"] - e["began"] for e in ok]
    cpu_ms = [e["cpu_s"] * 1000 for e in ok]  # of the events that did their work
    kube = [sum(e["requests"].values()) for e in events]
    refused = [e["requests"].get("429", 0) for e in events]
    total = [k + e.get("aws_requests", 0) for k, e in zip(kube, events, strict=True)]
    handler_cpu = sum(e["cpu_s"] for e in events)

    def r(x: float, digits: int = 3) -> float:
        return round(x, digits)

    return {
        "events": n,
        "in_flight": in_flight,
        "outcomes": outcomes,
        "errors": sum(e["outcome"].startswith("error") for e in events),
        "all_cordoned_s": r(max(to_cordon)),
        "all_done_s": r(max(e["ended"] for e in events) - start_at),
        "event_to_cordon_p50_s": r(percentile(to_cordon, 0.5)),
        "event_to_cordon_p99_s": r(percentile(to_cordon, 0.99)),
        "handler_to_cordon_p50_s": r(percentile(handler_to_cordon, 0.5)),
        "handler_to_cordon_p99_s": r(percentile(handler_to_cordon, 0.99)),
        "dispatch_p50_s": r(percentile(dispatch, 0.5)),
        "dispatch_p99_s": r(percentile(dispatch, 0.99)),
        "handler_cpu_ms_p50": r(percentile(cpu_ms, 0.5), 2),
        "handler_cpu_ms_p99": r(percentile(cpu_ms, 0.99), 2),
        "handler_cpu_ms": [r(c, 2) for c in cpu_ms],
        "requests_per_event": r(statistics.mean(total), 2),
        "requests_per_event_median": statistics.median(total),
        "kube_requests_per_event": r(statistics.mean(kube), 2),
        "apf_retries_per_event": r(statistics.mean(refused), 2),
        "first_attempts_per_event": r(statistics.mean(t - x for t, x in zip(total, refused, strict=True)), 2),
        "apiserver_requests_per_event": r(apiserver["functions_dispatched"] / n, 2),
        "apf_rejected": apiserver["apf_rejected"],
        "status_429": apiserver["status_429"],
        # CPU seconds while the burst ran: the handlers', the rest of the workers' (the harness:
        # threads, queue, GC outside the handler), the warm-up before it, and the local stack's
        "cpu_s": {
            "handlers": r(handler_cpu, 2),
            "harness": r(worker_cpu_s - handler_cpu, 2),
            "warm_up": r(warm_cpu_s, 2),
            **cluster,
        },
    }
