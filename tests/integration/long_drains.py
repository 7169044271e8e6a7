"""What the long-drain tests share: the functions' names and readers of a durable execution's
record as the local invoke returns it."""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass
from typing import Any

from localeks.invoke import Invocation, invoke
from localeks.node_group import HEARTBEAT_TIMEOUT, NodeGroup
from localeks.scenes import Scenes
from tests.eventfiles import load_event

LIFECYCLE = "LifecycleActionFunction"
SCHEDULED = "ScheduledChangeFunction"


@dataclass
class Scaling:
    """A node of a group being scaled in: two pods of a Deployment on it under a budget, a spare
    node for their replacements, and the event of the pending lifecycle action."""

    group: NodeGroup
    namespace: str
    pods: list[str]
    event: dict[str, Any]


def scale_in_under_budget(
    cluster_env: dict[str, str],
    scenes: Scenes,
    prefix: str,
    *,
    grace: int = 5,
    max_unavailable: int = 0,
    heartbeat_timeout: int = HEARTBEAT_TIMEOUT,
) -> Scaling:
    """``max_unavailable`` 0: the budget refuses every eviction until the test changes it."""
    group = NodeGroup(cluster_env, scenes, heartbeat_timeout=heartbeat_timeout)
    scenes.worker_node(spot=False)  # room for the replacements
    namespace = scenes.namespace(prefix)
    pods = scenes.deployment(namespace, "api", group.node_name, 2, grace=grace, pdb_max_unavailable=max_unavailable)
    scenes.wait_pdbs(namespace)
    return Scaling(group, namespace, pods, group.scale_in())


def free_the_budget(scenes: Scenes, namespace: str) -> None:
    scenes.policy.patch_namespaced_pod_disruption_budget("api", namespace, {"spec": {"maxUnavailable": 1}})


def at(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def steps(invocation: Invocation) -> list[dict[str, Any]]:
    return list(invocation.result["operations"])


def named(invocation: Invocation, prefix: str) -> list[dict[str, Any]]:
    return [op for op in steps(invocation) if (op["name"] or "").startswith(prefix)]


LEASE = "serverless-nth/drain-lease"  # the node annotation a drain execution holds while it drains


def wait_leased(scenes: Scenes, node_name: str, timeout: float = 60, settle: float = 1.0) -> None:
    """Returns once an execution holds the node's drain lease (and ``settle`` seconds more, for
    its first drain round), instead of a fixed sleep that a loaded machine can outlast."""
    deadline = time.monotonic() + timeout
    while LEASE not in (scenes.core.read_node(node_name).metadata.annotations or {}):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no drain lease on {node_name} within {timeout} s")
        time.sleep(0.1)
    time.sleep(settle)


def health_event(instances: list[str], starts_in: float, status: str) -> dict[str, Any]:
    """One version of the sample's Health event (its eventArn), sent now, with an event id of its
    own. Event times have whole seconds: a version sent a second after the last is newer; and an
    instance's LaunchTime must come before the event that names it."""
    time.sleep(1.1)
    event = load_event("scheduled-change", now=True)
    start = time.gmtime(time.time() + starts_in)
    event["detail"].update(
        startTime=time.strftime("%a, %d %b %Y %H:%M:%S GMT", start),
        statusCode=status,
        affectedEntities=[{"entityValue": i} for i in instances],
    )
    event["resources"] = list(instances)
    return event


SCHEDULED_TAINT = "serverless-nth/scheduled-change"


def in_background(
    event: dict[str, Any],
    cluster_env: dict[str, str],
    params: dict[str, str],
    env_overrides: dict[str, str] | None = None,
) -> tuple[threading.Thread, list[Invocation]]:
    """The scheduled-change function run on a thread: the thread, and its invocation once it ends."""
    done: list[Invocation] = []

    def run() -> None:
        done.append(invoke(SCHEDULED, event, cluster_env, params, env_overrides=env_overrides))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def boot(scenes: Scenes, node_name: str, boot_id: str) -> None:
    """What a kubelet reports of the machine's boot (a new id after every boot)."""
    scenes.core.patch_node_status(node_name, {"status": {"nodeInfo": {"bootID": boot_id}}})


def hand_back_after_reboot(
    cluster_env: dict[str, str], scenes: Scenes, node_name: str, event: dict[str, Any]
) -> Invocation:
    """A reboot event whose window starts within the lead time, run in real time (the checks after
    the window starts are what is watched): the node is drained, stays ours 20 s into the window,
    then the kubelet reports a new boot. Returns the ended execution."""
    boot(scenes, node_name, "boot-1")
    thread, done = in_background(
        event, cluster_env, {"ScheduledChangeLeadSeconds": "3600"}, {"LOCALEKS_DURABLE_REAL_TIME": "1"}
    )
    deadline = time.monotonic() + 90
    while scenes.pods_on(node_name) or not scenes.core.read_node(node_name).spec.unschedulable:
        assert time.monotonic() < deadline, "the node was not drained"
        time.sleep(0.5)
    time.sleep(20)  # the window has started, the machine not yet rebooted: the node stays ours
    node = scenes.core.read_node(node_name)
    assert node.spec.unschedulable
    assert {t.key: t.effect for t in node.spec.taints or []} == {SCHEDULED_TAINT: "NoSchedule"}
    boot(scenes, node_name, "boot-2")  # what the kubelet reports after the reboot
    thread.join(timeout=150)
    assert done, "the execution did not end"
    return done[0]
