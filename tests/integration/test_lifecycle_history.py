"""Bounded history (issue 20.10): every round of a lifecycle drain adds operations (the round, a
heartbeat, a pause) to the durable execution's history, which every invocation replays. While
nothing changes on the node the pause grows towards the heartbeat interval (policy.next_pause).

Measured here: a hold under a 7200 s hook (its global timeout is the 48 h cap) delivered as if the
scale-in had begun 48 h minus 185 s ago, so the real run holds for the last ~125 s of the 48 h:
its pauses and its operations. Modelled: the operation count of a whole 48 h hold, by the same
loop's timeline (rounds held until their stop_by, policy.next_pause, the code's constants), checked
against the measured run first. A 48 h run is out of reach: the runner's skipping clock skips the
durable waits, not the rounds, which last as long as a budget holds them (60 s each)."""

from __future__ import annotations

import time

import pytest

from localeks.invoke import invoke
from localeks.scenes import Scenes
from serverless_nth.kube.client import longest_failure
from serverless_nth.lifecycle_drain import GLOBAL_MARGIN_SECONDS, HEARTBEAT_SHARE
from serverless_nth.long_drain_each import ROUND_SECONDS
from serverless_nth.policy import next_pause
from tests.integration.long_drains import LIFECYCLE, scale_in_under_budget, steps

HOOK_SECONDS = 7200  # HeartbeatTimeout; GlobalTimeout = min(100 x 7200, 172800) = 48 h
GLOBAL_SECONDS = 172800
LEFT_SECONDS = 125  # of the hold, before the loop's end (global timeout less its margin)
BEFORE_AND_AFTER = 5  # event-time, hook, cordon; drained, complete


def modelled_operations(hold: float, heartbeat_timeout: int, growing: bool = True) -> int:
    """The operations of a lifecycle drain held ``hold`` seconds by a budget that never frees: each
    round lasts until its stop_by, then a heartbeat and a pause (``growing``: policy.next_pause as
    the loop calls it; else the fixed 1 s pause the loop had before issue 20.10)."""
    interval = heartbeat_timeout * HEARTBEAT_SHARE
    ceiling = interval - longest_failure(10.0)  # RequestTimeoutSeconds' default
    now = last_beat = pause = 0.0
    rounds = 0
    while True:
        now = max(now, min(now + ROUND_SECONDS, last_beat + interval, hold))
        rounds += 1
        if now >= hold:
            break
        last_beat = now
        pause = next_pause(pause, changed=rounds == 1 or not growing, ceiling=ceiling)
        now += round(pause)
    return BEFORE_AND_AFTER + 3 * rounds - 2  # the last round has no heartbeat and no pause


def test_the_pause_grows_while_a_budget_holds_and_a_48_h_hold_costs_few_operations(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    scaling = scale_in_under_budget(cluster_env, scenes, "history", heartbeat_timeout=HOOK_SECONDS)
    event = dict(scaling.event)
    began = time.time() - (GLOBAL_SECONDS - GLOBAL_MARGIN_SECONDS - LEFT_SECONDS)
    event["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began))
    result = invoke(LIFECYCLE, event, cluster_env)
    assert result.result["status"] == "SUCCEEDED", result.output[-3000:]
    assert result.result["result"]["outcome"] == "drain-incomplete", result.result["result"]
    ops = steps(result)
    pauses = [op["scheduled_end"] - op["started"] for op in ops if op["name"].startswith("pause-")]
    assert [round(p) for p in pauses] == [1, 2], pauses  # the budget changed nothing: it doubles
    hook = next(op for op in ops if op["name"] == "hook")
    held = int(began) + GLOBAL_SECONDS - GLOBAL_MARGIN_SECONDS - hook["ended"]
    assert len(ops) == modelled_operations(held, HOOK_SECONDS), [op["name"] for op in ops]

    hold = GLOBAL_SECONDS - GLOBAL_MARGIN_SECONDS
    figures = {
        timeout: (modelled_operations(hold, timeout), modelled_operations(hold, timeout, growing=False))
        for timeout in (1728, 7200)  # 1728 s: the least HeartbeatTimeout whose global timeout is 48 h
    }
    for timeout, (growing, fixed) in figures.items():
        print(f"48 h hold, HeartbeatTimeout {timeout} s: {growing} operations (fixed 1 s pause: {fixed})")
    print(f"measured: {len(ops)} operations over the last {held:.0f} s, pauses {[round(p, 1) for p in pauses]} s")
    assert all(growing <= 1000 for growing, _ in figures.values()), figures


@pytest.mark.parametrize("timeout", [30, 300, 1728, 7200])
def test_the_model_never_lets_a_pause_hold_a_heartbeat_past_the_interval(timeout: int) -> None:
    """The loop's own guarantee, on the model: a pause and a failing request fit in the interval."""
    interval = timeout * HEARTBEAT_SHARE
    pause = 0.0
    for _ in range(40):
        pause = next_pause(pause, changed=False, ceiling=interval - longest_failure(10.0))
        assert pause == 1.0 or pause + longest_failure(10.0) <= interval
