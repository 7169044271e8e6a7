"""The policy's actions compared whole (every field, not only the ones a row of the table names), at
the exact edges of its time rules, and the taints it chooses."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from serverless_nth.config import Settings, TaintEffect
from serverless_nth.events import EventKind, InterruptionEvent
from serverless_nth.instance import Presence
from serverless_nth.policy import OUT_OF_SERVICE_KEY, Action, Basis, Taint, decide, event_taint, for_node

T0 = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)
SETTINGS = Settings(cluster_name="c", taint_effect=TaintEffect.PREFER_NO_SCHEDULE)


def event(kind: EventKind, detail: str = "", ends_at: datetime.datetime | None = None) -> InterruptionEvent:
    return InterruptionEvent(kind, "id-1", "i-0123456789abcdef0", "us-east-1", "123456789012", T0, detail, ends_at)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def taint(kind: str, value: str = "true") -> Taint:
    return Taint(f"serverless-nth/{kind}", value, TaintEffect.PREFER_NO_SCHEDULE)


def test_a_stopped_instance_gets_its_taint_and_out_of_service_and_nothing_else() -> None:
    action = decide(event(EventKind.INSTANCE_STOPPED, "stopped"), SETTINGS, Presence.GONE, at(1))
    assert action == Action(
        cordon=True,
        taints=(
            taint("instance-stopped", "stopped"),
            Taint(OUT_OF_SERVICE_KEY, "nodeshutdown", TaintEffect.NO_EXECUTE),
        ),
        drain=False,
        deadline=None,
        wait_until=None,
        basis=Basis.EVENT,
        exclude_from_lb=True,
    )


def test_an_instance_that_came_back_is_restored_and_nothing_more() -> None:
    action = decide(event(EventKind.INSTANCE_RUNNING, "running"), SETTINGS, Presence.LIVE, at(1))
    assert action == Action(False, (), False, None, None, basis=Basis.CAME_BACK, restore=True)
    assert not action.is_noop


def test_a_rebalance_recommendation_without_a_drain_waits_for_nothing() -> None:
    action = decide(event(EventKind.REBALANCE_RECOMMENDATION), SETTINGS, Presence.LIVE, at(1))
    assert action == Action(True, (taint("rebalance-recommendation"),), False, None, None, exclude_from_lb=False)


def test_a_rebalance_drain_waits_until_its_bound_but_never_caps_grace() -> None:
    settings = dataclasses.replace(SETTINGS, drain_on_rebalance=True, rebalance_drain_seconds=200)
    action = decide(event(EventKind.REBALANCE_RECOMMENDATION), settings, Presence.LIVE, at(1))
    assert action == Action(True, (taint("rebalance-recommendation"),), True, None, at(200), exclude_from_lb=True)
    # at its bound exactly there is nothing left to wait for
    assert decide(event(EventKind.REBALANCE_RECOMMENDATION), settings, Presence.LIVE, at(200)).wait_until is None
    assert decide(event(EventKind.REBALANCE_RECOMMENDATION), settings, Presence.LIVE, at(199)).wait_until == at(200)


def test_a_rebalance_drain_chosen_by_a_node_label_keeps_the_load_balancer_setting() -> None:
    action = decide(event(EventKind.REBALANCE_RECOMMENDATION), SETTINGS, Presence.LIVE, at(1))
    chosen = for_node(
        action, event(EventKind.REBALANCE_RECOMMENDATION), {"serverless-nth/rebalance": "drain"}, SETTINGS, at(1)
    )
    assert chosen == Action(
        True, (taint("rebalance-recommendation"),), True, None, at(300), basis=Basis.NODE_LABEL, exclude_from_lb=True
    )
    cordon_only = for_node(
        action, event(EventKind.REBALANCE_RECOMMENDATION), {"serverless-nth/rebalance": "cordon"}, SETTINGS, at(1)
    )
    assert (cordon_only.drain, cordon_only.wait_until, cordon_only.basis) == (False, None, Basis.NODE_LABEL)


def test_a_capacity_reservation_warning_without_a_termination_time_ends_two_minutes_after_it() -> None:
    action = decide(event(EventKind.CAPACITY_RESERVATION_INTERRUPTION, "terminate"), SETTINGS, Presence.LIVE, at(10))
    assert action == Action(
        True, (taint("capacity-reservation-interruption", "terminate"),), True, at(120), at(120), exclude_from_lb=True
    )
    named = event(EventKind.CAPACITY_RESERVATION_INTERRUPTION, "terminate", ends_at=at(90))
    assert decide(named, SETTINGS, Presence.LIVE, at(10)).deadline == at(90)


@pytest.mark.parametrize("kind", [EventKind.INSTANCE_STOPPING, EventKind.INSTANCE_SHUTTING_DOWN])
def test_a_state_change_for_a_live_instance_is_outdated_from_its_deadline_on(kind: EventKind) -> None:
    # 90 s after the event, exactly: the stop it reported would be over; the instance runs
    exactly = decide(event(kind, "stopping"), SETTINGS, Presence.LIVE, at(90))
    assert exactly == Action(False, (), False, None, None, basis=Basis.OUTDATED)
    assert exactly.is_noop
    before = decide(event(kind, "stopping"), SETTINGS, Presence.LIVE, at(89))
    assert (before.drain, before.deadline, before.basis) == (True, None, Basis.NOT_CONFIRMED)


def test_the_taint_of_an_event_without_a_detail_says_true() -> None:
    assert event_taint(event(EventKind.REBALANCE_RECOMMENDATION), SETTINGS) == taint("rebalance-recommendation")
    assert event_taint(event(EventKind.SPOT_INTERRUPTION, "stop"), SETTINGS) == taint("spot-interruption", "stop")
