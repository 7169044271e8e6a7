"""The long-drain event types, pure: their parsers (Auto Scaling terminate lifecycle action, AWS
Health scheduled change) and their rows of the policy table."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from serverless_nth.config import ConfigError, KarpenterNodes, Settings, UnfinishedDrainResult
from serverless_nth.events import EventKind, InterruptionEvent, MalformedEvent, lifecycle_action, scheduled_change
from serverless_nth.instance import Presence
from serverless_nth.policy import (
    OUT_OF_SERVICE_KEY,
    Basis,
    decide,
    drain_starts_at,
    event_taint,
    for_node,
    unfinished_drain_result,
)
from tests.eventfiles import load_event

T0 = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)
I1, I2, I3 = "i-0123456789abcdef0", "i-0123456789abcdef1", "i-0123456789abcdef2"


def lifecycle_event(**detail: Any) -> dict[str, Any]:
    event = load_event("asg-lifecycle-action")
    event["detail"].update(detail)
    return event


def health_event(entities: list[str], start: str = "Wed, 09 Dec 2026 10:00:00 GMT", **detail: Any) -> dict[str, Any]:
    event = load_event("scheduled-change")
    event["detail"].update(affectedEntities=[{"entityValue": e} for e in entities], startTime=start, **detail)
    return event


def test_a_lifecycle_action_carries_what_its_heartbeats_and_completion_need() -> None:
    event = lifecycle_action.normalise(lifecycle_event())
    assert event.kind is EventKind.ASG_TERMINATING
    assert event.instance_id == "i-0b662ef9931388ba0"
    assert event.lifecycle is not None
    assert (event.lifecycle.group, event.lifecycle.hook) == ("eks-workers", "serverless-nth-local-eks")
    assert event.lifecycle.token == "87654321-4321-4321-4321-210987654321"
    # the taint's value is a label value, whatever the group's and hook's names
    assert event_taint(event, Settings(cluster_name="c")).value == "terminate"
    warm = lifecycle_action.normalise(lifecycle_event(Destination="WarmPool"))
    assert event_taint(warm, Settings(cluster_name="c")).value == "warm-pool"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LifecycleActionToken", "not-a-token"),
        ("LifecycleActionToken", None),
        ("EC2InstanceId", "i-nothex"),
        ("LifecycleHookName", "has spaces"),
        ("LifecycleHookName", ""),
        ("AutoScalingGroupName", ""),
        ("AutoScalingGroupName", "x" * 256),
        ("LifecycleTransition", "autoscaling:EC2_INSTANCE_LAUNCHING"),
        ("LifecycleTransition", "autoscaling:TEST_NOTIFICATION"),
    ],
)
def test_malformed_lifecycle_actions_are_rejected(key: str, value: Any) -> None:
    event = lifecycle_event()
    if value is None:
        del event["detail"][key]
    else:
        event["detail"][key] = value
    with pytest.raises(MalformedEvent):
        lifecycle_action.normalise(event)


def test_a_health_event_becomes_one_event_per_instance_in_order_without_repeats_or_other_entities() -> None:
    change = scheduled_change.normalise(health_event([I2, I1, "h-0123456789abcdef0", I2, "vol-0123", I3]))
    events = change.events
    assert [e.instance_id for e in events] == [I2, I1, I3]
    assert change.left_out == ['{"entityValue": "h-0123456789abcdef0"}', '{"entityValue": "vol-0123"}']
    assert {e.kind for e in events} == {EventKind.SCHEDULED_CHANGE}
    assert {e.ends_at for e in events} == {datetime.datetime(2026, 12, 9, 10, 0, tzinfo=datetime.UTC)}
    assert {e.detail for e in events} == {"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"}


def test_a_health_event_naming_no_instance_is_nothing_to_do() -> None:
    assert scheduled_change.normalise(health_event(["h-0123456789abcdef0"])).events == []


@pytest.mark.parametrize(
    "odd",
    [{"entityValue": ""}, {"entityArn": "arn:aws:health:::entity/x"}, {"entityValue": None}, "i-0123", 7],
    ids=["empty", "no-value", "null", "a-string", "a-number"],
)
def test_an_odd_entity_is_left_out_and_told_not_a_reason_to_drop_the_event(odd: Any) -> None:
    """Issue 25, item 5: before, one such entity made the whole event malformed."""
    event = health_event([I1])
    event["detail"]["affectedEntities"].insert(0, odd)
    change = scheduled_change.normalise(event)
    assert [e.instance_id for e in change.events] == [I1]
    assert change.left_out == [json.dumps(odd)]


@pytest.mark.parametrize(
    "start",
    ["2026-02-30T10:00:00Z", "2026-12-09T24:00:00Z", "2026-13-09T10:00:00Z"],
)
def test_a_date_shaped_start_that_is_no_date_is_malformed_not_a_value_error(start: str) -> None:
    event = health_event([I1])
    event["detail"]["startTime"] = start
    with pytest.raises(MalformedEvent, match="is not a date"):
        scheduled_change.normalise(event)


def test_a_start_beyond_thirty_days_of_the_event_is_malformed() -> None:
    event = health_event([I1])
    sent = datetime.datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    event["detail"]["startTime"] = (sent + datetime.timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(MalformedEvent, match="more than 30 days"):
        scheduled_change.normalise(event)
    event["detail"]["startTime"] = (sent + datetime.timedelta(days=29)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert scheduled_change.normalise(event).events


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wed, 09 Dec 2026 10:00:00 GMT", datetime.datetime(2026, 12, 9, 10, 0, tzinfo=datetime.UTC)),
        ("Wed, 09 Dec 2026 12:00:00 +0200", datetime.datetime(2026, 12, 9, 10, 0, tzinfo=datetime.UTC)),
        ("2026-12-09T10:00:00Z", datetime.datetime(2026, 12, 9, 10, 0, tzinfo=datetime.UTC)),
    ],
)
def test_health_start_times_in_either_format(text: str, expected: datetime.datetime) -> None:
    assert scheduled_change.start_time(text) == expected


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(service="RDS"),
        lambda d: d.update(eventTypeCategory="issue"),
        lambda d: d.update(startTime="next tuesday"),
        lambda d: d.update(startTime="2026-12-09 10:00:00"),
        lambda d: d.pop("affectedEntities"),
        lambda d: d.update(statusCode="canceled"),
        lambda d: d.update(eventArn="not an arn"),
        lambda d: d.update(affectedEntities="i-0123456789abcdef0"),
        lambda d: d.update(eventTypeCode="lower case"),
    ],
)
def test_malformed_health_events_are_rejected(mutate: Any) -> None:
    event = health_event([I1])
    mutate(event["detail"])
    with pytest.raises(MalformedEvent):
        scheduled_change.normalise(event)


def long_event(kind: EventKind, ends_in: float | None = None) -> InterruptionEvent:
    ends = T0 + datetime.timedelta(seconds=ends_in) if ends_in is not None else None
    return InterruptionEvent(kind, "id", I1, "us-east-1", "123456789012", T0, "detail", ends_at=ends)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("presence", [Presence.LIVE, Presence.GOING])
@pytest.mark.parametrize(("kind", "ends_in"), [(EventKind.ASG_TERMINATING, None), (EventKind.SCHEDULED_CHANGE, 86400)])
def test_long_drains_never_cap_grace_nor_break_a_pdb(
    kind: EventKind, ends_in: float | None, presence: Presence
) -> None:
    action = decide(long_event(kind, ends_in), Settings(cluster_name="c"), presence, at(5))
    assert (action.cordon, action.drain, action.deadline, action.basis) == (True, True, None, Basis.EVENT)
    assert [t.key for t in action.taints] == [f"serverless-nth/{kind.value}"]
    assert action.wait_until == (at(86400) if ends_in else None)


def test_a_scheduled_change_whose_window_began_drains_gently_at_once() -> None:
    action = decide(long_event(EventKind.SCHEDULED_CHANGE, 60), Settings(cluster_name="c"), Presence.LIVE, at(120))
    assert (action.drain, action.deadline, action.wait_until, action.basis) == (True, None, None, Basis.PAST_DEADLINE)


@pytest.mark.parametrize("kind", [EventKind.ASG_TERMINATING, EventKind.SCHEDULED_CHANGE])
def test_a_long_drain_of_an_instance_already_gone_marks_the_node_out_of_service(kind: EventKind) -> None:
    action = decide(long_event(kind, 600), Settings(cluster_name="c"), Presence.GONE, at(5))
    assert (action.drain, action.basis) == (False, Basis.INSTANCE_GONE)
    assert OUT_OF_SERVICE_KEY in [t.key for t in action.taints]


def test_a_scheduled_change_drains_its_lead_time_before_the_window_and_anything_else_at_once() -> None:
    settings = Settings(cluster_name="c", scheduled_change_lead_seconds=1800)
    assert drain_starts_at(long_event(EventKind.SCHEDULED_CHANGE, 86400), settings) == at(86400 - 1800)
    assert drain_starts_at(long_event(EventKind.ASG_TERMINATING), settings) == T0


def test_karpenter_takes_scheduled_changes_but_not_lifecycle_actions_in_rebalance_only_mode() -> None:
    settings = Settings(cluster_name="c", karpenter_nodes=KarpenterNodes.REBALANCE_ONLY)
    labels = {"karpenter.sh/nodepool": "default"}
    for kind, left in ((EventKind.SCHEDULED_CHANGE, True), (EventKind.ASG_TERMINATING, False)):
        event = long_event(kind, 86400)
        action = for_node(decide(event, settings, Presence.LIVE, at(5)), event, labels, settings, at(5))
        assert (action.basis is Basis.LEFT_TO_KARPENTER) is left


def test_long_drain_settings_are_validated_at_init() -> None:
    settings = Settings.from_env(
        {"CLUSTER_NAME": "c", "SCHEDULED_CHANGE_LEAD_SECONDS": "0", "LIFECYCLE_HOOK_NAME": "serverless-nth-c"}
    )
    assert (settings.scheduled_change_lead_seconds, settings.lifecycle_hook_name) == (0, "serverless-nth-c")
    for key, value in (("SCHEDULED_CHANGE_LEAD_SECONDS", "-1"), ("LIFECYCLE_HOOK_NAME", "has spaces")):
        with pytest.raises(ConfigError, match=key):
            Settings.from_env({"CLUSTER_NAME": "c", key: value})


def test_the_unfinished_drain_result_is_validated_at_init() -> None:
    settings = Settings.from_env({"CLUSTER_NAME": "c", "UNFINISHED_DRAIN_RESULT": "ABANDON"})
    assert settings.unfinished_drain_result is UnfinishedDrainResult.ABANDON
    assert Settings.from_env({"CLUSTER_NAME": "c"}).unfinished_drain_result is UnfinishedDrainResult.AUTO
    with pytest.raises(ConfigError, match="UNFINISHED_DRAIN_RESULT"):
        Settings.from_env({"CLUSTER_NAME": "c", "UNFINISHED_DRAIN_RESULT": "abandon-please"})


@pytest.mark.parametrize(
    ("setting", "retains", "expected"),
    [
        (UnfinishedDrainResult.AUTO, False, "CONTINUE"),
        (UnfinishedDrainResult.AUTO, True, "ABANDON"),
        (UnfinishedDrainResult.CONTINUE, True, "CONTINUE"),
        (UnfinishedDrainResult.ABANDON, False, "ABANDON"),
    ],
)
def test_an_unfinished_drain_is_abandoned_where_the_group_keeps_it_or_the_user_says(
    setting: UnfinishedDrainResult, retains: bool, expected: str
) -> None:
    assert unfinished_drain_result(setting, retains) == expected


def test_a_health_event_carries_its_arn_and_status_and_a_missing_start_is_a_gentle_drain_now() -> None:
    upcoming = scheduled_change.normalise(health_event([I1], statusCode="upcoming")).events[0]
    assert upcoming.health is not None
    assert upcoming.health.status == "upcoming"
    assert upcoming.drain_key == upcoming.health.event_arn != upcoming.event_id
    # Karpenter's fixtures have neither startTime nor eventTypeCode: the safe reading, not malformed
    bare = health_event([I1])
    for field in ("startTime", "eventTypeCode", "statusCode"):
        bare["detail"].pop(field, None)
    event = scheduled_change.normalise(bare).events[0]
    assert event.ends_at is None
    assert event.health is not None
    assert event.health.status == ""
    settings = Settings(cluster_name="c")
    assert drain_starts_at(event, settings) == event.time  # drains at once
    action = decide(event, settings, Presence.LIVE, T0)
    assert action.drain
    assert action.deadline is None
    assert action.wait_until is None


@pytest.mark.parametrize("presence", list(Presence))
def test_a_closed_health_event_undoes_on_a_live_instance_and_never_drains(presence: Presence) -> None:
    event = scheduled_change.normalise(health_event([I1], statusCode="closed")).events[0]
    action = decide(event, Settings(cluster_name="c"), presence, T0)
    if presence is Presence.LIVE:
        assert action.restore
        assert not action.drain
        assert not action.cordon
        assert action.basis is Basis.MAINTENANCE_ENDED
    else:  # the maintenance took the instance: its pods are dead or dying, as for any gone instance
        assert not action.restore
        assert action.cordon
    open_event = scheduled_change.normalise(health_event([I1], statusCode="open")).events[0]
    assert not decide(open_event, Settings(cluster_name="c"), presence, T0).restore


def test_a_reboot_watch_has_a_fixed_number_of_checks_covering_eight_hours() -> None:
    from serverless_nth.scheduled_drain import BOOT_WATCH, boot_check_pauses

    pauses = boot_check_pauses()
    assert pauses[:5] == [60, 120, 240, 480, 900]
    assert sum(pauses) >= BOOT_WATCH.total_seconds() > sum(pauses[:-1])
    assert len(pauses) == 35  # a bounded history, whatever the clock does during the waits


class _Ctx:
    """The durable context as drain_each uses it: its steps run at once, its waits move the clock,
    and every operation is counted."""

    def __init__(self, clock: list[float]) -> None:
        self.clock, self.operations, self.waits = clock, 0, []
        self.execution_context = type("Execution", (), {"durable_execution_arn": "arn:exec"})()

    def wait(self, duration: Any, name: str) -> None:
        self.operations += 1
        self.waits.append((name, duration.to_seconds()))
        self.clock[0] += duration.to_seconds()


class _HeldDrains:
    """LongDrains' steps for one node whose budget refuses every eviction: each round lasts its 60 s
    and leaves the same pod."""

    def __init__(self, clock: list[float], lead: float) -> None:
        self.settings = Settings(cluster_name="c", scheduled_change_lead_seconds=int(lead))
        self.now = clock

    def step(self, ctx: _Ctx, name: str, kind: EventKind, work: Any, *args: Any) -> Any:
        ctx.operations += 1
        return work(*args)

    def prepare(self, event: InterruptionEvent, holder: Any, account: Any) -> dict[str, Any]:
        return {"outcome": "cordoned", "node": "n", "drain_due": True}

    def seconds_until(self, moment: datetime.datetime) -> float:
        return max(0.0, moment.timestamp() - self.now[0])

    def drain_round(self, *args: Any) -> dict[str, Any]:
        self.now[0] += 60
        return {"completed": False, "remaining": ["ns/api-0"], "at": self.now[0]}

    def finish(self, *args: Any) -> str:
        return "drain-incomplete"


@pytest.mark.parametrize("idle", [True, False])
def test_a_week_long_health_hold_costs_hundreds_of_operations_not_tens_of_thousands(
    idle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """drain_each itself, for a node held by its PDB from the drain's start to a window a week
    ahead (ScheduledChangeLeadSeconds' largest): the idle wait after each pass that changed nothing
    grows, and the execution's history stays far below the 25,000 operations AWS's durable
    execution SDK documents. Without it (the ceiling forced to the 1 s pause), tens of thousands."""
    from serverless_nth import long_drain_each

    if not idle:
        monkeypatch.setattr(long_drain_each, "IDLE_CEILING_SECONDS", 1)
    week = 7 * 86400
    clock = [T0.timestamp()]
    event = InterruptionEvent(EventKind.SCHEDULED_CHANGE, "id", I1, "us-east-1", "123456789012", T0, ends_at=at(week))
    ctx, drains = _Ctx(clock), _HeldDrains(clock, lead=week)
    outcomes, rounds = long_drain_each.drain_each(drains, ctx, EventKind.SCHEDULED_CHANGE, [event], None, Exception)  # type: ignore[arg-type]
    assert outcomes == {I1: "drain-incomplete"}
    idles = [seconds for name, seconds in ctx.waits if name.startswith("idle-")]
    print(f"a week-long hold, idle waits {'on' if idle else 'off'}: {ctx.operations} operations, {rounds} rounds")
    if idle:
        assert idles[:5] == [2, 4, 8, 16, 32]
        assert max(idles) == long_drain_each.IDLE_CEILING_SECONDS
        assert ctx.operations < 3000
    else:
        assert idles == []
        assert ctx.operations > 25_000
