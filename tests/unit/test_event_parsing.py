"""What each parser makes of its event, field for field, and what a rejected event's message says
(it is the reason logged with outcome ``malformed``): what was expected, what came, which field."""

from __future__ import annotations

import datetime

import pytest

from serverless_nth.events import (
    EventKind,
    InterruptionEvent,
    MalformedEvent,
    capacity_reservation,
    interruption_warning,
    rebalance_recommendation,
    spot_interruption,
    state_change,
)
from serverless_nth.events.parsing import check_event_time
from tests.eventfiles import load_event

INSTANCE = "i-0b662ef9931388ba0"
TIME = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)
SPOT = "EC2 Spot Instance Interruption Warning"
CAPACITY = "EC2 Capacity Reservation Instance Interruption Warning"


def elsewhere(name: str) -> dict:  # type: ignore[type-arg]
    """The sample event, from another account and region than the samples' defaults."""
    event = load_event(name)
    event.update(account="210987654321", region="ap-southeast-2", id="a-different-id")
    return event


def test_a_spot_warning_reads_as_its_instance_time_account_region_and_action() -> None:
    event = elsewhere("spot-interruption")
    event["detail"]["instance-action"] = "stop"
    assert spot_interruption.normalise(event) == InterruptionEvent(
        kind=EventKind.SPOT_INTERRUPTION,
        event_id="a-different-id",
        instance_id=INSTANCE,
        region="ap-southeast-2",
        account="210987654321",
        time=TIME,
        detail="stop",
        ends_at=None,
    )


def test_a_rebalance_recommendation_reads_as_its_instance_time_account_and_region() -> None:
    assert rebalance_recommendation.normalise(elsewhere("rebalance-recommendation")) == InterruptionEvent(
        EventKind.REBALANCE_RECOMMENDATION, "a-different-id", INSTANCE, "ap-southeast-2", "210987654321", TIME
    )


@pytest.mark.parametrize(
    ("state", "kind"),
    [
        ("pending", EventKind.INSTANCE_PENDING),
        ("running", EventKind.INSTANCE_RUNNING),
        ("stopping", EventKind.INSTANCE_STOPPING),
        ("stopped", EventKind.INSTANCE_STOPPED),
        ("shutting-down", EventKind.INSTANCE_SHUTTING_DOWN),
        ("terminated", EventKind.INSTANCE_TERMINATED),
    ],
)
def test_a_state_change_reads_as_its_kind_and_state(state: str, kind: EventKind) -> None:
    event = elsewhere("state-change-stopping")
    event["detail"]["state"] = state
    assert state_change.normalise(event) == InterruptionEvent(
        kind, "a-different-id", INSTANCE, "ap-southeast-2", "210987654321", TIME, detail=state
    )


def test_a_capacity_reservation_warning_reads_with_its_termination_time() -> None:
    event = elsewhere("capacity-reservation-interruption")
    event["detail"]["instance-termination-time"] = "2026-11-25T11:01:30+01:00"  # 10:01:30Z
    assert capacity_reservation.normalise(event) == InterruptionEvent(
        EventKind.CAPACITY_RESERVATION_INTERRUPTION,
        "a-different-id",
        INSTANCE,
        "ap-southeast-2",
        "210987654321",
        TIME,
        detail="terminate",
        ends_at=datetime.datetime(2026, 11, 25, 10, 1, 30, tzinfo=datetime.UTC),
    )


def test_a_capacity_reservation_ending_at_the_moment_of_its_warning_is_accepted_one_ending_before_is_not() -> None:
    event = load_event("capacity-reservation-interruption")
    event["detail"]["instance-termination-time"] = "2026-11-25T10:00:00Z"
    assert capacity_reservation.normalise(event).ends_at == TIME
    event["detail"]["instance-termination-time"] = "2026-11-25T09:59:59Z"
    with pytest.raises(MalformedEvent) as caught:
        capacity_reservation.normalise(event)
    assert str(caught.value) == f"invalid {CAPACITY}: instance-termination-time is before the event's time"


def test_an_event_that_is_not_an_object_says_what_it_is() -> None:
    with pytest.raises(MalformedEvent) as caught:
        spot_interruption.normalise(["a", "list"])
    assert str(caught.value) == "event is a list, not an EventBridge object"


def test_an_event_of_another_source_or_type_says_what_was_expected_and_what_came() -> None:
    event = load_event("spot-interruption")
    event["source"] = "my.app"
    with pytest.raises(MalformedEvent) as caught:
        spot_interruption.normalise(event)
    assert str(caught.value) == f"expected aws.ec2 / {SPOT!r}, got 'my.app' / {SPOT!r}"
    with pytest.raises(MalformedEvent) as caught:
        spot_interruption.normalise(load_event("rebalance-recommendation"))
    assert str(caught.value) == f"expected aws.ec2 / {SPOT!r}, got 'aws.ec2' / 'EC2 Instance Rebalance Recommendation'"


def test_an_envelope_field_eventbridge_never_sends_is_named_and_quoted_briefly() -> None:
    event = load_event("spot-interruption")
    event["id"] = "x" * 200  # longer than an id can be; quoted to 80 characters in the log
    with pytest.raises(MalformedEvent) as caught:
        spot_interruption.normalise(event)
    assert str(caught.value) == f"invalid {SPOT}: id {'x' * 80!r} is not what EventBridge sends"
    event = load_event("spot-interruption")
    event["account"] = 123456789012
    with pytest.raises(MalformedEvent) as caught:
        spot_interruption.normalise(event)
    assert str(caught.value) == f"invalid {SPOT}: account '123456789012' is not what EventBridge sends"


def test_every_field_the_detail_lacks_is_named_with_its_path() -> None:
    event = load_event("spot-interruption")
    event["detail"] = {}
    with pytest.raises(MalformedEvent) as caught:
        spot_interruption.normalise(event)
    assert str(caught.value) == (
        f"invalid {SPOT}: detail.instance-id: Field required; detail.instance-action: Field required"
    )


def test_the_interruption_function_names_both_warnings_it_takes() -> None:
    with pytest.raises(MalformedEvent) as caught:
        interruption_warning.normalise(load_event("rebalance-recommendation"))
    assert str(caught.value) == (
        f"expected aws.ec2 / {SPOT!r} or {CAPACITY!r}, got 'EC2 Instance Rebalance Recommendation'"
    )


def test_an_event_exactly_at_either_time_bound_is_accepted() -> None:
    event = spot_interruption.normalise(load_event("spot-interruption"))
    check_event_time(event, TIME + datetime.timedelta(days=15))  # the oldest a replay may be
    check_event_time(event, TIME - datetime.timedelta(minutes=5))  # the most clock skew allowed
    with pytest.raises(MalformedEvent) as caught:
        check_event_time(event, TIME + datetime.timedelta(days=15, microseconds=1))
    assert str(caught.value) == "event time 2026-11-25T10:00:00+00:00 is older than 15 days"
    with pytest.raises(MalformedEvent) as caught:
        check_event_time(event, TIME - datetime.timedelta(minutes=5, microseconds=1))
    assert str(caught.value) == "event time 2026-11-25T10:00:00+00:00 is in the future"
