import dataclasses
import datetime

import pytest

from serverless_nth.events import (
    EventKind,
    MalformedEvent,
    capacity_block,
    capacity_reservation,
    instance_launch,
    instance_status,
    interruption_warning,
    lifecycle_action,
    rebalance_recommendation,
    scheduled_change,
    spot_interruption,
    state_change,
)
from serverless_nth.events.parsing import check_event_time
from tests.eventfiles import event_files, load_event

NORMALISERS = {
    "spot-interruption": spot_interruption.normalise,
    "capacity-reservation-interruption": capacity_reservation.normalise,
    "rebalance-recommendation": rebalance_recommendation.normalise,
    "asg-lifecycle-action": lifecycle_action.normalise,
    "asg-launch-from-warm-pool": instance_launch.normalise,
    # a Health event names several instances; the sample names one
    "scheduled-change": lambda e: scheduled_change.normalise(e).events[0],
    # a Capacity Block warning names its reservation; the workflow lists the instances
    "capacity-block-expiry": lambda e: capacity_block.normalise(e).instance("i-0123456789abcdef0"),
    # what the instance-status backstop hands the long-drain starter for a scheduled event
    "instance-scheduled-event": lambda e: instance_status.normalise(e).events[0],
}


def normaliser_for(name: str):  # type: ignore[no-untyped-def]
    return state_change.normalise if name.startswith("state-change") else NORMALISERS[name]


@pytest.mark.parametrize("path", event_files(), ids=lambda p: p.stem)
def test_every_sample_event_parses(path) -> None:  # type: ignore[no-untyped-def]
    event = normaliser_for(path.stem)(load_event(path.stem))
    assert event.instance_id.startswith("i-")
    assert event.time.tzinfo is not None
    assert event.event_id


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("spot-interruption", EventKind.SPOT_INTERRUPTION),
        ("capacity-reservation-interruption", EventKind.CAPACITY_RESERVATION_INTERRUPTION),
        ("rebalance-recommendation", EventKind.REBALANCE_RECOMMENDATION),
        ("state-change-pending", EventKind.INSTANCE_PENDING),
        ("state-change-running", EventKind.INSTANCE_RUNNING),
        ("state-change-stopping", EventKind.INSTANCE_STOPPING),
        ("state-change-stopped", EventKind.INSTANCE_STOPPED),
        ("state-change-shutting-down", EventKind.INSTANCE_SHUTTING_DOWN),
        ("state-change-terminated", EventKind.INSTANCE_TERMINATED),
        ("asg-launch-from-warm-pool", EventKind.WARM_POOL_RETURN),
    ],
)
def test_each_event_maps_to_its_kind(name: str, kind: EventKind) -> None:
    assert normaliser_for(name)(load_event(name)).kind is kind


def test_spot_event_fields() -> None:
    event = spot_interruption.normalise(load_event("spot-interruption", instance_id="i-0123456789abcdef0"))
    assert event.instance_id == "i-0123456789abcdef0"
    assert event.detail == "terminate"
    assert event.time == datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)


def _broken(mutate):  # type: ignore[no-untyped-def]
    event = load_event("spot-interruption")
    mutate(event)
    return event


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("not an object", "not an EventBridge object"),
        (_broken(lambda e: e["detail"].pop("instance-id")), "instance-id"),
        (_broken(lambda e: e["detail"].update({"instance-id": "i-nothex"})), "instance-id"),
        (_broken(lambda e: e["detail"].update({"instance-action": "explode"})), "instance-action"),
        (_broken(lambda e: e.update({"time": "yyyy-mm-ddThh:mm:ssZ"})), "time"),
        (_broken(lambda e: e.pop("version")), "version"),
        (_broken(lambda e: e.update({"source": "my.app"})), "expected aws.ec2"),
        (_broken(lambda e: e.update({"detail-type": "EC2 Instance Rebalance Recommendation"})), "expected aws.ec2"),
    ],
)
def test_malformed_or_forged_spot_events_are_rejected(event, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MalformedEvent, match=message):
        spot_interruption.normalise(event)


def test_unknown_state_is_rejected() -> None:
    event = load_event("state-change-stopping")
    event["detail"]["state"] = "exploding"
    with pytest.raises(MalformedEvent, match="state"):
        state_change.normalise(event)


ALL_NORMALISERS = [
    ("spot-interruption", spot_interruption.normalise),
    ("capacity-reservation-interruption", capacity_reservation.normalise),
    ("rebalance-recommendation", rebalance_recommendation.normalise),
    ("state-change-stopping", state_change.normalise),
]
# EventBridge's envelope is exact: what lax parsing would accept, and EventBridge never sends
NOT_FROM_EVENTBRIDGE = [
    ("time", 0),  # a JSON number read as a Unix time: 1970
    ("time", 1764064800),
    ("time", "2026-11-25 10:00:00"),
    ("time", "2026-11-25T10:00:00"),  # no zone
    ("time", "0001-01-01T00:00:00Z"),
    ("id", ""),
    ("id", 12345),
    ("id", " spaces "),
    ("account", "12345678901"),
    ("account", "abcdefghijkl"),
    ("account", 123456789012),
    ("region", "mars-north-1"),
    ("region", "US-EAST-1"),
    ("region", ""),
]


@pytest.mark.parametrize(("name", "normalise"), ALL_NORMALISERS)
@pytest.mark.parametrize(("key", "value"), NOT_FROM_EVENTBRIDGE)
def test_envelopes_eventbridge_never_sends_are_rejected(name, normalise, key, value) -> None:  # type: ignore[no-untyped-def]
    event = load_event(name)
    event[key] = value
    if (key, value) == ("time", "0001-01-01T00:00:00Z"):
        parsed = normalise(event)  # a well-formed time: the age bound rejects it (below)
        with pytest.raises(MalformedEvent, match="older than"):
            check_event_time(parsed, datetime.datetime.now(datetime.UTC))
        return
    with pytest.raises(MalformedEvent, match=key):
        normalise(event)


@pytest.mark.parametrize(("name", "normalise"), ALL_NORMALISERS)
def test_malformed_details_are_rejected_for_every_event_type(name, normalise) -> None:  # type: ignore[no-untyped-def]
    for mutate in (
        lambda e: e["detail"].pop("instance-id"),
        lambda e: e["detail"].update({"instance-id": "i-nothex"}),
        lambda e: e.update({"detail": "a string"}),
        lambda e: e.update({"source": "my.app"}),
    ):
        event = load_event(name)
        mutate(event)
        with pytest.raises(MalformedEvent):
            normalise(event)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (datetime.timedelta(days=-14, hours=-23), True),  # a replay at the end of the queue's 14 days
        (datetime.timedelta(days=-15, seconds=-1), False),
        (datetime.timedelta(minutes=4), True),  # clock skew
        (datetime.timedelta(minutes=6), False),
        (datetime.timedelta(days=365 * 7000), False),  # year 9999: no deadline overflows later
    ],
)
def test_event_time_bounds(offset: datetime.timedelta, accepted: bool) -> None:
    now = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)
    event = spot_interruption.normalise(load_event("spot-interruption"))
    moved = dataclasses.replace(event, time=min(now + offset, datetime.datetime.max.replace(tzinfo=datetime.UTC)))
    if accepted:
        check_event_time(moved, now)
    else:
        with pytest.raises(MalformedEvent):
            check_event_time(moved, now)


def test_capacity_reservation_warning_names_its_end() -> None:
    event = capacity_reservation.normalise(load_event("capacity-reservation-interruption"))
    assert event.ends_at == datetime.datetime(2026, 11, 25, 10, 2, tzinfo=datetime.UTC)
    assert (event.kind, event.detail) == (EventKind.CAPACITY_RESERVATION_INTERRUPTION, "terminate")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("instance-termination-time", "2026-11-25T09:59:00Z"),  # before the event
        ("instance-termination-time", 1764064920),
        ("instance-termination-time", "soon"),
        ("instance-termination-time", "2026-11-31T10:00:00Z"),  # RFC 3339's shape, no date (issue 25.5)
        ("instance-action", "hibernate"),
    ],
)
def test_malformed_capacity_reservation_warnings_are_rejected(field: str, value: object) -> None:
    event = load_event("capacity-reservation-interruption")
    event["detail"][field] = value
    with pytest.raises(MalformedEvent):
        capacity_reservation.normalise(event)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("spot-interruption", EventKind.SPOT_INTERRUPTION),
        ("capacity-reservation-interruption", EventKind.CAPACITY_RESERVATION_INTERRUPTION),
    ],
)
def test_the_interruption_function_takes_both_warnings(name: str, kind: EventKind) -> None:
    assert interruption_warning.normalise(load_event(name)).kind is kind


@pytest.mark.parametrize("event", [load_event("rebalance-recommendation"), {"detail-type": None}, [], "x"])
def test_the_interruption_function_rejects_other_events(event: object) -> None:
    with pytest.raises(MalformedEvent, match=r"expected aws\.ec2"):
        interruption_warning.normalise(event)
