"""What every benchmark shares: the warm handler core, API server metrics, medians."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from localeks.cluster import DEFAULT_STATE, REPO
from localeks.invoke import role_credentials

CORE = REPO / "layers" / "core" / "python"
if str(CORE) not in sys.path:
    sys.path.insert(0, str(CORE))


def function_environment(cluster_env: dict[str, str], **settings: str) -> dict[str, str]:
    """The environment a deployed function has: the role's credentials, the cluster name, the
    AWS endpoint (moto), and any setting overrides."""
    return {
        **role_credentials(cluster_env),
        "AWS_ENDPOINT_URL": cluster_env["AWS_ENDPOINT_URL"],
        "AWS_DEFAULT_REGION": cluster_env["AWS_DEFAULT_REGION"],
        "AWS_REGION": cluster_env["AWS_DEFAULT_REGION"],
        "CLUSTER_NAME": cluster_env["CLUSTER_NAME"],
        "AWS_SAM_LOCAL": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **settings,
    }


def warm_service(cluster_env: dict[str, str], **settings: str) -> Any:
    """A Service exactly as a function's init builds it (the warm core of a handler)."""
    os.environ.update(function_environment(cluster_env, **settings))
    from serverless_nth.config import Settings
    from serverless_nth.entrypoint import build_service

    return build_service(Settings.from_env())


def handle(service: Any, event: Any) -> Any:
    """One warm invocation of the core; the metrics buffer is emptied afterwards, as a Lambda
    invocation flushes it (Powertools' log_metrics is not around the core here)."""
    from serverless_nth.observability import metrics

    try:
        return service.handle(event)
    finally:
        metrics.clear_metrics()


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4) if values else float("nan")


def apiserver_metrics(text: str) -> dict[str, float]:
    """Request counters from a scrape of the API server's own /metrics: all requests, requests of
    the functions' flows (flow schema global-default, where their identity lands, or the optional
    manifest's k8s/flowcontrol.yaml), and requests APF rejected with 429."""
    from localeks.apiserver_metrics import total
    from localeks.flowcontrol import FUNCTION_SCHEMAS

    return {
        "requests_total": total(text, "apiserver_request_total"),
        "functions_dispatched": total(
            text, "apiserver_flowcontrol_dispatched_requests_total", lambda x: x["flow_schema"] in FUNCTION_SCHEMAS
        ),
        "apf_rejected": total(text, "apiserver_flowcontrol_rejected_requests_total"),
        "status_429": total(text, "apiserver_request_total", lambda x: x.get("code") == "429"),
    }


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def machine() -> str:
    cpu = "unknown cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB"


def cluster_cpu(state: str) -> dict[str, float]:
    """CPU seconds (user + sys) used so far by each process of the local EKS under ``state``: the
    supervisor (moto's server and the token webhook run in it) and its children (etcd,
    kube-apiserver, kube-controller-manager, kube-scheduler, kwok). Empty when it cannot tell."""
    try:
        supervisor = int((Path(state) / "supervisor.pid").read_text())
    except (OSError, ValueError):
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(proc.name), int(fields[1])
        if pid == supervisor:
            name = "moto+webhook"
        elif ppid != supervisor:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def load_average() -> str:
    """The load averages (1, 5, 15 min) and the number of cores, as `uptime` says them."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"{one} {five} {fifteen} on {os.cpu_count()} cores"


def spot_instances(ec2: Any, count: int, tags: dict[str, str], names: set[str]) -> list[dict[str, Any]]:
    """``count`` Spot instances (m5.large, us-east-1b) tagged ``tags``, launched 250 at a time.
    moto draws private IPs at random from the subnet, so two instances can get the same private
    DNS name (node name): such an instance, or one named like a node in ``names``, is left out and
    another launched in its place. ``names`` gains the new instances' names."""
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instances: list[dict[str, Any]] = []
    while len(instances) < count:
        batch = min(250, count - len(instances))
        for instance in ec2.run_instances(
            ImageId=image,
            MinCount=batch,
            MaxCount=batch,
            InstanceType="m5.large",
            Placement={"AvailabilityZone": "us-east-1b"},
            InstanceMarketOptions={"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}},
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )["Instances"]:
            if instance["PrivateDnsName"] not in names:
                names.add(instance["PrivateDnsName"])
                instances.append(instance)
    return instances


def spot_node(instance: dict[str, Any]) -> dict[str, Any]:
    """The Node of a Spot instance, as EKS's kubelet registers it (name, zone, type, capacity type,
    provider ID)."""
    name, az = instance["PrivateDnsName"], instance["Placement"]["AvailabilityZone"]
    return {
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


def arguments() -> argparse.Namespace:
    """The options of every bench entry point: ``--smoke`` (the tiny sizes) and ``--out`` (where
    the results go)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    return parser.parse_args()


def local_eks_state() -> Path:
    """The local EKS's state directory: ``LOCALEKS_STATE``, ``.local`` by default."""
    return Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)).resolve()


def phase_results(started: float, load_start: str, smoke: bool, figures: dict[str, Any]) -> dict[str, Any]:
    """A phase's results run alone: when and where (date, machine, load average at the start),
    ``figures``, then how long it took (since the ``time.monotonic()`` ``started``) and the load
    average at the end."""
    import datetime
    import time

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "load_average_start": load_start,
        "smoke": smoke,
        **figures,
        "seconds": round(time.monotonic() - started, 1),
        "load_average_end": load_average(),
    }


def write_results(out: Path, name: str, results: dict[str, Any], title: str, command: str, body: list[str]) -> None:
    """``<name>.json`` (``results``, as phase_results makes them) and ``<name>.md`` (a line that
    says when, where, what ran, how long and the load, then ``body``) in ``out``."""
    head = (
        f"{title} {results['date']} on {results['machine']} (`{command}`, {results['seconds']} s); "
        f"load average {results['load_average_start']} at the start, {results['load_average_end']} at the end."
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join([head, "", *body]) + "\n")
    print(f"bench: {name} done in {results['seconds']} s; {out / f'{name}.md'}")
