"""Odd Retry-After answers (issue 25, item 2): a wait longer than the drain's time must not carry the
handler past its own end, and a Retry-After of 0 must not turn the retries into a flood at a server
that says it is overloaded. Injected by the TLS fault proxy in front of the local kube-apiserver."""

from __future__ import annotations

import itertools
import time
from typing import Any

from localeks.faults import EVICTION, Match, Rule, Status
from localeks.scenes import Scenes
from serverless_nth.kube.evict import BACKOFF_FIRST
from tests.reliability.support import (
    Faults,
    budgeted_node,
    error_stages,
    event_deadline,
    failure_line,
    fates,
    logged_drain,
    metrics,
    spot_event,
)

OVERLOADED = "Too many requests, please try again later."


def test_a_retry_after_longer_than_the_time_left_ends_the_drain_in_time(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults, figures: dict[str, Any]
) -> None:
    scene = budgeted_node(scenes, replicas=3, max_unavailable=3, grace=2)
    rule = faults.kube.add(
        Rule(Status(429, OVERLOADED, retry_after="3600"), Match("POST", EVICTION), times=1, per_path=True)
    )
    event = spot_event(scene.node.instance_id, age_seconds=105)  # the deadline 15 s ahead
    started = time.time()
    result = faults.invoke(cluster_env, event)
    ended = time.time()
    # before the fix: asleep for the hour, killed at the function's timeout with nothing told
    assert result.result.get("errorType") != "Sandbox.Timedout", result.output[-3000:]
    assert ended < event_deadline(event) + 10, f"returned {ended - event_deadline(event):.1f} s past the deadline"
    assert result.exit_code == 1, result.output[-3000:]
    assert result.result["errorType"] == "DrainFailed", result.result
    assert "drain" in error_stages(result)
    assert (failure_line(result)["stage"], failure_line(result)["retryable"]) == ("drain", True)
    drain = logged_drain(result)
    assert drain is not None
    assert fates(drain) == dict.fromkeys(scene.pods, "failed")
    assert "DrainDuration" in {m["name"] for m in metrics(result)}
    figures.update(
        injected=rule.injected,
        retry_after=3600,
        seconds=round(ended - started, 1),
        past_deadline=round(ended - event_deadline(event), 1),
    )


def test_a_retry_after_of_zero_does_not_disable_the_backoff(
    cluster_env: dict[str, str], scenes: Scenes, faults: Faults, figures: dict[str, Any]
) -> None:
    scene = budgeted_node(scenes, replicas=10, max_unavailable=10)
    window = 2.0
    rule = faults.kube.add(Rule(Status(429, OVERLOADED, retry_after="0"), Match("POST", EVICTION), window=window))
    result = faults.invoke(cluster_env, spot_event(scene.node.instance_id))
    assert result.exit_code == 0, result.output[-3000:]
    assert result.result["outcome"] == "drained", result.result
    gaps = []
    for pod in scene.pods:
        tries = faults.kube.requests("POST", f"/pods/{pod}/eviction$")
        gaps += [b.at - a.done_at for a, b in itertools.pairwise(tries)]
    assert gaps, "no eviction was retried"
    assert min(gaps) >= BACKOFF_FIRST * 0.8, sorted(gaps)[:5]
    figures.update(
        injected=rule.injected,
        window_seconds=window,
        requests_per_second=round(rule.injected / window, 1),
        retry_gap_min=round(min(gaps), 3),
    )
