"""An instance back in service from a warm pool (issue 20.7): the launch event's parser and its row
of the policy table."""

import datetime

import pytest

from serverless_nth.config import Settings
from serverless_nth.events import EventKind, InterruptionEvent, MalformedEvent, instance_launch
from serverless_nth.instance import Presence
from serverless_nth.policy import Basis, decide, for_node, ignores
from tests.eventfiles import load_event

SAMPLE = "asg-launch-from-warm-pool"
T0 = datetime.datetime(2026, 11, 25, 10, 5, tzinfo=datetime.UTC)


def launch(**detail: str) -> dict:  # type: ignore[type-arg]
    event = load_event(SAMPLE)
    event["detail"].update(detail)
    return event


def test_the_sample_reads_as_a_return_from_the_warm_pool() -> None:
    event = instance_launch.normalise(load_event(SAMPLE))
    assert (event.kind, event.instance_id, event.time) == (EventKind.WARM_POOL_RETURN, "i-0b662ef9931388ba0", T0)
    assert (event.account, event.region, event.detail) == ("123456789012", "us-east-1", "WarmPool-to-AutoScalingGroup")
    assert not ignores(event)


@pytest.mark.parametrize(
    ("origin", "destination"),
    [("EC2", "AutoScalingGroup"), ("EC2", "WarmPool"), ("AutoScalingGroup", "WarmPool"), ("WarmPool", "WarmPool")],
)
def test_every_other_launch_is_valid_and_ignored(origin: str, destination: str) -> None:
    event = instance_launch.normalise(launch(Origin=origin, Destination=destination))
    assert event.kind is EventKind.INSTANCE_LAUNCHED
    assert ignores(event)


def test_a_launch_without_origin_is_ignored_not_malformed() -> None:
    raw = load_event(SAMPLE)
    del raw["detail"]["Origin"], raw["detail"]["Destination"]
    event = instance_launch.normalise(raw)
    assert (event.kind, event.detail) == (EventKind.INSTANCE_LAUNCHED, "unknown-to-unknown")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"EC2InstanceId": "i-nope"}, "EC2InstanceId"),
        ({"Origin": "Warm Pool; drop"}, "Origin"),
        ({"AutoScalingGroupName": ""}, "AutoScalingGroupName"),
    ],
)
def test_a_broken_detail_is_malformed(change: dict[str, str], message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        instance_launch.normalise(launch(**change))


def test_another_detail_type_is_malformed() -> None:
    raw = load_event(SAMPLE)
    raw["detail-type"] = "EC2 Instance Launch Unsuccessful"
    with pytest.raises(MalformedEvent, match=r"expected aws\.autoscaling"):
        instance_launch.normalise(raw)


def _return(kind: EventKind = EventKind.WARM_POOL_RETURN) -> InterruptionEvent:
    return InterruptionEvent(kind, "id-1", "i-0123456789abcdef0", "us-east-1", "123456789012", T0, "w")


@pytest.mark.parametrize(
    ("presence", "restore", "basis"),
    [
        (Presence.LIVE, True, Basis.CAME_BACK),
        (Presence.GOING, False, Basis.OUTDATED),
        (Presence.GONE, False, Basis.OUTDATED),
    ],
)
def test_back_from_the_pool_undoes_what_we_added_while_it_runs(presence: Presence, restore: bool, basis: Basis) -> None:
    action = decide(_return(), Settings(cluster_name="c"), presence, T0)
    assert (action.restore, action.basis, action.cordon, action.taints, action.drain) == (
        restore,
        basis,
        False,
        (),
        False,
    )


def test_back_from_the_pool_is_undone_even_on_an_opted_out_node() -> None:
    settings = Settings(cluster_name="c")
    action = decide(_return(), settings, Presence.LIVE, T0)
    assert for_node(action, _return(), {"serverless-nth/ignore": "true"}, settings, T0).restore


def test_another_launch_needs_nothing() -> None:
    action = decide(_return(EventKind.INSTANCE_LAUNCHED), Settings(cluster_name="c"), Presence.LIVE, T0)
    assert action.is_noop
    assert action.basis is Basis.NOT_HANDLED


def _matches(pattern: dict, event: dict) -> bool:  # type: ignore[type-arg]
    """EventBridge's matching for what this rule uses: a list of exact values per field, nested
    objects for detail; `account`'s !Ref is this account, which the samples' is taken to be."""
    for key, wanted in pattern.items():
        if key == "account":
            continue
        if isinstance(wanted, dict):
            if not isinstance(event.get(key), dict) or not _matches(wanted, event[key]):
                return False
        elif event.get(key) not in wanted:
            return False
    return True


@pytest.mark.parametrize(
    ("origin", "destination", "delivered"),
    [
        ("WarmPool", "AutoScalingGroup", True),
        ("EC2", "AutoScalingGroup", False),
        ("EC2", "WarmPool", False),
        ("WarmPool", "EC2", False),
    ],
)
def test_the_rule_delivers_only_launches_from_the_warm_pool(origin: str, destination: str, delivered: bool) -> None:
    from localeks.template import load_template

    function = load_template()["Resources"]["WarmPoolReturnFunction"]["Properties"]
    pattern = function["Events"]["Rule"]["Properties"]["Pattern"]
    assert _matches(pattern, launch(Origin=origin, Destination=destination)) is delivered
    assert not _matches(pattern, load_event("asg-lifecycle-action"))
