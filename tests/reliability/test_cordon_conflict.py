"""A real 409 on the cordon: another writer changes the node between the handler's read and its
PATCH, and the API server itself refuses the stale write (the PATCH carries the resourceVersion the
handler read). The handler must re-read the node and write again, keeping the other writer's change.

Two concurrent events can make this race (tests/integration/test_handlers.py runs two at once), but
nothing there makes the 409 happen; here the fault proxy holds the answer of the handler's read of
the node, after the API server served it, while the test changes the node."""

from __future__ import annotations

import time

from localeks.faults import Match, Rule, Stall
from localeks.scenes import Scenes
from tests.reliability.support import Faults, InBackground, spot_event

HOLD = 3.0  # seconds the read's answer is held
THEIRS = "example.com/maintenance"  # the other writer's taint
OURS = "serverless-nth/spot-interruption"


def test_a_node_changed_between_read_and_cordon_is_re_read_and_keeps_the_other_change(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults
) -> None:
    scene = scenes.worker_node()
    node = f"/api/v1/nodes/{scene.node_name}$"
    read = faults.kube.add(Rule(Stall(HOLD), Match("GET", node), times=1))
    handler = InBackground(lambda: faults.invoke(cluster_env, spot_event(scene.instance_id)))
    handler.wait_until(lambda: read.injected == 1)
    time.sleep(0.5)  # the API server has answered the read (in milliseconds); the proxy holds it
    taint = {"key": THEIRS, "value": "true", "effect": "NoSchedule"}
    scenes.core.patch_node(scene.node_name, {"spec": {"taints": [taint]}})
    result = handler.result()
    assert result.exit_code == 0, result.output[-3000:]
    assert result.result["outcome"] == "drained", result.result
    # the API server refused the first write as stale, and took the second, made after a re-read
    patches = [s.status for s in faults.kube.requests("PATCH", node)]
    assert patches == [409, 200], patches
    assert [s.fault for s in faults.kube.requests("GET", node)] == ["stall-answer", None]
    now = scenes.core.read_node(scene.node_name)
    assert now.spec.unschedulable
    assert {t.key for t in now.spec.taints or []} == {THEIRS, OURS}, "the other writer's taint was lost"
