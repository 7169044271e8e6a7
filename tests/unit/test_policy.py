"""The policy table: the event, EC2's state now, and the time, against the action."""

import datetime

import pytest

from serverless_nth.config import Settings, TaintEffect
from serverless_nth.events import EventKind, InterruptionEvent
from serverless_nth.instance import Presence, presence
from serverless_nth.policy import OUT_OF_SERVICE_KEY, Basis, decide

T0 = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)
DEFAULTS = Settings(cluster_name="c")
LIVE, GOING, GONE = Presence.LIVE, Presence.GOING, Presence.GONE
K = EventKind


def event(kind: EventKind, detail: str = "") -> InterruptionEvent:
    return InterruptionEvent(kind, "id-1", "i-0123456789abcdef0", "us-east-1", "123456789012", T0, detail)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


# (kind, detail, EC2 presence, seconds after the event, drain, deadline s (caps grace), taints, basis)
TABLE = [
    # on time, EC2 agrees: each event's own row
    (K.SPOT_INTERRUPTION, "terminate", LIVE, 2, True, 120, ["spot-interruption"], Basis.EVENT),
    (K.SPOT_INTERRUPTION, "stop", LIVE, 2, True, 120, ["spot-interruption"], Basis.EVENT),
    (K.REBALANCE_RECOMMENDATION, "", LIVE, 2, False, None, ["rebalance-recommendation"], Basis.EVENT),
    (K.INSTANCE_STOPPING, "stopping", GOING, 2, True, 90, ["instance-stopping"], Basis.EVENT),
    (K.INSTANCE_SHUTTING_DOWN, "shutting-down", GOING, 2, True, 90, ["instance-shutting-down"], Basis.EVENT),
    (K.INSTANCE_STOPPED, "stopped", GONE, 2, False, None, ["instance-stopped", "oos"], Basis.EVENT),
    (K.INSTANCE_TERMINATED, "terminated", GONE, 2, False, None, ["instance-terminated", "oos"], Basis.EVENT),
    (K.INSTANCE_PENDING, "pending", LIVE, 2, False, None, [], Basis.NOT_HANDLED),
    (K.INSTANCE_RUNNING, "running", LIVE, 2, False, None, [], Basis.NOT_HANDLED),
    # Spot hibernation starts at once: cordon and taint, no drain that cannot finish
    (K.SPOT_INTERRUPTION, "hibernate", LIVE, 2, False, None, ["spot-interruption"], Basis.HIBERNATE),
    # the instance is already gone, whatever the event expected: the treatment of a dead node
    (K.SPOT_INTERRUPTION, "terminate", GONE, 600, False, None, ["spot-interruption", "oos"], Basis.INSTANCE_GONE),
    (K.INSTANCE_STOPPING, "stopping", GONE, 100, False, None, ["instance-stopping", "oos"], Basis.INSTANCE_GONE),
    (K.REBALANCE_RECOMMENDATION, "", GONE, 5, False, None, ["rebalance-recommendation", "oos"], Basis.INSTANCE_GONE),
    # stopped / terminated for a live instance: it came back (stop/start) or the event is a replay
    (K.INSTANCE_STOPPED, "stopped", LIVE, 2, False, None, [], Basis.OUTDATED),
    (K.INSTANCE_TERMINATED, "terminated", LIVE, 600, False, None, [], Basis.OUTDATED),
    # a stopping event for a live instance after its deadline: stopped and started again
    (K.INSTANCE_STOPPING, "stopping", LIVE, 100, False, None, [], Basis.OUTDATED),
    (K.INSTANCE_SHUTTING_DOWN, "shutting-down", LIVE, 3600, False, None, [], Basis.OUTDATED),
    # ... before its deadline, EC2 may not show the change yet: a gentle drain
    (K.INSTANCE_STOPPING, "stopping", LIVE, 2, True, None, ["instance-stopping"], Basis.NOT_CONFIRMED),
    # stopped reported while EC2 still says stopping: drain as the stop that it is
    (K.INSTANCE_STOPPED, "stopped", GOING, 2, True, 90, ["instance-stopped"], Basis.EVENT),
    # still live past the predicted end: nothing is certain any more, a gentle drain
    (K.SPOT_INTERRUPTION, "terminate", LIVE, 117, True, 120, ["spot-interruption"], Basis.EVENT),
    (K.SPOT_INTERRUPTION, "terminate", LIVE, 120, True, None, ["spot-interruption"], Basis.PAST_DEADLINE),
    (K.SPOT_INTERRUPTION, "terminate", LIVE, 600, True, None, ["spot-interruption"], Basis.PAST_DEADLINE),
    (K.SPOT_INTERRUPTION, "terminate", GOING, 600, True, None, ["spot-interruption"], Basis.PAST_DEADLINE),
    (K.INSTANCE_STOPPING, "stopping", GOING, 100, True, None, ["instance-stopping"], Basis.PAST_DEADLINE),
]


@pytest.mark.parametrize(("kind", "detail", "presence_", "after", "drain", "deadline_s", "taints", "basis"), TABLE)
def test_policy_table(kind, detail, presence_, after, drain, deadline_s, taints, basis) -> None:  # type: ignore[no-untyped-def]
    action = decide(event(kind, detail), DEFAULTS, presence_, at(after))
    assert action.basis is basis
    assert action.drain is drain
    assert action.cordon is bool(taints)
    keys = [OUT_OF_SERVICE_KEY if t == "oos" else f"serverless-nth/{t}" for t in taints]
    assert [t.key for t in action.taints] == keys
    assert action.deadline == (None if deadline_s is None else at(deadline_s))
    assert action.termination_certain is (deadline_s is not None)
    if action.deadline is not None:
        assert action.deadline > at(after), "only a deadline still ahead may cap grace periods"
        assert presence_ is not GONE


@pytest.mark.parametrize("row", TABLE)
def test_no_out_of_service_and_no_certain_end_for_a_live_instance_after_its_deadline(row) -> None:  # type: ignore[no-untyped-def]
    kind, detail, presence_, after = row[:4]
    action = decide(event(kind, detail), DEFAULTS, presence_, at(after))
    if presence_ is LIVE:
        assert OUT_OF_SERVICE_KEY not in [t.key for t in action.taints]
    if action.deadline is not None:
        assert action.deadline > at(after)


@pytest.mark.parametrize(("after", "wait_until_s"), [(2, 300), (299, 300), (400, None)])
def test_rebalance_drain_is_never_certain_and_waits_only_while_its_deadline_is_ahead(after, wait_until_s) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(cluster_name="c", drain_on_rebalance=True, rebalance_drain_seconds=300)
    action = decide(event(K.REBALANCE_RECOMMENDATION), settings, LIVE, at(after))
    assert action.drain
    assert not action.termination_certain
    assert action.deadline is None
    assert action.wait_until == (None if wait_until_s is None else at(wait_until_s))


def test_taint_effect_and_out_of_service_are_configurable() -> None:
    settings = Settings(cluster_name="c", taint_effect=TaintEffect.NO_EXECUTE, out_of_service_taint=False)
    action = decide(event(K.INSTANCE_TERMINATED, "terminated"), settings, GONE, at(1))
    assert [(t.key, t.value, t.effect) for t in action.taints] == [
        ("serverless-nth/instance-terminated", "terminated", TaintEffect.NO_EXECUTE)
    ]


def test_state_change_deadline_follows_setting() -> None:
    settings = Settings(cluster_name="c", state_change_drain_seconds=30)
    action = decide(event(K.INSTANCE_STOPPING), settings, GOING, at(1))
    assert action.deadline == action.wait_until == at(30)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("pending", LIVE),
        ("running", LIVE),
        ("stopping", GOING),
        ("shutting-down", GOING),
        ("stopped", GONE),
        ("terminated", GONE),
        ("", LIVE),
        ("rebooting", LIVE),
    ],
)
def test_presence_of_each_ec2_state(state: str, expected: Presence) -> None:
    assert presence(state) is expected
