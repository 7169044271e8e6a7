"""The function side of bench/multi.py, in a fresh process with a function's environment (one
execution environment per process, or per thread for the wave). Reads a job from stdin, prints
``BENCH <json>``.

    {"mode": "events", "events": [...], "pause_s": 0}
                                            the Spot handler (handlers/spot_interruption/app.py,
                                            Powertools and all) on each event, one after the other:
                                            per event CPU time, wall time and requests, counted by
                                            the core's own counters and at botocore's endpoint
    {"mode": "wave", "events": [...], "threads": n}
                                            ``n`` environments on threads, each a Fleet of its own
                                            (``build_fleet``), warmed on every real cluster, then
                                            released at once on a line ``<start_at>`` from stdin;
                                            per event: when the node was cordoned
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from typing import Any

from bench.common import REPO  # and, importing bench.common, the core layer on sys.path

SPOT_HANDLER = REPO / "handlers" / "spot_interruption"
_fleets: list[Any] = []
_sent: collections.Counter[str] = collections.Counter()  # "service:Operation" -> requests (attempts)
_sent_lock = threading.Lock()


def _instrument() -> None:
    """Captures the Fleet each handler builds (``entrypoint.build_fleet``), and counts every AWS
    request at botocore's endpoint (each attempt, by operation): a check on the core's counters."""
    import botocore.endpoint

    import serverless_nth.entrypoint as entrypoint

    build = entrypoint.build_fleet

    def capturing(settings: Any) -> Any:
        fleet = build(settings)
        _fleets.append(fleet)
        return fleet

    entrypoint.build_fleet = capturing  # type: ignore[assignment]
    send = botocore.endpoint.Endpoint._send

    def counted(self: Any, request: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        body = request.body if isinstance(request.body, bytes | str) else b""
        body = body.decode() if isinstance(body, bytes) else body
        action = next((p[7:] for p in body.split("&") if p.startswith("Action=")), "")
        name = action or (target.decode() if isinstance(target, bytes) else target) or request.url.split("?")[0]
        with _sent_lock:
            _sent[f"{self._endpoint_prefix}:{name}"] += 1
        return send(self, request)

    botocore.endpoint.Endpoint._send = counted  # type: ignore[method-assign]


def _counters(fleet: Any) -> dict[str, int]:
    """The core's own request counters over the whole Fleet."""
    services = [s for s, _ in fleet._services.values()] + ([fleet._home] if fleet._home else [])
    return {
        "ec2": sum(e.requests_sent for e in fleet._ec2.values()),
        "describe_cluster": sum(s.eks.requests_sent for s in services),
        "list_clusters": fleet.routing_requests(),
        "assume_role": fleet._accounts.roles_assumed,
    }


def _eks_paths(sent: dict[str, int]) -> dict[str, int]:
    """EKS's REST paths as operations: /clusters is ListClusters, /clusters/<name> DescribeCluster."""
    out: collections.Counter[str] = collections.Counter()
    for key, n in sent.items():
        if key.startswith("eks:"):
            path = key.split("/clusters", 1)[1] if "/clusters" in key else ""
            out["eks:DescribeCluster" if path.strip("/") else "eks:ListClusters"] += n
        else:
            out[key] += n
    return dict(out)


def _events(events: list[dict[str, Any]], pause_s: float = 0.0) -> dict[str, Any]:
    """One environment, the events one after the other: the first is its cold start's."""
    from localeks.lambda_runtime import LocalContext

    sys.path.insert(0, str(SPOT_HANDLER))
    t0, c0 = time.perf_counter(), time.process_time()
    import app  # Lambda's init: settings, the Fleet, AWS clients

    init = {"init_ms": (time.perf_counter() - t0) * 1000, "init_cpu_ms": (time.process_time() - c0) * 1000}
    fleet = _fleets[-1]
    out = []
    for index, event in enumerate(events):
        if index and pause_s:
            time.sleep(pause_s)
        before, sent_before = _counters(fleet), dict(_sent)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            result = app.lambda_handler(event, LocalContext("bench-multi", 120, "512"))
            outcome = result["outcome"]
        except Exception as exc:  # an outcome: Lambda would retry the event
            result, outcome = {}, f"error: {type(exc).__name__}: {exc}"[:200]
        cpu_ms, wall_ms = (time.process_time() - c0) * 1000, (time.perf_counter() - t0) * 1000
        after = _counters(fleet)
        sent = _eks_paths({k: v - sent_before.get(k, 0) for k, v in _sent.items() if v - sent_before.get(k, 0)})
        aws = {k: after[k] - before[k] for k in after}
        kube = int(result.get("api_requests") or 0)
        out.append(
            {
                "outcome": outcome,
                "cluster": result.get("cluster"),
                "cpu_ms": round(cpu_ms, 3),
                "wall_ms": round(wall_ms, 3),
                "aws": aws,
                "kube": kube,
                "requests": sum(aws.values()) + kube,
                "aws_at_transport": sent,
                "cordoned_after_s": result.get("cordoned_after_seconds"),
            }
        )
    return {**init, "events": out}


def _wave(events: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """``threads`` environments, warm on every real cluster, released at once."""
    from serverless_nth.config import Settings
    from serverless_nth.entrypoint import build_fleet
    from serverless_nth.events import interruption_warning
    from serverless_nth.observability import metrics

    settings = Settings.from_env()
    home = os.environ["BENCH_HOME_ACCOUNT"]
    warm_on = json.loads(os.environ["BENCH_WARM_ON"])  # [[member or null, cluster], ...]
    fleets = [build_fleet(settings) for _ in range(threads)]

    def warm(fleet: Any) -> None:
        if not settings.serves_many:  # a single-cluster deployment's one Service
            fleet.home().kube().request("GET", "/version")
            return
        for member, cluster in warm_on:
            fleet._directory(member).has(cluster)
            fleet.service(member, cluster).kube().request("GET", "/version")

    warmers = [threading.Thread(target=warm, args=(f,)) for f in fleets]
    for thread in warmers:
        thread.start()
    for thread in warmers:
        thread.join()
    print("READY", flush=True)
    start_at = float(sys.stdin.readline())
    queue = collections.deque(enumerate(events))
    results: list[dict[str, Any]] = [{}] * len(events)

    def loop(fleet: Any) -> None:
        while True:
            try:
                index, raw = queue.popleft()
            except IndexError:
                return
            began, c0 = time.time(), time.thread_time()
            try:
                event = interruption_warning.normalise(raw)
                route = fleet.route(event, home)
                handed = time.time()
                result = route.service.handle(event, stop_by=began + 100, account=home, described=route.described)
                outcome, cluster = str(result.outcome), result.cluster
                cordoned = handed + result.cordoned_after_seconds if result.cordoned_after_seconds else None
            except Exception as exc:
                outcome, cluster, cordoned = f"error: {type(exc).__name__}: {exc}"[:200], None, None
            finally:
                metrics.clear_metrics()
            results[index] = {
                "outcome": outcome,
                "cluster": cluster,
                "began": began,
                "cordoned": cordoned,
                "ended": time.time(),
                "cpu_ms": round((time.thread_time() - c0) * 1000, 3),
            }

    workers = [threading.Thread(target=loop, args=(f,)) for f in fleets]
    time.sleep(max(0.0, start_at - time.time()))
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return {"events": results}


def main() -> None:
    job = json.loads(sys.stdin.readline())
    real_stdout = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the functions' log and metric lines)
    _instrument()
    if job["mode"] == "events":
        out = _events(job["events"], job.get("pause_s", 0.0))
    else:
        sys.stdout = real_stdout  # READY goes there; the parent reads only READY and BENCH lines
        out = _wave(job["events"], job["threads"])
    real_stdout.write("BENCH " + json.dumps(out) + "\n")
    real_stdout.flush()


if __name__ == "__main__":
    main()
