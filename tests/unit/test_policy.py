"""The policy table: the event, EC2's state now, and the time, against the action."""

import dataclasses
import datetime

import pytest

from serverless_nth.config import KarpenterNodes, Settings, TaintEffect
from serverless_nth.events import EventKind, InterruptionEvent
from serverless_nth.instance import Presence, presence
from serverless_nth.policy import OUT_OF_SERVICE_KEY, Basis, decide, for_node, instance_opted_in, next_pause

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
    # on by default, where traffic must move: the pods are drained or die with the instance (issue 25.3)
    pods_leave = drain or presence_ is GONE or basis is Basis.HIBERNATE
    assert action.exclude_from_lb is (bool(taints) and pods_leave)
    assert not action.restore
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


@pytest.mark.parametrize(
    ("presence_", "restore", "basis"), [(LIVE, True, Basis.CAME_BACK), (GONE, False, Basis.OUTDATED)]
)
def test_running_again_undoes_what_we_added_unless_it_stopped_since(presence_, restore, basis) -> None:  # type: ignore[no-untyped-def]
    action = decide(event(K.INSTANCE_RUNNING, "running"), DEFAULTS, presence_, at(2))
    assert (action.restore, action.basis, action.cordon, action.taints) == (restore, basis, False, ())


@pytest.mark.parametrize(
    ("presence_", "after", "deadline_s", "basis"),
    [
        (LIVE, 10, 150, Basis.EVENT),  # the end the event names, not time + 120 s
        (LIVE, 151, None, Basis.PAST_DEADLINE),
        (GONE, 10, None, Basis.INSTANCE_GONE),
    ],
)
def test_capacity_reservation_interruption_ends_when_the_event_says(presence_, after, deadline_s, basis) -> None:  # type: ignore[no-untyped-def]
    warning = dataclasses.replace(event(K.CAPACITY_RESERVATION_INTERRUPTION, "terminate"), ends_at=at(150))
    action = decide(warning, DEFAULTS, presence_, at(after))
    assert action.basis is basis
    assert action.deadline == (None if deadline_s is None else at(deadline_s))
    assert action.taints[0].key == "serverless-nth/capacity-reservation-interruption"


def test_the_load_balancer_label_is_a_setting() -> None:
    settings = Settings(cluster_name="c", exclude_from_load_balancers=False)
    assert not decide(event(K.SPOT_INTERRUPTION, "terminate"), settings, LIVE, at(1)).exclude_from_lb


KARPENTER = {"karpenter.sh/nodepool": "spot", "karpenter.sh/capacity-type": "spot"}
NODE_GROUP = {"eks.amazonaws.com/nodegroup": "workers"}
REBALANCE_ONLY = Settings(cluster_name="c", karpenter_nodes=KarpenterNodes.REBALANCE_ONLY)
DRAIN_ON_REBALANCE = Settings(cluster_name="c", drain_on_rebalance=True)


# (node labels, settings, event kind, drain?, basis); None for drain: nothing is done
NODE_TABLE = [
    # Karpenter nodes, handle-all (the default): as any node
    (KARPENTER, DEFAULTS, K.SPOT_INTERRUPTION, True, Basis.EVENT),
    (KARPENTER, DEFAULTS, K.REBALANCE_RECOMMENDATION, False, Basis.EVENT),
    # rebalance-only: Karpenter's interruption queue handles the rest
    (KARPENTER, REBALANCE_ONLY, K.SPOT_INTERRUPTION, None, Basis.LEFT_TO_KARPENTER),
    (KARPENTER, REBALANCE_ONLY, K.CAPACITY_RESERVATION_INTERRUPTION, None, Basis.LEFT_TO_KARPENTER),
    (KARPENTER, REBALANCE_ONLY, K.INSTANCE_STOPPING, None, Basis.LEFT_TO_KARPENTER),
    (KARPENTER, REBALANCE_ONLY, K.REBALANCE_RECOMMENDATION, False, Basis.EVENT),
    # rebalance-only says nothing about nodes Karpenter does not manage
    (NODE_GROUP, REBALANCE_ONLY, K.SPOT_INTERRUPTION, True, Basis.EVENT),
    # the per-node rebalance label, on either kind of node, whatever DrainOnRebalance says
    (
        {**KARPENTER, "serverless-nth/rebalance": "drain"},
        REBALANCE_ONLY,
        K.REBALANCE_RECOMMENDATION,
        True,
        Basis.NODE_LABEL,
    ),
    ({**NODE_GROUP, "serverless-nth/rebalance": "drain"}, DEFAULTS, K.REBALANCE_RECOMMENDATION, True, Basis.NODE_LABEL),
    (
        {**NODE_GROUP, "serverless-nth/rebalance": "cordon"},
        DRAIN_ON_REBALANCE,
        K.REBALANCE_RECOMMENDATION,
        False,
        Basis.NODE_LABEL,
    ),
    ({**KARPENTER, "serverless-nth/rebalance": "ignore"}, DEFAULTS, K.REBALANCE_RECOMMENDATION, None, Basis.NODE_LABEL),
    # ... and only for rebalance recommendations
    ({**NODE_GROUP, "serverless-nth/rebalance": "ignore"}, DEFAULTS, K.SPOT_INTERRUPTION, True, Basis.EVENT),
    # an unknown value is no choice: the stack's setting applies
    (
        {**NODE_GROUP, "serverless-nth/rebalance": "maybe"},
        DRAIN_ON_REBALANCE,
        K.REBALANCE_RECOMMENDATION,
        True,
        Basis.EVENT,
    ),
    # opted out: never touched
    ({**NODE_GROUP, "serverless-nth/ignore": "true"}, DEFAULTS, K.SPOT_INTERRUPTION, None, Basis.OPTED_OUT),
    ({**KARPENTER, "serverless-nth/ignore": "true"}, DEFAULTS, K.REBALANCE_RECOMMENDATION, None, Basis.OPTED_OUT),
    ({**NODE_GROUP, "serverless-nth/ignore": "false"}, DEFAULTS, K.SPOT_INTERRUPTION, True, Basis.EVENT),
]


@pytest.mark.parametrize(("labels", "settings", "kind", "drain", "basis"), NODE_TABLE)
def test_per_node_policy(labels, settings, kind, drain, basis) -> None:  # type: ignore[no-untyped-def]
    warning = event(kind, "terminate" if kind is K.SPOT_INTERRUPTION else "stopping")
    first = decide(warning, settings, LIVE, at(1))
    action = for_node(first, warning, labels, settings, at(1))
    assert action.basis is basis
    if drain is None:
        assert action.is_noop
    else:
        assert action.cordon
        assert action.drain is drain
        assert action.exclude_from_lb is drain  # a cordon alone leaves the pods serving
    if kind is K.REBALANCE_RECOMMENDATION:
        assert action.deadline is None  # never certain, whoever chose the drain


def test_running_again_is_undone_even_on_an_opted_out_node() -> None:
    came_back = decide(event(K.INSTANCE_RUNNING, "running"), DEFAULTS, LIVE, at(1))
    assert for_node(came_back, event(K.INSTANCE_RUNNING), {"serverless-nth/ignore": "true"}, DEFAULTS, at(1)).restore


@pytest.mark.parametrize(
    ("tag", "tags", "handled"),
    [
        ("", {}, True),
        ("aws-node-termination-handler/managed", {}, False),
        ("aws-node-termination-handler/managed", {"aws-node-termination-handler/managed": ""}, True),
    ],
)
def test_managed_tag(tag: str, tags: dict[str, str], handled: bool) -> None:
    assert instance_opted_in(tags, Settings(cluster_name="c", managed_tag=tag)) is handled


@pytest.mark.parametrize(
    ("previous", "changed", "ceiling", "expected"),
    [
        (0.0, True, 100.0, 1.0),  # the first pause
        (0.0, False, 100.0, 1.0),
        (1.0, False, 100.0, 2.0),  # doubles while nothing changes
        (64.0, False, 100.0, 100.0),  # up to the ceiling
        (100.0, False, 100.0, 100.0),
        (100.0, True, 100.0, 1.0),  # a change: back to the first
        (8.0, False, -11.4, 1.0),  # no room under the heartbeat interval: never below the first
    ],
)
def test_the_pause_between_rounds_grows_while_nothing_changes(
    previous: float, changed: bool, ceiling: float, expected: float
) -> None:
    assert next_pause(previous, changed, ceiling) == expected
