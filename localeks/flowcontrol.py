"""The optional API priority and fairness manifest (k8s/flowcontrol.yaml) on the local API server:
applied, removed, and what APF did with the functions' requests (their flow schemas' counters)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from localeks import apiserver_metrics
from localeks.cluster import REPO

MANIFEST = REPO / "k8s" / "flowcontrol.yaml"
OURS = "serverless-nth"  # the manifest's FlowSchema and PriorityLevelConfiguration
# where the functions' requests land: without the manifest, global-default (their identity is
# neither a service account nor a system user); with it, ours
FUNCTION_SCHEMAS = (OURS, "global-default")


def _kubectl(cluster_env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [str(Path(cluster_env["LOCALEKS_BIN"]) / "kubectl"), f"--kubeconfig={cluster_env['KUBECONFIG']}", *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def apply(cluster_env: dict[str, str]) -> None:
    _kubectl(cluster_env, "apply", "-f", str(MANIFEST))


def remove(cluster_env: dict[str, str]) -> None:
    _kubectl(cluster_env, "delete", "--ignore-not-found", "-f", str(MANIFEST))


def counters(cluster_env: dict[str, str]) -> dict[str, float]:
    """Per flow schema of the functions: requests dispatched, and rejected (429) per reason."""
    text = apiserver_metrics.scrape(cluster_env)
    out: dict[str, float] = {}
    for schema in FUNCTION_SCHEMAS:
        dispatched = apiserver_metrics.samples(text, "apiserver_flowcontrol_dispatched_requests_total")
        out[f"{schema}/dispatched"] = sum(value for labels, value in dispatched if labels["flow_schema"] == schema)
        for labels, value in apiserver_metrics.samples(text, "apiserver_flowcontrol_rejected_requests_total"):
            if labels["flow_schema"] == schema:
                key = f"{schema}/rejected/{labels['reason']}"
                out[key] = out.get(key, 0.0) + value
    return out


def seats(cluster_env: dict[str, str], level: str) -> int:
    """The priority level's seats now: its nominal share, plus what it borrows after recent demand."""
    text = apiserver_metrics.scrape(cluster_env)
    return round(
        apiserver_metrics.total(
            text, "apiserver_flowcontrol_current_limit_seats", lambda x: x["priority_level"] == level
        )
    )


def wait_classified(cluster_env: dict[str, str], probe: Callable[[], object], schema: str, timeout: float = 30) -> None:
    """Until a request sent by ``probe()`` (as the functions) is dispatched in ``schema``: the API
    server applies a new or deleted FlowSchema a moment after the write."""
    deadline = time.monotonic() + timeout
    while True:
        before = counters(cluster_env).get(f"{schema}/dispatched", 0.0)
        probe()
        if counters(cluster_env).get(f"{schema}/dispatched", 0.0) > before:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the functions' requests never reached flow schema {schema}")
        time.sleep(0.5)
