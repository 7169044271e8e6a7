"""Faults around an Auto Scaling lifecycle action's long drain (issue 20): a completion whose
answer is lost, and an API server outage between two heartbeats. The function's Auto Scaling and
Kubernetes calls go through the fault proxies (localeks/faults.py); the group is the local Auto
Scaling extension."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from localeks.dashboard import read_emf
from localeks.faults import Match, Rule, Status
from localeks.scenes import Scenes
from tests.integration.long_drains import LIFECYCLE, at, free_the_budget, scale_in_under_budget
from tests.reliability.support import Faults, error_stages, log_lines

SERVICE_UNAVAILABLE = Status(503, "injected: the API server is unavailable")


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


OUTAGE_SECONDS = 45
HOOK_HEARTBEAT_TIMEOUT = 60


def test_heartbeats_go_on_through_an_api_outage_and_the_drain_resumes(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults, figures: dict[str, Any]
) -> None:
    """Issue 20.4: a hook with a 60 s HeartbeatTimeout, a budget that refuses every eviction, and
    right after a heartbeat every request to the API server fails for 45 s. The heartbeats go on
    (never 60 s apart), the action never expires with its DefaultResult, and once the API server
    answers again the drain resumes; the budget is freed after the outage and the drain completes.
    Real time (LOCALEKS_DURABLE_REAL_TIME): the pauses and retry delays are waited, as on Lambda."""
    scaling = scale_in_under_budget(cluster_env, scenes, "outage", grace=3, heartbeat_timeout=HOOK_HEARTBEAT_TIMEOUT)
    group = scaling.group
    outage: dict[str, float] = {}

    def heartbeats() -> list[float]:
        return [at(c["time"]) for c in group.calls("RecordLifecycleActionHeartbeat") if c["outcome"] == "ok"]

    def brownout() -> None:
        # the hook step's heartbeat, then heartbeat-1 after the first round: the outage starts there
        deadline = time.monotonic() + 120
        while len(heartbeats()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        faults.kube.add(Rule(SERVICE_UNAVAILABLE, Match(), window=OUTAGE_SECONDS))
        outage["start"] = time.time()
        time.sleep(OUTAGE_SECONDS + 5)
        free_the_budget(scenes, scaling.namespace)

    thread = threading.Thread(target=brownout, daemon=True)
    thread.start()
    result = faults.invoke(cluster_env, scaling.event, function=LIFECYCLE, env={"LOCALEKS_DURABLE_REAL_TIME": "1"})
    thread.join()
    assert result.result["status"] == "SUCCEEDED", result.output[-3000:]
    out = result.result["result"]
    assert (out["outcome"], out["completed"]) == ("drained", True), out
    (action,) = group.actions()
    assert (action["state"], action["result"], action["ended_by"]) == (
        "completed",
        "CONTINUE",
        "CompleteLifecycleAction",
    ), action
    injected = [s for s in faults.kube.requests() if s.fault is not None]
    assert len(injected) >= 2, "the outage did not hit the rounds"
    # the drain ran again only once the outage was over
    served = [s for s in faults.kube.requests() if s.fault is None and s.at > injected[0].at]
    assert served
    assert served[0].at >= injected[0].at + OUTAGE_SECONDS, (injected[0], served[0])
    beats = heartbeats()
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    during = [b for b in beats if outage["start"] <= b <= outage["start"] + OUTAGE_SECONDS]
    figures.update(heartbeat_gaps=[round(g, 1) for g in gaps], heartbeats_during_outage=len(during))
    print(f"heartbeat gaps {figures['heartbeat_gaps']} s; {len(during)} during the {OUTAGE_SECONDS} s outage")
    assert max(gaps) < HOOK_HEARTBEAT_TIMEOUT, gaps
    assert during, "no heartbeat went out during the outage"
    assert "drain" in error_stages(result)  # each failed round is counted with its stage
    assert not [p for p in scenes.pods_on(group.node_name) if p.metadata.name in scaling.pods]
