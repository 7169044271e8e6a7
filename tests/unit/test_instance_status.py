"""Unit tables for the instance-status backstop (issue 22.2): what it reads in DescribeInstanceStatus,
the event it hands the long-drain starter, the instance-impaired policy row, its settings, and its
EC2 queries (checked against EC2's model by botocore's Stubber)."""

from __future__ import annotations

import datetime
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from serverless_nth.aws.ec2 import Ec2Instances
from serverless_nth.config import ConfigError, KarpenterNodes, Settings
from serverless_nth.events import EventKind, MalformedEvent, instance_status
from serverless_nth.instance import Presence
from serverless_nth.long_drain_start import ROUTES, execution_name
from serverless_nth.policy import OUT_OF_SERVICE_KEY, Basis, decide, for_node
from serverless_nth.report import DESCRIPTIONS, REASONS
from serverless_nth.scheduled_drain import reboots
from tests.eventfiles import load_event

Event = dict[str, Any]
T0 = datetime.datetime(2026, 12, 3, 10, 0, tzinfo=datetime.UTC)
INSTANCE = "i-0b662ef9931388ba0"
EVENT_ID = "instance-event-0d59937288b749b32"
SETTINGS = Settings(cluster_name="c")
CODES = ["instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop"]


def status(events: list[dict[str, Any]] | None = None, **checks: Any) -> dict[str, Any]:
    """One InstanceStatus item as botocore parses it (times are aware datetimes)."""
    item: dict[str, Any] = {"InstanceId": INSTANCE, "InstanceState": {"Code": 16, "Name": "running"}}
    if events is not None:
        item["Events"] = events
    for field in ("InstanceStatus", "SystemStatus"):
        details = checks.get(field, [{"Name": "reachability", "Status": "passed"}])
        item[field] = {"Status": "impaired" if details[0]["Status"] == "failed" else "ok", "Details": details}
    return item


def scheduled(code: str = "system-reboot", description: str = "The instance is scheduled for a reboot") -> Event:
    return {"InstanceEventId": EVENT_ID, "Code": code, "Description": description, "NotBefore": T0}


def test_a_scheduled_event_still_to_come_is_read_with_its_id_and_start() -> None:
    assert instance_status.scheduled_events(status([scheduled()])) == [
        instance_status.ScheduledEvent(INSTANCE, EVENT_ID, "system-reboot", T0)
    ]


@pytest.mark.parametrize(
    "event",
    [
        scheduled(description="[Completed] The instance is running on new hardware"),
        scheduled(description="[Canceled] The instance is scheduled for a reboot"),
        scheduled(code="instance-refresh"),  # no code EC2 documents
        {**scheduled(), "InstanceEventId": "not-an-event-id"},
        {k: v for k, v in scheduled().items() if k != "NotBefore"},
        {**scheduled(), "NotBefore": "2026-12-03T10:00:00Z"},  # botocore gives a datetime, never text
    ],
)
def test_completed_cancelled_and_odd_events_are_not_acted_on_and_do_not_hide_the_others(event: dict[str, Any]) -> None:
    found = instance_status.scheduled_events(status([event, scheduled("instance-stop")]))
    assert [e.code for e in found] == ["instance-stop"]


def test_every_code_the_event_code_filter_takes_is_acted_on() -> None:
    assert [e.code for e in instance_status.scheduled_events(status([scheduled(c) for c in CODES]))] == CODES


def test_the_impairment_is_the_earliest_failed_check_since_its_impaired_since() -> None:
    later, earlier = T0, T0 - datetime.timedelta(minutes=3)
    found = instance_status.impairment(
        status(
            InstanceStatus=[{"Name": "reachability", "Status": "failed", "ImpairedSince": later}],
            SystemStatus=[{"Name": "reachability", "Status": "failed", "ImpairedSince": earlier}],
        )
    )
    assert found == instance_status.Impairment(INSTANCE, "system-status", earlier)
    assert instance_status.impairment(status()) is None
    # failed without a time it failed since: nothing says how long, so nothing is done
    assert instance_status.impairment(status(InstanceStatus=[{"Name": "reachability", "Status": "failed"}])) is None


def test_the_impaired_event_is_the_same_event_at_every_run() -> None:
    found = instance_status.Impairment(INSTANCE, "instance-status", T0)
    event = instance_status.impaired_event(found, "123456789012", "us-east-1")
    assert event == instance_status.impaired_event(found, "123456789012", "us-east-1")
    assert (event.kind, event.time, event.detail) == (EventKind.INSTANCE_IMPAIRED, T0, "instance-status")
    assert event.event_id == f"impaired-{INSTANCE}-{int(T0.timestamp())}"


def test_the_scheduled_event_goes_to_the_health_workflow_keyed_by_its_instance_event_id() -> None:
    found = instance_status.ScheduledEvent(INSTANCE, EVENT_ID, "instance-retirement", T0 + datetime.timedelta(days=6))
    payload = instance_status.payload(found, "123456789012", "us-east-1", T0)
    parse, target = ROUTES[(payload["source"], payload["detail-type"])]
    assert target == "SCHEDULED_CHANGE_FUNCTION"
    change = instance_status.normalise(payload)
    assert parse(payload) == change
    assert not change.left_out
    (event,) = change.events
    assert (event.kind, event.instance_id, event.ends_at, event.detail) == (
        EventKind.SCHEDULED_CHANGE,
        INSTANCE,
        found.not_before,
        "instance-retirement",
    )
    # the same EC2 event always names the same drain and the same durable execution
    assert event.drain_key == EVENT_ID
    assert execution_name(payload["id"]) == EVENT_ID
    later = instance_status.payload(found, "123456789012", "us-east-1", T0 + datetime.timedelta(minutes=1))
    assert instance_status.normalise(later).events[0].drain_key == EVENT_ID


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"code": "instance-refresh"}, "code"),
        ({"instance-event-id": "event-1"}, "instance-event-id"),
        ({"instance-id": "i-xyz"}, "instance-id"),
        ({"not-before": "Wed, 09 Dec 2026 10:00:00 GMT"}, "not-before"),
        ({"not-before": "2027-06-01T00:00:00Z"}, "too far ahead"),
    ],
)
def test_a_malformed_backstop_event_is_rejected(changes: dict[str, str], message: str) -> None:
    event = load_event("instance-scheduled-event")
    event["detail"].update(changes)
    with pytest.raises(MalformedEvent, match=message):
        instance_status.normalise(event)


def impaired(drain: bool = False, karpenter: KarpenterNodes = KarpenterNodes.HANDLE_ALL) -> tuple[Any, Settings]:
    settings = Settings(cluster_name="c", drain_on_impaired=drain, karpenter_nodes=karpenter)
    found = instance_status.Impairment(INSTANCE, "system-status", T0)
    return instance_status.impaired_event(found, "123456789012", "us-east-1"), settings


@pytest.mark.parametrize(
    ("presence", "drain", "out_of_service"),
    [
        (Presence.LIVE, False, False),  # cordoned and tainted only
        (Presence.GOING, False, False),  # stopping: still not gone
        (Presence.GONE, False, True),  # stopped or terminated: its pods are dead
    ],
)
def test_the_policy_row(presence: Presence, drain: bool, out_of_service: bool) -> None:
    event, settings = impaired()
    action = decide(event, settings, presence, T0 + datetime.timedelta(minutes=5))
    assert action.cordon
    assert action.drain is drain
    assert action.deadline is None
    keys = {t.key: t.value for t in action.taints}
    assert keys["serverless-nth/instance-impaired"] == "system-status"
    assert (OUT_OF_SERVICE_KEY in keys) is out_of_service


def test_an_impaired_node_is_drained_only_on_request_and_then_gently() -> None:
    event, settings = impaired(drain=True)
    action = decide(event, settings, Presence.LIVE, T0 + datetime.timedelta(minutes=5))
    assert action.drain
    assert action.deadline is None
    assert action.wait_until is None
    assert action.basis is Basis.EVENT
    assert action.exclude_from_lb  # its pods are leaving: the load balancers let it go


def test_karpenter_nodes_are_left_to_karpenter_in_rebalance_only_mode() -> None:
    event, settings = impaired(karpenter=KarpenterNodes.REBALANCE_ONLY)
    now = T0 + datetime.timedelta(minutes=5)
    action = for_node(decide(event, settings, Presence.LIVE, now), event, {"karpenter.sh/nodepool": "p"}, settings, now)
    assert action.is_noop
    assert action.basis is Basis.LEFT_TO_KARPENTER


def test_the_settings_default_to_karpenter_s_threshold_and_are_checked_at_init() -> None:
    settings = Settings.from_env({"CLUSTER_NAME": "c"})
    assert (settings.impaired_seconds, settings.drain_on_impaired, settings.long_drain_start_function) == (
        120,
        False,
        "",
    )
    assert Settings.from_env({"CLUSTER_NAME": "c", "IMPAIRED_SECONDS": "0"}).impaired_seconds == 0
    for key, value in (("IMPAIRED_SECONDS", "-1"), ("IMPAIRED_SECONDS", "2m"), ("DRAIN_ON_IMPAIRED", "maybe")):
        with pytest.raises(ConfigError, match=key):
            Settings.from_env({"CLUSTER_NAME": "c", key: value})
    with pytest.raises(ConfigError, match="LONG_DRAIN_START_FUNCTION"):
        Settings.from_env({"CLUSTER_NAME": "c", "LONG_DRAIN_START_FUNCTION": "no spaces"})


def ec2_client() -> Any:
    return botocore.session.get_session().create_client(
        "ec2", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )


def test_three_filtered_queries_every_page_each_instance_once() -> None:
    client = ec2_client()
    queries = [
        {"Filters": [{"Name": "instance-status.status", "Values": ["impaired"]}], "MaxResults": 1000},
        {"Filters": [{"Name": "system-status.status", "Values": ["impaired"]}], "MaxResults": 1000},
        {"Filters": [{"Name": "event.code", "Values": CODES}], "MaxResults": 1000},
    ]
    other = {**status(), "InstanceId": "i-0000000000000000a"}
    with Stubber(client) as stub:  # checks every request and reply against EC2's model
        stub.add_response("describe_instance_status", {"InstanceStatuses": [status()], "NextToken": "t"}, queries[0])
        stub.add_response("describe_instance_status", {"InstanceStatuses": [other]}, {**queries[0], "NextToken": "t"})
        stub.add_response("describe_instance_status", {"InstanceStatuses": [status()]}, queries[1])
        stub.add_response("describe_instance_status", {"InstanceStatuses": []}, queries[2])
        instances = Ec2Instances(client)
        assert [s["InstanceId"] for s in instances.statuses()] == [INSTANCE, "i-0000000000000000a"]
    assert instances.requests_sent == 4


def test_the_found_instances_are_described_a_hundred_at_a_time_unknown_ones_left_out() -> None:
    client = ec2_client()
    ids = [f"i-{n:017x}" for n in range(150)]
    reply = {"Reservations": [{"Instances": [{"InstanceId": ids[0], "State": {"Name": "running"}}]}]}
    with Stubber(client) as stub:
        for chunk in (ids[:100], ids[100:]):
            asked = {"Filters": [{"Name": "instance-id", "Values": chunk}], "MaxResults": 1000}
            stub.add_response("describe_instances", reply if chunk[0] == ids[0] else {"Reservations": []}, asked)
        instances = Ec2Instances(client)
        assert list(instances.describe_many(ids)) == [ids[0]]
    assert instances.requests_sent == 2


def test_the_cordon_of_an_impaired_node_is_told_in_a_kubernetes_event_of_its_own() -> None:
    assert (REASONS[EventKind.INSTANCE_IMPAIRED], DESCRIPTIONS[EventKind.INSTANCE_IMPAIRED]) == (
        "InstanceImpaired",
        "EC2 status check failed (instance-status backstop)",
    )


@pytest.mark.parametrize(("code", "hands_back"), [(c, c in ("instance-reboot", "system-reboot")) for c in CODES])
def test_after_a_reboot_event_the_health_workflow_hands_the_node_back(code: str, hands_back: bool) -> None:
    found = instance_status.ScheduledEvent(INSTANCE, EVENT_ID, code, T0 + datetime.timedelta(days=1))
    (event,) = instance_status.normalise(instance_status.payload(found, "123456789012", "us-east-1", T0)).events
    assert reboots(event) is hands_back
