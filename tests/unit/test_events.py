import datetime

import pytest

from serverless_nth.events import EventKind, MalformedEvent, rebalance_recommendation, spot_interruption, state_change
from tests.eventfiles import event_files, load_event

NORMALISERS = {
    "spot-interruption": spot_interruption.normalise,
    "rebalance-recommendation": rebalance_recommendation.normalise,
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
        ("rebalance-recommendation", EventKind.REBALANCE_RECOMMENDATION),
        ("state-change-pending", EventKind.INSTANCE_PENDING),
        ("state-change-running", EventKind.INSTANCE_RUNNING),
        ("state-change-stopping", EventKind.INSTANCE_STOPPING),
        ("state-change-stopped", EventKind.INSTANCE_STOPPED),
        ("state-change-shutting-down", EventKind.INSTANCE_SHUTTING_DOWN),
        ("state-change-terminated", EventKind.INSTANCE_TERMINATED),
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
