"""The Capacity Block expiration warning, pure: its parser (both detail-types AWS's pages use, the
documented fields only), its row of the policy table, the starter's route, and the listing of a
reservation's instances (DescribeInstances filtered and paginated, against botocore's model)."""

from __future__ import annotations

import datetime
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from serverless_nth.aws.ec2 import Ec2Instances
from serverless_nth.config import ConfigError, KarpenterNodes, Settings, StarterSettings
from serverless_nth.errors import TemporaryError
from serverless_nth.events import EventKind, MalformedEvent, capacity_block, scheduled_change
from serverless_nth.instance import Presence
from serverless_nth.long_drain_start import ROUTES
from serverless_nth.policy import (
    Basis,
    capacity_block_terminates_at,
    decide,
    drain_starts_at,
    event_taint,
    for_node,
    long_drain_deadline,
    long_drain_turns_at,
)
from tests.eventfiles import load_event

T0 = datetime.datetime(2026, 12, 3, 10, 50, tzinfo=datetime.UTC)  # the sample's time
END = T0 + datetime.timedelta(minutes=40)  # the sample's end-date
CR = "cr-0123456789abcdef0"
ARN = f"arn:aws:ec2:us-east-1:123456789012:capacity-reservation/{CR}"
SETTINGS = Settings(cluster_name="c")


def warning(**changes: Any) -> dict[str, Any]:
    event = load_event("capacity-block-expiry")
    detail = changes.pop("detail", {})
    event.update(changes)
    event["detail"].update(detail)
    return event


def minutes(n: float) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=n)


@pytest.mark.parametrize("detail_type", capacity_block.DETAIL_TYPES)
def test_both_spellings_of_the_warning_parse_to_the_same_expiry(detail_type: str) -> None:
    expiry = capacity_block.parse(warning(**{"detail-type": detail_type}))
    assert (expiry.reservation_id, expiry.time, expiry.end_date) == (CR, T0, END)
    event = expiry.instance("i-0123456789abcdef0")
    assert (event.kind, event.instance_id, event.ends_at, event.event_id) == (
        EventKind.CAPACITY_BLOCK_EXPIRY,
        "i-0123456789abcdef0",
        END,
        expiry.event_id,
    )
    taint = event_taint(event, SETTINGS)
    assert (taint.key, taint.value) == ("serverless-nth/capacity-block-expiry", CR)


@pytest.mark.parametrize(
    "changes",
    [
        {"detail-type": "Capacity Block Delivered"},
        {"detail-type": "Capacity Block Reservation Delivered"},
        {"source": "aws.health"},
        {"detail": {"capacity-reservation-id": "cr-XYZ"}},
        {"detail": {"capacity-reservation-id": None}},
        {"detail": {"capacity-reservation-id": "i-0123456789abcdef0"}},
        {"detail": {"end-date": "[ODCR End Date]"}},  # the user guide's placeholder
        {"detail": {"end-date": "2026-12-03T11:30:00"}},  # no time zone
        {"detail": {"end-date": "2026-12-03T10:40:00Z"}},  # before the warning
        {"detail": {"end-date": "2026-12-05T11:30:00Z"}},  # days ahead: not this warning
        {"resources": [ARN.replace(CR, "cr-0123456789abcdef1")]},  # another reservation's ARN
        {"resources": [ARN.replace("123456789012", "210987654321")]},  # another account's
        {"detail": {}, "time": 0},
    ],
)
def test_malformed_warnings_are_rejected(changes: dict[str, Any]) -> None:
    event = warning(**changes)
    if changes.get("detail") == {}:
        event["detail"] = {}
    with pytest.raises(MalformedEvent):
        capacity_block.parse(event)


def test_a_missing_field_is_rejected_and_an_undocumented_one_is_not_read() -> None:
    for field in ("capacity-reservation-id", "end-date"):
        event = warning()
        del event["detail"][field]
        with pytest.raises(MalformedEvent, match=field):
            capacity_block.parse(event)
    # fields AWS may add later change nothing (an instance-id, say, is not trusted: EC2 lists them)
    extra = capacity_block.parse(warning(detail={"instance-id": "i-0123456789abcdef0"}))
    assert extra == capacity_block.parse(warning())


def event_at(sent: datetime.datetime = T0, end: datetime.datetime = END) -> Any:
    expiry = capacity_block.parse(warning(time=sent.strftime("%Y-%m-%dT%H:%M:%SZ")))
    return capacity_block.CapacityBlockExpiry(
        expiry.event_id, expiry.region, expiry.account, sent, expiry.reservation_id, end
    ).instance("i-0123456789abcdef0")


def test_the_instances_begin_to_terminate_ten_minutes_after_the_warning_or_30_minutes_before_the_end() -> None:
    assert capacity_block_terminates_at(event_at()) == minutes(10) == END - datetime.timedelta(minutes=30)
    # a warning sent earlier than documented keeps the 30 minutes before the end...
    assert capacity_block_terminates_at(event_at(end=minutes(120))) == minutes(10)
    # ...and one sent late never moves the termination past end - 30 min
    assert capacity_block_terminates_at(event_at(sent=minutes(-5))) == minutes(5)


# now (minutes after the warning), EC2's presence -> drain?, deadline, wait_until, basis
POLICY_ROWS = [
    (0, Presence.LIVE, True, None, END, Basis.EVENT),  # own grace periods, PDBs respected
    (9.9, Presence.LIVE, True, None, END, Basis.EVENT),
    (10, Presence.LIVE, True, END, END, Basis.EVENT),  # the instances begin to terminate: Spot rules
    (39, Presence.LIVE, True, END, END, Basis.EVENT),
    (2, Presence.GOING, True, END, END, Basis.EVENT),  # EC2 already terminates it: certain
    (40, Presence.LIVE, True, None, None, Basis.PAST_DEADLINE),  # still live past the end: gentle
    (55, Presence.LIVE, True, None, None, Basis.PAST_DEADLINE),
    (5, Presence.GONE, False, None, None, Basis.INSTANCE_GONE),  # dead node: out of service, no drain
]


@pytest.mark.parametrize(("now", "presence", "drain", "deadline", "wait_until", "basis"), POLICY_ROWS)
def test_the_policy_row(
    now: float,
    presence: Presence,
    drain: bool,
    deadline: datetime.datetime | None,
    wait_until: datetime.datetime | None,
    basis: Basis,
) -> None:
    action = decide(event_at(), SETTINGS, presence, minutes(now))
    assert action.cordon
    assert (action.drain, action.deadline, action.wait_until, action.basis) == (drain, deadline, wait_until, basis)
    assert action.taints[0].key == "serverless-nth/capacity-block-expiry"


@pytest.mark.parametrize(("now", "deadline"), [(0, None), (9, None), (10, END), (30, END), (40, None), (60, None)])
def test_a_drain_round_gets_a_deadline_only_while_the_instances_terminate(
    now: float, deadline: datetime.datetime | None
) -> None:
    assert long_drain_deadline(event_at(), minutes(now)) == deadline
    assert long_drain_turns_at(event_at()) == minutes(10)


def test_the_drain_starts_at_once_and_other_long_drains_never_get_a_round_deadline() -> None:
    assert drain_starts_at(event_at(), SETTINGS) == T0
    other = scheduled_change.normalise(load_event("scheduled-change")).events[0]
    assert long_drain_deadline(other, other.time) is None
    assert long_drain_turns_at(other) is None


def test_karpenter_nodes_are_left_to_karpenter_in_rebalance_only_mode() -> None:
    settings = Settings(cluster_name="c", karpenter_nodes=KarpenterNodes.REBALANCE_ONLY)
    event = event_at()
    action = decide(event, settings, Presence.LIVE, minutes(1))
    left = for_node(action, event, {"karpenter.sh/nodepool": "gpu"}, settings, minutes(1))
    assert left.basis is Basis.LEFT_TO_KARPENTER
    assert for_node(action, event, {}, settings, minutes(1)) == action


def test_the_starter_routes_both_spellings_to_one_durable_function() -> None:
    keys = {ROUTES[("aws.ec2", t)][1] for t in capacity_block.DETAIL_TYPES}
    assert keys == {"CAPACITY_BLOCK_FUNCTION"}
    env = {
        "CLUSTER_NAME": "c",
        "LIFECYCLE_ACTION_FUNCTION": "stack-Lifecycle-1",
        "SCHEDULED_CHANGE_FUNCTION": "stack-Scheduled-1",
        "CAPACITY_BLOCK_FUNCTION": "stack-CapacityBlock-1",
    }
    settings = StarterSettings.from_env((key for _, key in ROUTES.values()), env)
    assert settings.targets["CAPACITY_BLOCK_FUNCTION"] == "stack-CapacityBlock-1"
    with pytest.raises(ConfigError, match="CAPACITY_BLOCK_FUNCTION"):
        StarterSettings.from_env((key for _, key in ROUTES.values()), {**env, "CAPACITY_BLOCK_FUNCTION": ""})


def page(ids: list[str]) -> dict[str, Any]:
    return {"Reservations": [{"Instances": [{"InstanceId": i} for i in ids]}]}


def test_a_reservation_s_instances_are_listed_from_every_page() -> None:
    client = ec2_client()
    asked = {"Filters": [{"Name": "capacity-reservation-id", "Values": [CR]}], "MaxResults": 1000}
    with Stubber(client) as stub:  # checks every request and reply against EC2's model
        stub.add_response("describe_instances", {**page(["i-0000000000000000a"]), "NextToken": "t1"}, asked)
        stub.add_response(
            "describe_instances", page(["i-0000000000000000b", "i-0000000000000000a"]), {**asked, "NextToken": "t1"}
        )
        instances = Ec2Instances(client)
        assert instances.in_reservation(CR) == ["i-0000000000000000a", "i-0000000000000000b"]
    assert instances.requests_sent == 2


@pytest.mark.parametrize(
    ("reservation_ends", "deadline"),
    [
        (None, END),  # EC2 cannot say: the warning's end holds
        (END, END),  # not extended
        (END - datetime.timedelta(minutes=5), END),  # ends earlier: still certain (the warning's end caps)
        (END + datetime.timedelta(days=1), None),  # extended after the warning: not certain to go
    ],
)
def test_an_extension_after_the_warning_takes_the_deadline_away(
    reservation_ends: datetime.datetime | None, deadline: datetime.datetime | None
) -> None:
    assert long_drain_deadline(event_at(), minutes(15), reservation_ends) == deadline


def ec2_client() -> Any:
    return botocore.session.get_session().create_client(
        "ec2", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )


def test_the_reservation_s_end_is_read_from_ec2() -> None:
    client = ec2_client()
    asked = {"CapacityReservationIds": [CR]}
    with Stubber(client) as stub:
        stub.add_response(
            "describe_capacity_reservations",
            {"CapacityReservations": [{"CapacityReservationId": CR, "EndDate": END, "State": "active"}]},
            asked,
        )
        stub.add_client_error(
            "describe_capacity_reservations", "InvalidCapacityReservationId.NotFound", expected_params=asked
        )
        stub.add_client_error("describe_capacity_reservations", "RequestLimitExceeded", expected_params=asked)
        instances = Ec2Instances(client)
        assert instances.reservation_end(CR) == END
        assert instances.reservation_end(CR) is None
        with pytest.raises(TemporaryError):
            instances.reservation_end(CR)
