"""The worker side of bench/burst.py's harness (its docstring says what a burst is and measures):
a spawned process that keeps warm Services, runs its share of a burst's events on threads, and
measures per event, inside the process, the handler's CPU time, the requests it sent (counted at
the transport) and when it began, cordoned and ended."""

from __future__ import annotations

import collections
import os
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# the core layer on sys.path and the handle() the jobs use, imported before any clock starts (with
# the process, as when this code was part of bench/burst.py)
import bench.common  # noqa: F401

# --- inside a worker process -------------------------------------------------------------------

_local = threading.local()


class _Account:
    """What one event cost: CPU seconds and requests, from every thread that worked on it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cpu = 0.0
        self.statuses: collections.Counter[str] = collections.Counter()

    def add_cpu(self, seconds: float) -> None:
        with self.lock:
            self.cpu += seconds

    def add_request(self, status: str) -> None:
        with self.lock:
            self.statuses[status] += 1


def _instrument() -> None:
    """Per-event accounting of the core's thread-pool tasks and of its requests at the transport.
    The core is not changed: its modules' ThreadPoolExecutor and the transport's request method
    are wrapped in this process only."""
    from concurrent.futures import ThreadPoolExecutor as Pool

    import serverless_nth.kube.client
    import serverless_nth.kube.drain
    import serverless_nth.kube.pods
    import serverless_nth.report

    class MeteredPool(Pool):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            account = getattr(_local, "account", None)

            def run() -> Any:
                _local.account = account
                started = time.thread_time()
                try:
                    return fn(*args, **kwargs)
                finally:
                    if account is not None:
                        account.add_cpu(time.thread_time() - started)
                    _local.account = None

            return super().submit(run)

    for module in (serverless_nth.kube.drain, serverless_nth.kube.pods, serverless_nth.report):
        module.ThreadPoolExecutor = MeteredPool  # type: ignore[attr-defined]
    transport = serverless_nth.kube.client.RESTClientObject  # the kubernetes client's, as the core uses it
    send = transport.request

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        account = getattr(_local, "account", None)
        try:
            response = send(self, *args, **kwargs)
        except Exception:
            if account is not None:
                account.add_request("error")
            raise
        if account is not None:
            account.add_request(str(response.status))
        return response

    transport.request = counted


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _one(mode: str, service: Any, instance_id: str) -> dict[str, Any]:
    from bench.common import handle
    from bench.drain import spot_event

    began = time.time()
    if mode == "noop":
        return {"began": began, "ended": began, "cordoned": began, "outcome": "noop", "cpu_s": 0.0, "requests": {}}
    account = _Account()
    _local.account = account
    cpu_before = time.thread_time()
    ec2_before = service.instances.requests_sent
    try:
        result = handle(service, spot_event(instance_id, rebalance=mode == "cordon"))
        outcome, cordoned = str(result.outcome), began + (result.cordoned_after_seconds or 0)
    except Exception as exc:  # reported as an outcome: Lambda would retry the event
        outcome, cordoned = f"error: {type(exc).__name__}: {exc}"[:200], time.time()
    ended = time.time()
    account.add_cpu(time.thread_time() - cpu_before)
    _local.account = None
    statuses = dict(account.statuses)
    return {
        "began": began,
        "ended": ended,
        "cordoned": cordoned,
        "outcome": outcome,
        "cpu_s": account.cpu,
        "requests": statuses,
        "aws_requests": service.instances.requests_sent - ec2_before,
    }


def _serve(conn: Any, env: dict[str, str]) -> None:
    """One warm execution environment: serves jobs until told to stop."""
    started, cpu_started = time.time(), _cpu_seconds()
    os.environ.update(env)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the functions' log lines)
    import bench.drain  # noqa: F401
    from serverless_nth.aws.clients import aws_client
    from serverless_nth.aws.ec2 import Ec2Instances
    from serverless_nth.aws.eks import EksAccess
    from serverless_nth.aws.notify import Notifier
    from serverless_nth.config import Settings
    from serverless_nth.service import Service

    _instrument()
    settings = Settings.from_env()
    ec2 = aws_client("ec2")
    eks = EksAccess(settings.cluster_name, aws_client("eks"), aws_client("sts"))
    services: list[Any] = []
    conn.send({"startup_s": time.time() - started, "startup_cpu_s": _cpu_seconds() - cpu_started})
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        _, mode, targets, threads = message
        cpu_before = _cpu_seconds()
        while len(services) < threads:
            services.append(Service(settings, Ec2Instances(ec2), eks, Notifier("", None)))
        used = services[:threads]
        _warm(used)
        conn.send({"warm_cpu_s": _cpu_seconds() - cpu_before})
        _, start_at = conn.recv()
        conn.send(_run_job(mode, targets, services[:threads], start_at))


def _warm(services: list[Any]) -> None:
    """A connection for each service to the API server (cluster data and token come with the
    first). Not to EC2: the local moto server closes each connection after its answer."""
    with ThreadPoolExecutor(max_workers=min(len(services), 32)) as pool:
        list(pool.map(lambda s: s.kube().request("GET", "/version"), services))


def _run_job(mode: str, targets: list[str], services: list[Any], start_at: float) -> dict[str, Any]:
    """One thread per service, each waiting at the gate, then taking events until none is left."""
    queue = collections.deque(enumerate(targets))
    results: list[dict[str, Any]] = [{}] * len(targets)
    gate = threading.Event()

    def loop(service: Any) -> None:
        gate.wait()
        while True:
            try:
                index, instance_id = queue.popleft()
            except IndexError:
                return
            results[index] = _one(mode, service, instance_id)

    threads = [threading.Thread(target=loop, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu_before = _cpu_seconds()
    gate.set()
    for thread in threads:
        thread.join()
    return {"events": results, "cpu_s": _cpu_seconds() - cpu_before}
