"""A long drain whose invocation fails in the middle: the Kubernetes API answers 503 to every
request of a drain round (after the client's own retries), so the step fails, the durable
execution retries it in a new invocation, and that invocation resumes at the round: the steps
before it (the hook check, the cordon) come from their checkpoints and are not run again."""

from __future__ import annotations

from localeks.faults import NODE, Match, Rule, Status
from localeks.scenes import Scenes
from tests.integration.long_drains import LIFECYCLE, named, scale_in_under_budget
from tests.reliability.support import Faults, error_stages, log_lines

SERVICE_UNAVAILABLE = Status(503, "injected: the API server is unavailable")


def test_an_invocation_that_fails_mid_drain_resumes_at_its_drain_round(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults
) -> None:
    scaling = scale_in_under_budget(cluster_env, scenes, "resume", grace=3, max_unavailable=1)
    group, pods, event = scaling.group, scaling.pods, scaling.event
    # armed by the cordon's and the lease's PATCHes (the cordon step): then the round's first GET of
    # the node fails three times, all the client's attempts, and the drain step with it
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
    # the round failed once and ran again in a new invocation; nothing before it ran twice
    assert ops["drain-0"]["attempt"] >= 2, ops["drain-0"]
    assert ops["hook"]["attempt"] <= 1, ops["hook"]
    assert ops["cordon"]["attempt"] <= 1, ops["cordon"]
    cordons = [s for s in faults.kube.requests("PATCH", NODE) if s.fault is None]
    assert len(cordons) <= 4  # cordon, lease, lease renewed by the round that ran, lease let go
    assert [c["outcome"] for c in group.calls("CompleteLifecycleAction")] == ["ok"]
    assert not [p for p in scenes.pods_on(group.node_name) if p.metadata.name in pods]
    assert named(result, "complete")


def test_a_drain_round_that_fails_for_good_is_counted_with_its_stage(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults
) -> None:
    """Issue 25, item 4: an error that escapes a durable step keeps its stage (the SDK keeps only
    its message), each failed attempt counted as a failed invocation would be."""
    scaling = scale_in_under_budget(cluster_env, scenes, "for-good", grace=3, max_unavailable=1)
    # after the cordon's and the lease's PATCHes, every GET of the node fails: the round too
    faults.kube.add(Rule(SERVICE_UNAVAILABLE, Match("GET", NODE), armed_by=Match("PATCH", NODE), armed_after=2))
    result = faults.invoke(cluster_env, scaling.event, function=LIFECYCLE)
    assert result.result["status"] == "FAILED", result.result
    stages = error_stages(result)
    assert stages, result.output[-3000:]
    assert set(stages) == {"drain"}, stages
    failed = [line for line in log_lines(result) if line.get("message") == "step failed"]
    assert {(line["step"], line["stage"], line["retryable"]) for line in failed} == {("drain-0", "drain", True)}
