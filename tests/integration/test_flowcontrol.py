"""k8s/flowcontrol.yaml against the local API server's API priority and fairness (the 1.34
bootstrap configuration): a burst of the functions' requests, without the manifest and with it.

The burst: requests at once with the functions' own token, each holding its seat for the 3 s
the watch cache waits for a resourceVersion that is not there yet (then 504: a seat held 3 s).
In global-default the functions' one flow gets 6 queues of 50 behind the level's seats (49, or
more while it borrows idle seats after earlier demand), so a burst of 50 more than seats and
queues hold comes back as 429 "queue-full"; the manifest's level queues 8 x 500 per flow. A
wave of real drains needs minutes of seeding for the same pressure: `make bench` measures it
(docs/apf.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3

from localeks import flowcontrol
from serverless_nth.aws.eks import EksAccess

GLOBAL_DEFAULT_FLOW_QUEUES = 6 * 50  # handSize x queueLengthLimit of the 1.34 bootstrap
# a LIST served from the watch cache at a resourceVersion far ahead: held 3 s, then 504
SLOW = "/api/v1/pods?resourceVersion=999999999&resourceVersionMatch=NotOlderThan"


@pytest.fixture
def as_functions(cluster_env: dict[str, str], function_session: boto3.Session) -> Iterator[Any]:
    """GET ``path`` ``n`` times at once with the functions' token; the statuses counted."""
    access = EksAccess(cluster_env["CLUSTER_NAME"], function_session.client("eks"), function_session.client("sts"))
    token = access.token()
    ca = str(Path(cluster_env["KUBECONFIG"]).parent / "pki" / "ca.crt")
    pool = urllib3.PoolManager(maxsize=1000, cert_reqs="CERT_REQUIRED", ca_certs=ca, retries=False, timeout=60)

    def burst(path: str, n: int) -> dict[int, int]:
        statuses: dict[int, int] = {}
        lock, start = threading.Lock(), threading.Barrier(n)

        def one() -> None:
            start.wait()
            status = pool.request(
                "GET", cluster_env["LOCALEKS_API_URL"] + path, headers={"Authorization": f"Bearer {token}"}
            ).status
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

        threads = [threading.Thread(target=one) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return statuses

    yield burst
    pool.clear()


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def test_the_manifest_turns_the_bursts_429s_into_waits(cluster_env: dict[str, str], as_functions: Any) -> None:
    flowcontrol.remove(cluster_env)
    probe = lambda: as_functions("/api/v1/nodes?limit=1", 1)  # noqa: E731
    flowcontrol.wait_classified(cluster_env, probe, "global-default")
    burst = flowcontrol.seats(cluster_env, "global-default") + GLOBAL_DEFAULT_FLOW_QUEUES + 50
    before = flowcontrol.counters(cluster_env)
    without = as_functions(SLOW, burst)
    without_apf = _delta(before, flowcontrol.counters(cluster_env))
    flowcontrol.apply(cluster_env)
    try:
        flowcontrol.wait_classified(cluster_env, probe, flowcontrol.OURS)
        before = flowcontrol.counters(cluster_env)
        with_manifest = as_functions(SLOW, burst)
        with_apf = _delta(before, flowcontrol.counters(cluster_env))
    finally:
        flowcontrol.remove(cluster_env)
    print(f"burst of {burst}: without the manifest {without} {without_apf}; with it {with_manifest} {with_apf}")
    # without: the burst is the functions' one flow in global-default, and its queues overflow
    assert without_apf.get("global-default/rejected/queue-full", 0) > 0
    assert without.get(429, 0) == without_apf["global-default/rejected/queue-full"]
    assert without_apf.get("global-default/dispatched", 0) == burst - without[429]
    # with: every request classified into the manifest's level, none refused for a full queue (a
    # request that waited longer than APF's queue time limit would still be a 429, "time-out")
    assert with_apf.get(f"{flowcontrol.OURS}/dispatched", 0) + with_manifest.get(429, 0) == burst
    assert "global-default/dispatched" not in with_apf
    assert f"{flowcontrol.OURS}/rejected/queue-full" not in with_apf
