"""A burst of Spot interruptions: every node of a pool reclaimed at once.

The handlers run as Lambda would run them under concurrency: ``workers`` warm execution
environments (processes, each with its own Service: token, connections) times ``threads`` each,
so ``workers * threads`` events are in flight at once. Each event cordons and drains one node.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config

from bench.common import apiserver_metrics, function_environment, handle, metrics_delta
from localeks.cluster import moto_client
from localeks.progress import Counter, Progress

POD_GRACE = 20  # seconds; kwok's speed factor scales it


def seed_pool(cluster_env: dict[str, str], nodes: int, pods_per_node: int, label: str) -> list[dict[str, str]]:
    """``nodes`` Spot instances in moto and their Nodes, each with ``pods_per_node`` pods owned by
    a ReplicaSet; returns [{"instance_id", "node"}]. Seeded with many requests in flight."""
    ec2 = moto_client(cluster_env, "ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instances: list[dict[str, Any]] = []
    while len(instances) < nodes:
        count = min(250, nodes - len(instances))
        instances += ec2.run_instances(
            ImageId=image,
            MinCount=count,
            MaxCount=count,
            InstanceType="m5.large",
            Placement={"AvailabilityZone": "us-east-1b"},
            InstanceMarketOptions={"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}},
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": f"kubernetes.io/cluster/{cluster_env['CLUSTER_NAME']}", "Value": "owned"},
                        {"Key": "eks:cluster-name", "Value": cluster_env["CLUSTER_NAME"]},
                    ],
                }
            ],
        )["Instances"]
    api_client = config.new_client_from_config(cluster_env["KUBECONFIG"])
    api_client.configuration.connection_pool_maxsize = 64
    core = client.CoreV1Api(api_client)
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

    def make_node(instance: dict[str, Any]) -> dict[str, str]:
        name = instance["PrivateDnsName"]
        az = instance["Placement"]["AvailabilityZone"]
        core.create_node(
            {
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "topology.kubernetes.io/zone": az,
                        "node.kubernetes.io/instance-type": instance["InstanceType"],
                        "eks.amazonaws.com/capacityType": "SPOT",
                    },
                },
                "spec": {"providerID": f"aws:///{az}/{instance['InstanceId']}"},
            }
        )
        for i in range(pods_per_node):
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

    # a line every 10 s on stderr while it lasts (61 s for 1,000 nodes / 20,000 pods on 2 cores)
    progress = Progress("bench", every=10)
    seeded = Counter(f"seeding the {label} pool ({pods_per_node} pods a node)", nodes, "nodes")

    def make_and_count(instance: dict[str, Any]) -> dict[str, str]:
        made = make_node(instance)
        seeded.add()
        return made

    with progress.ticking(seeded.status), ThreadPoolExecutor(max_workers=32) as pool:
        pool_nodes = list(pool.map(make_and_count, instances))
    deadline = time.monotonic() + 600

    def waiting(elapsed: float) -> str:
        return f"waiting for kwok to run the {label} pool's {nodes * pods_per_node:,} pods: {elapsed:.0f} s"

    with progress.ticking(waiting):
        while time.monotonic() < deadline:  # kwok turns them Running
            pending = core.list_namespaced_pod(ns, field_selector="status.phase!=Running", limit=1)
            if not pending.items:
                break
            time.sleep(1)
    return pool_nodes


def _worker(args: tuple[dict[str, str], list[dict[str, str]], int, float]) -> list[dict[str, Any]]:
    """One warm execution environment handling its share of the burst, ``threads`` at a time."""
    env, targets, threads, start_at = args
    os.environ.update(env)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the functions' log lines)
    from bench.drain import spot_event
    from serverless_nth.config import Settings
    from serverless_nth.entrypoint import build_service

    settings = Settings.from_env()
    services = [build_service(settings) for _ in range(threads)]
    for service in services:  # warm: cluster data, token, connection, as a warm Lambda has them
        service.kube().request("GET", "/version")
    while time.time() < start_at:
        time.sleep(0.005)

    def handle_one(i: int) -> dict[str, Any]:
        service = services[i % threads]
        target = targets[i]
        began = time.time()
        try:
            result = handle(service, spot_event(target["instance_id"]))
        except Exception as exc:  # reported as an outcome: Lambda would retry the event
            now = time.time()
            return {
                "began": began,
                "ended": now,
                "cordoned": now,
                "outcome": f"error: {type(exc).__name__}: {exc}"[:200],
                "api_requests": 0,
            }
        return {
            "began": began,
            "ended": time.time(),
            "cordoned": began + (result.cordoned_after_seconds or 0),
            "outcome": result.outcome,
            "api_requests": result.api_requests,
        }

    # each thread takes the next event when it is done with one, as Lambda concurrency does
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(handle_one, range(len(targets))))


def run_burst(
    cluster_env: dict[str, str], pool_nodes: list[dict[str, str]], workers: int, threads: int
) -> dict[str, Any]:
    env = function_environment(cluster_env, POLL_INTERVAL_SECONDS="1.0")
    shares = [pool_nodes[i::workers] for i in range(workers)]
    before = apiserver_metrics(cluster_env)
    start_at = time.time() + 8  # every worker is warm before the burst starts
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        results = [r for share in pool.map(_worker, [(env, s, threads, start_at) for s in shares]) for r in share]
    after = apiserver_metrics(cluster_env)
    delta = metrics_delta(before, after)
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    events = len(results)
    return {
        "events": events,
        "concurrency": workers * threads,
        "all_cordoned_s": round(max(r["cordoned"] for r in results) - start_at, 3),
        "all_drained_s": round(max(r["ended"] for r in results) - start_at, 3),
        "outcomes": outcomes,
        "client_requests_per_event": round(sum(r["api_requests"] for r in results) / events, 2),
        "apiserver_requests_per_event": round(delta["functions_dispatched"] / events, 2),
        "apf_rejected": delta["apf_rejected"],
        "status_429": delta["status_429"],
    }
