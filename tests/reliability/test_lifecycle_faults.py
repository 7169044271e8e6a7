"""Faults around an Auto Scaling lifecycle action's long drain (issue 20): a completion whose
answer is lost, and an API server outage between two heartbeats. The function's Auto Scaling and
Kubernetes calls go through the fault proxies (localeks/faults.py); the group is the local Auto
Scaling extension."""

from __future__ import annotations

import pytest

from localeks.dashboard import read_emf
from localeks.scenes import Scenes
from tests.integration.long_drains import LIFECYCLE, scale_in_under_budget
from tests.reliability.support import Faults, log_lines


@pytest.mark.parametrize("lost_answers", [1, 4], ids=["resent-by-botocore", "step-run-again"])
def test_a_completion_whose_answer_was_lost_is_not_reported_as_lost(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults, lost_answers: int
) -> None:
    """Issue 20.8: CompleteLifecycleAction reaches the group, its answer does not; it is sent again
    and the group answers "No active Lifecycle Action found". This execution completed the action:
    outcome completed, LifecycleActionsCompleted, not the LifecycleActionsLost alarm. One lost
    answer: botocore resends; four (all of botocore's attempts: max_attempts 3 counts retries):
    the step fails and runs again."""
    scaling = scale_in_under_budget(cluster_env, scenes, "lost-answer", grace=3, max_unavailable=1)
    group = scaling.group
    lost = faults.aws.lose_answer("CompleteLifecycleAction", "autoscaling", times=lost_answers)
    result = faults.invoke(cluster_env, scaling.event, function=LIFECYCLE)
    assert result.result["status"] == "SUCCEEDED", result.output[-3000:]
    assert lost.injected == lost_answers
    sends = [c["outcome"] for c in group.calls("CompleteLifecycleAction")]
    # the first took effect, every later send found nothing waiting
    assert sends == ["ok"] + ["error"] * lost_answers, sends
    failed = [line["step"] for line in log_lines(result) if line.get("message") == "step failed"]
    assert failed == (["complete"] if lost_answers == 4 else []), failed
    (action,) = group.actions()
    assert (action["state"], action["result"]) == ("completed", "CONTINUE"), action
    out = result.result["result"]
    assert (out["outcome"], out["completed"]) == ("drained", True), out
    valued = {r["name"]: r for r in read_emf(result.output.splitlines()) if r["value"]}
    assert "LifecycleActionsLost" not in valued, valued.get("LifecycleActionsLost")
    assert valued["LifecycleActionsCompleted"]["dimensions"]["outcome"] == "action-completed"
