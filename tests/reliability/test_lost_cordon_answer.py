"""A cordon whose answer was lost after the API server served it (issue 25, item 4): the client's
retry ends in 409, the node is re-read and found cordoned by this very call (its nonce), so the
invocation still says it cordoned the node: NodesCordoned and EventToCordonLatency are emitted."""

from __future__ import annotations

from typing import Any

from localeks.faults import NODE, Drop, Match, Rule
from localeks.scenes import Scenes
from tests.reliability.support import Faults, budgeted_node, metrics, spot_event


def test_a_cordon_whose_answer_was_lost_is_still_counted(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults, figures: dict[str, Any]
) -> None:
    scene = budgeted_node(scenes, replicas=2, max_unavailable=2)
    rule = faults.kube.add(Rule(Drop(), Match("PATCH", NODE), times=1))
    result = faults.invoke(cluster_env, spot_event(scene.node.instance_id))
    assert result.exit_code == 0, result.output[-3000:]
    assert rule.injected == 1
    out = result.result
    assert (out["cordoned"], out["node_unschedulable"], out["cordoned_by_this_event"]) == (True, True, True), out
    emitted = {m["name"] for m in metrics(result) if m["value"]}
    assert {"NodesCordoned", "NodesTainted", "EventToCordonLatency"} <= emitted, sorted(emitted)
    patches = faults.kube.requests("PATCH", NODE)
    figures.update(injected=rule.injected, cordon_patches=len(patches), requests_to_cordon=out["requests_to_cordon"])
