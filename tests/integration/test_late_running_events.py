"""A `running` event undoes this product's marks only if it is newer than the event that made them
(issue 25, item 1): a late or replayed one that lands in the middle of a drain leaves the node
cordoned, tainted and excluded, and nothing is scheduled back onto it."""

from __future__ import annotations

import threading
import time

from localeks.invoke import Invocation
from localeks.scenes import Scenes
from tests.integration.support import aged_event, node_state, run

SPOT_TAINT = "serverless-nth/spot-interruption"
LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def test_a_running_event_older_than_the_spot_warning_does_not_undo_its_drain(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scene = scenes.worker_node()
    scenes.worker_node(spot=False)  # room for the replacements
    ns = scenes.namespace("late-running")
    # a budget that allows nothing: the drain holds the node until just before the deadline
    pods = scenes.deployment(ns, "web", scene.node_name, 3, grace=5, pdb_max_unavailable=0)
    scenes.wait_pdbs(ns)
    spot_age = 90  # the Spot deadline is 30 s ahead
    drained: list[Invocation] = []
    drain = threading.Thread(
        target=lambda: drained.append(run(cluster_env, "spot-interruption", scene.instance_id, age_seconds=spot_age))
    )
    drain.start()
    deadline = time.monotonic() + 30
    while not node_state(scenes, scene.node_name)[0]:
        assert time.monotonic() < deadline, "the Spot drain never cordoned the node"
        time.sleep(0.1)

    late = aged_event("state-change-running", scene.instance_id, age_seconds=spot_age + 100)
    running = run(cluster_env, "state-change-running", scene.instance_id, event=late)
    assert running.exit_code == 0, running.output
    assert (running.result["outcome"], running.result["basis"]) == ("outdated", "superseded"), running.result
    assert "EventsOutdated" in running.output
    unschedulable, taints = node_state(scenes, scene.node_name)
    assert unschedulable
    assert SPOT_TAINT in taints
    assert LB_LABEL in (scenes.core.read_node(scene.node_name).metadata.labels or {})

    drain.join(timeout=120)
    [spot] = drained
    assert spot.exit_code == 0, spot.output[-3000:]
    assert spot.result["outcome"] == "drained"
    assert node_state(scenes, scene.node_name)[0], "the node was uncordoned during its drain"
    scheduled_back = {p.metadata.name for p in scenes.pods_on(scene.node_name)} - set(pods)
    assert not scheduled_back, f"pods scheduled back onto the draining node: {sorted(scheduled_back)}"


def test_a_running_event_newer_than_the_spot_warning_restores_the_node(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    # the instance was stopped and started again after the warning: its marks go
    scene = scenes.worker_node()
    spot = run(cluster_env, "spot-interruption", scene.instance_id, age_seconds=600)
    assert spot.exit_code == 0, spot.output
    assert node_state(scenes, scene.node_name)[0]
    running = run(cluster_env, "state-change-running", scene.instance_id, age_seconds=30)
    assert running.exit_code == 0, running.output
    assert running.result["outcome"] == "restored"
    unschedulable, taints = node_state(scenes, scene.node_name)
    assert not unschedulable
    assert SPOT_TAINT not in taints
