"""A Health event names two instances and the API server fails every request about one node's
object once it is cordoned: that instance's steps fail for good (after the durable retries), the
other's drain goes on to its end, and the execution fails at the end so that the event is kept for
a replay (issue 20: one instance's failure never stops the others)."""

from __future__ import annotations

import re

from localeks.faults import Match, Rule, Status
from localeks.scenes import Scenes
from tests.integration.long_drains import SCHEDULED, health_event, named
from tests.integration.support import pods_left
from tests.reliability.support import Faults

SERVICE_UNAVAILABLE = Status(503, "injected: the API server is unavailable")


def test_one_instance_failing_for_good_leaves_the_other_drained_and_the_execution_failed(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults
) -> None:
    failing, healthy = (
        scenes.node_with_workloads(grace=1, long_grace=1),
        scenes.node_with_workloads(grace=1, long_grace=1),
    )
    scenes.worker_node(spot=False)
    scenes.worker_node(spot=False)
    path = rf"^/api/v1/nodes/{re.escape(failing.node_name)}$"
    # after its cordon's and its lease's PATCHes, every GET of that one node fails
    faults.kube.add(Rule(SERVICE_UNAVAILABLE, Match("GET", path), armed_by=Match("PATCH", path), armed_after=2))
    event = health_event([failing.instance_id, healthy.instance_id], 3 * 3600, "upcoming")
    result = faults.invoke(cluster_env, event, function=SCHEDULED, params={"ScheduledChangeLeadSeconds": "600"})
    out = result.result
    assert out["status"] == "FAILED", out
    assert "instances not handled" in out["error"]["errorMessage"], out["error"]
    assert failing.instance_id in out["error"]["errorMessage"]
    # the healthy instance's node was drained to its end, as kubectl drain leaves it
    assert named(result, f"drained-{healthy.instance_id}")
    assert pods_left(scenes, healthy) == {healthy.pods["daemonset"][0]: False, healthy.pods["mirror"][0]: False}
