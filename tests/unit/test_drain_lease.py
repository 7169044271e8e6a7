"""The drain lease's rules, pure (kube/lease.refusal): who may take a node's lease from whom."""

from __future__ import annotations

import json

import pytest

from serverless_nth.kube.lease import STALE_MARGIN_SECONDS, Held, LeaseClaim, Refusal, refusal

ARN = "arn:aws:health:us-east-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/x"
FIRST = LeaseClaim("exec-1", "id-1", ARN, "2026-11-25T10:00:00+00:00")


def recorded(claim: LeaseClaim, until: float) -> str:
    return json.dumps({**claim.__dict__, "renewed": until - 60, "until": until})


def test_a_duplicate_delivery_is_refused_for_as_long_as_the_holder_promised_even_days_ahead() -> None:
    days_ahead = 14 * 86400.0
    duplicate = LeaseClaim("exec-2", "id-1", ARN, FIRST.version)
    assert refusal(recorded(FIRST, days_ahead), duplicate, now=86400.0) == Held(Refusal.DUPLICATE, "exec-1 id-1")
    # the holder missed its own promise by more than the margin: it is gone, the lease is taken over
    assert refusal(recorded(FIRST, 1000.0), duplicate, now=1000.0 + STALE_MARGIN_SECONDS) is None
    assert refusal(recorded(FIRST, 1000.0), duplicate, now=1000.0 + STALE_MARGIN_SECONDS - 1) is not None


def test_a_newer_version_of_the_same_health_event_supersedes_and_the_older_is_refused() -> None:
    rescheduled = LeaseClaim("exec-2", "id-2", ARN, "2026-11-30T10:00:00+00:00")
    assert refusal(recorded(FIRST, 10**10), rescheduled, now=0.0) is None
    assert refusal(recorded(rescheduled, 10**10), FIRST, now=0.0) == Held(Refusal.SUPERSEDED, "exec-2 id-2")


def test_another_event_is_refused_while_fresh_and_the_holder_always_renews() -> None:
    spot = LeaseClaim("exec-3", "id-3", "id-3", "2026-11-25T11:00:00+00:00")
    assert refusal(recorded(FIRST, 500.0), spot, now=100.0) == Held(Refusal.HELD_BY_ANOTHER_EVENT, "exec-1 id-1")
    assert refusal(recorded(FIRST, 500.0), FIRST, now=10**9) is None


@pytest.mark.parametrize(
    ("value", "now", "held"),
    [
        ("", 0.0, False),
        ("not a lease", 0.0, False),
        # the format before claims carried their promise, "<execution> <event id> <renewed>": 240 s
        ("exec-9 id-9 1000", 1239.0, True),
        ("exec-9 id-9 1000", 1240.0, False),
    ],
)
def test_an_empty_unreadable_or_older_format_lease(value: str, now: float, held: bool) -> None:
    assert (refusal(value, FIRST, now) is not None) is held
