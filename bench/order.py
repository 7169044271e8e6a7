"""Drain order at a real deadline: a Spot warning's 120 s on a node with ordinary pods and critical
ones (system-cluster-critical), on the kwok-speed-1 local EKS (a 30 s grace period lasts 30 s).
A watch tells when each pod's deletion began (the eviction: its SIGTERM) and when it was gone, and
with what grace period; nothing here asserts a timing, the figures say whether the critical pods'
SIGTERM came after the ordinary pods were gone and whether everything ended before the deadline."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.common import REPO, handle
from bench.drain import DeletionClock
from localeks.scenes import NodeScene, Scenes

CRITICAL_CLASS = "system-cluster-critical"
SPOT_NOTICE_S = 120


def seed(scenes: Scenes, ordinary: int, critical: int, ordinary_grace: int, critical_grace: int) -> NodeScene:
    """A Spot node with ``ordinary`` pods in Deployments of 10 and ``critical`` pods of a critical
    Deployment (as CoreDNS is), no PDB; a node beside it for their replacements."""
    scene = scenes.worker_node(spot=True)
    scenes.worker_node(spot=False)
    ns = scenes.namespace("order")
    scene.namespace = ns
    for index, start in enumerate(range(0, ordinary, 10)):
        names = scenes.deployment(
            ns,
            f"app-{index}",
            scene.node_name,
            min(10, ordinary - start),
            grace=ordinary_grace,
            pdb_max_unavailable=None,
        )
        scene.pods.setdefault("ordinary", []).extend(names)
    scene.pods["critical"] = scenes.deployment(
        ns,
        "dns",
        scene.node_name,
        critical,
        grace=critical_grace,
        pdb_max_unavailable=None,
        priority_class=CRITICAL_CLASS,
    )
    scenes.wait_running(ns, scene.all_pods(), timeout=120)
    return scene


def spot_event(instance_id: str, deadline_s: float) -> Any:
    """A Spot interruption warning whose two minutes end ``deadline_s`` from now."""
    from serverless_nth.events.model import EventKind, InterruptionEvent

    sent = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=SPOT_NOTICE_S - deadline_s)
    return InterruptionEvent(
        EventKind.SPOT_INTERRUPTION, str(uuid.uuid4()), instance_id, "us-east-1", "123456789012", sent, "terminate"
    )


def order(scenes: Scenes, service: Any, size: dict[str, int]) -> dict[str, Any]:
    scene = seed(scenes, size["ordinary"], size["critical"], size["ordinary_grace"], size["critical_grace"])
    ordinary, critical = scene.pods["ordinary"], scene.pods["critical"]
    with DeletionClock(scenes, scene.namespace) as clock:
        began = time.time()
        result = handle(service, spot_event(scene.instance_id, size["deadline_s"]))
        time.sleep(1.5)  # the watch's last events
    deadline = began + size["deadline_s"]

    def since(moments: list[float]) -> float:
        return round(max(moments) - began, 3)

    out = {
        **size,
        "outcome": result.outcome,
        "margin_s": service.settings.deadline_margin_seconds,
        "critical_share_percent": service.settings.critical_pod_share,
        "ordinary_grace_given_s": sorted({clock.deletion_grace[p] for p in ordinary}),
        "critical_grace_given_s": sorted({clock.deletion_grace[p] for p in critical}),
        "ordinary_first_sigterm_s": round(min(clock.deleting[p] for p in ordinary) - began, 3),
        "ordinary_gone_s": since([clock.gone[p] for p in ordinary]),
        "critical_first_sigterm_s": round(min(clock.deleting[p] for p in critical) - began, 3),
        "critical_gone_s": since([clock.gone[p] for p in critical]),
        "drain_complete_s": round(result.drain["started_after_seconds"] + result.drain["duration_seconds"], 3),
    }
    out["critical_after_ordinary"] = out["critical_first_sigterm_s"] >= out["ordinary_gone_s"]
    out["all_gone_before_deadline"] = max(clock.gone[p] for p in ordinary + critical) <= deadline
    out["left_before_deadline_s"] = round(deadline - max(clock.gone[p] for p in ordinary + critical), 3)
    return out


def bench_order(speed1: Any, size: dict[str, int]) -> dict[str, Any]:
    """``order`` on the kwok-speed-1 local EKS (``bench.phases.Speed1``, left running for the
    real-grace phase), from a process of its own, as the real-grace drain runs."""
    from bench.phases import child_json

    speed1.ready()
    argv = [sys.executable, "-m", "bench.order", str(speed1.paths.state), *(f"{k}={v}" for k, v in size.items())]
    try:
        out = child_json(argv, {**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"the drain-order run failed: {exc.stderr[-3000:]}") from exc
    print(f"bench: drain order: {out}", flush=True)
    return out


def main() -> None:
    """``python -m bench.order STATE key=value ...``: prints ``BENCH <json>``."""
    import json
    from pathlib import Path

    from bench.common import warm_service
    from localeks.cluster import Paths, read_env

    env = read_env(Paths(Path(sys.argv[1])))
    size = {k: int(v) for k, v in (arg.split("=", 1) for arg in sys.argv[2:])}
    service = warm_service(env)
    service.kube().request("GET", "/version")  # warm: cluster data, token, connection
    sys.stdout.flush()
    out = order(Scenes(env), service, size)
    os.write(1, f"\nBENCH {json.dumps(out)}\n".encode())


if __name__ == "__main__":
    main()
