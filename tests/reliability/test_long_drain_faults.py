"""A long drain whose drain round fails in the middle: the Kubernetes API answers 503 to every
request of a round (after the client's own retries). The round's failure is told (an error with its
stage) and not retried inside the step, whose backoff would hold the heartbeat back (issue 20.4):
a heartbeat goes out, and the next round, in a new invocation after the pause, resumes the drain;
the steps before it (the hook check, the cordon) come from their checkpoints and are not run again."""

from __future__ import annotations

import threading
import time

from localeks.faults import NODE, Match, Rule, Status
from localeks.scenes import Scenes
from tests.integration.long_drains import LIFECYCLE, named, scale_in_under_budget
from tests.reliability.support import Faults, error_stages, log_lines

SERVICE_UNAVAILABLE = Status(503, "injected: the API server is unavailable")


def test_a_drain_round_that_fails_is_followed_by_a_heartbeat_and_the_next_round_resumes(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults
) -> None:
    scaling = scale_in_under_budget(cluster_env, scenes, "resume", grace=3, max_unavailable=1)
    group, pods, event = scaling.group, scaling.pods, scaling.event
    # armed by the cordon's and the lease's PATCHes (the cordon step): then the round's first GET of
    # the node fails three times, all the client's attempts, and the round with it
    outage = faults.kube.add(
        Rule(SERVICE_UNAVAILABLE, Match("GET", NODE), times=4, armed_by=Match("PATCH", NODE), armed_after=2)
    )
    result = faults.invoke(cluster_env, event, function=LIFECYCLE)
    assert result.exit_code == 0, result.output[-3000:]
    out = result.result
    assert out["status"] == "SUCCEEDED", out
    assert out["result"]["outcome"] == "drained", out["result"]
    assert outage.injected == 4
    ops = {op["name"]: op for op in out["operations"]}
    order = [op["name"] for op in out["operations"]]
    # the round failed and said so; a heartbeat, then the next round drained; nothing ran twice
    first = ops["drain-0"]["result"]["v"]  # the checkpoint, as the SDK's serdes writes a dict
    assert "503" in first["failed"]["v"], first
    assert order.index("drain-0") < order.index("heartbeat-1") < order.index("drain-1"), order
    assert all((op["attempt"] or 0) <= 1 for op in out["operations"]), order
    assert set(error_stages(result)) == {"drain"}
    cordons = [s for s in faults.kube.requests("PATCH", NODE) if s.fault is None]
    assert len(cordons) <= 4  # cordon, lease, lease renewed by the round that ran, lease let go
    assert [c["outcome"] for c in group.calls("CompleteLifecycleAction")] == ["ok"]
    assert not [p for p in scenes.pods_on(group.node_name) if p.metadata.name in pods]
    assert named(result, "complete")


def test_a_drain_round_that_fails_for_good_is_counted_with_its_stage(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults
) -> None:
    """Issue 25, item 4: an error of a round keeps its stage, each failed round counted as a failed
    invocation would be. The rounds go on failing, with heartbeats between them, until the action
    ends: here an operator completes it after three failed rounds."""
    scaling = scale_in_under_budget(cluster_env, scenes, "for-good", grace=3, max_unavailable=1)
    group = scaling.group
    # after the cordon's and the lease's PATCHes, every GET of the node fails: every round too
    rule = faults.kube.add(Rule(SERVICE_UNAVAILABLE, Match("GET", NODE), armed_by=Match("PATCH", NODE), armed_after=2))

    def operator_completes() -> None:
        deadline = time.monotonic() + 120
        while rule.injected < 9 and time.monotonic() < deadline:  # three rounds, three attempts each
            time.sleep(0.1)
        group.complete()

    threading.Thread(target=operator_completes, daemon=True).start()
    result = faults.invoke(cluster_env, scaling.event, function=LIFECYCLE)
    assert result.result["status"] == "SUCCEEDED", result.output[-3000:]
    assert result.result["result"]["outcome"] == "action-ended", result.result["result"]
    stages = error_stages(result)
    assert len(stages) >= 3, result.output[-3000:]
    assert set(stages) == {"drain"}, stages
    lines = [line for line in log_lines(result) if line.get("message") == "step failed"]
    failed = {(line["step"], line["stage"], line["retryable"]) for line in lines}
    rounds = {step for step, _, _ in failed if step.startswith("drain-")}
    assert {"drain-0", "drain-1", "drain-2"} <= rounds, failed
    assert {(stage, retryable) for _, stage, retryable in failed} == {("drain", True)}, failed
