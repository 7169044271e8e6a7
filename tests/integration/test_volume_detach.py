"""The wait for the node's VolumeAttachments before an instance is let go (``LongDrains.
detach_volumes``, the step the lifecycle and Capacity Block workflows run before the end), against
the local EKS: kube-controller-manager's attach/detach controller attaches a pod's EBS CSI volume
(a real VolumeAttachment), the local external-attacher (localeks/attacher.py) marks it attached and
lets it go on detach. Run in a fresh process with the function role's credentials and settings, as
a durable function's step runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.common import CORE, function_environment
from localeks.cluster import REPO
from localeks.scenes import Scenes
from localeks.volumes import attachments, pod_with_volume
from tests.integration.support import run

STEP = """
import datetime, json, sys, uuid
from serverless_nth.aws.autoscaling import LifecycleActions
from serverless_nth.aws.clients import aws_client
from serverless_nth.config import Settings
from serverless_nth.entrypoint import build_fleet
from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.long_drain import LongDrains
from serverless_nth.observability import metrics

node, instance, end = sys.argv[1], sys.argv[2], float(sys.argv[3])
settings = Settings.from_env()
drains = LongDrains(build_fleet(settings), settings)
now = datetime.datetime.now(datetime.UTC)
event = InterruptionEvent(EventKind.ASG_TERMINATING, str(uuid.uuid4()), instance, "us-east-1", "123456789012", now, "")
out = drains.detach_volumes(event, node, end or None)
metrics.add_dimension("event_kind", event.kind.value)
metrics.flush_metrics()
print("STEP " + json.dumps(out), flush=True)
"""


def detach_volumes(cluster_env: dict[str, str], node: str, instance: str, seconds: int, end: float = 0) -> Any:
    env = {
        **function_environment(cluster_env, VOLUME_DETACH_SECONDS=str(seconds), POWERTOOLS_LOG_LEVEL="INFO"),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(CORE),
    }
    done = subprocess.run(
        [sys.executable, "-c", STEP, node, instance, str(end)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    step = json.loads(next(line for line in lines if line.startswith("STEP "))[5:])
    emf = [json.loads(line) for line in lines if line.startswith("{") and '"_aws"' in line]
    values = [m.get("VolumesStillAttached", []) for m in emf]  # Powertools writes a metric's values as a list
    counted = sum(sum(v) if isinstance(v, list) else v for v in values)
    return step, counted


def test_the_wait_sees_the_volume_detached_once_the_pods_are_gone(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node()
    ns = scenes.namespace("vol")
    pv = pod_with_volume(scenes, ns, "db", scene.node_name, grace=5)
    assert attachments(scenes, scene.node_name) == [{"pv": pv, "attached": True}]
    drained = run(cluster_env, "spot-interruption", scene.instance_id)
    assert drained.result["outcome"] == "drained", drained.output
    step, counted = detach_volumes(cluster_env, scene.node_name, scene.instance_id, seconds=60)
    assert step["attached"] == []
    assert step["waited_seconds"] < 60
    assert attachments(scenes, scene.node_name) == []
    assert counted == 0


def test_what_is_still_attached_when_the_time_is_up_is_told(cluster_env: dict[str, str], scenes: Scenes) -> None:
    scene = scenes.worker_node()
    ns = scenes.namespace("vol")
    pv = pod_with_volume(scenes, ns, "db", scene.node_name)  # its pod stays: no drain
    began = time.time()
    step, counted = detach_volumes(cluster_env, scene.node_name, scene.instance_id, seconds=60, end=began + 2)
    assert step["attached"] == [pv]
    # until the end, 2 s after ``began`` (the step's process starts meanwhile), not the setting's 60 s
    assert 0 < step["waited_seconds"] <= 2.5
    assert time.time() - began < 10
    assert counted == 1
    events = scenes.core.list_namespaced_event("default", field_selector=f"involvedObject.name={scene.node_name}")
    told = [e for e in events.items if e.reason == "VolumesStillAttached"]
    assert len(told) == 1
    assert told[0].type == "Warning"
    assert pv in told[0].message
