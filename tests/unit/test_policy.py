import datetime

import pytest

from serverless_nth.config import Settings, TaintEffect
from serverless_nth.events import EventKind, InterruptionEvent
from serverless_nth.policy import OUT_OF_SERVICE_KEY, decide

T0 = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.UTC)
DEFAULTS = Settings(cluster_name="c")


def event(kind: EventKind, detail: str = "") -> InterruptionEvent:
    return InterruptionEvent(kind, "id-1", "i-0123456789abcdef0", "us-east-1", "123456789012", T0, detail)


@pytest.mark.parametrize(
    ("kind", "cordon", "drain", "certain", "deadline_s", "taint_keys"),
    [
        (EventKind.SPOT_INTERRUPTION, True, True, True, 120, ["serverless-nth/spot-interruption"]),
        (EventKind.REBALANCE_RECOMMENDATION, True, False, False, None, ["serverless-nth/rebalance-recommendation"]),
        (EventKind.INSTANCE_STOPPING, True, True, True, 90, ["serverless-nth/instance-stopping"]),
        (EventKind.INSTANCE_SHUTTING_DOWN, True, True, True, 90, ["serverless-nth/instance-shutting-down"]),
        (EventKind.INSTANCE_STOPPED, True, False, True, 0, ["serverless-nth/instance-stopped", OUT_OF_SERVICE_KEY]),
        (
            EventKind.INSTANCE_TERMINATED,
            True,
            False,
            True,
            0,
            ["serverless-nth/instance-terminated", OUT_OF_SERVICE_KEY],
        ),
        (EventKind.INSTANCE_PENDING, False, False, False, None, []),
        (EventKind.INSTANCE_RUNNING, False, False, False, None, []),
    ],
)
def test_default_policy(kind, cordon, drain, certain, deadline_s, taint_keys) -> None:  # type: ignore[no-untyped-def]
    action = decide(event(kind), DEFAULTS)
    assert action.cordon is cordon
    assert action.drain is drain
    assert action.termination_certain is certain
    assert [t.key for t in action.taints] == taint_keys
    expected = None if deadline_s is None else T0 + datetime.timedelta(seconds=deadline_s)
    assert action.deadline == expected


def test_rebalance_drains_when_enabled() -> None:
    action = decide(
        event(EventKind.REBALANCE_RECOMMENDATION),
        Settings(cluster_name="c", drain_on_rebalance=True, rebalance_drain_seconds=300),
    )
    assert action.drain
    assert not action.termination_certain
    assert action.deadline == T0 + datetime.timedelta(seconds=300)


def test_taint_effect_and_out_of_service_are_configurable() -> None:
    settings = Settings(cluster_name="c", taint_effect=TaintEffect.NO_EXECUTE, out_of_service_taint=False)
    action = decide(event(EventKind.INSTANCE_TERMINATED, "terminated"), settings)
    assert [(t.key, t.value, t.effect) for t in action.taints] == [
        ("serverless-nth/instance-terminated", "terminated", TaintEffect.NO_EXECUTE)
    ]


def test_state_change_deadline_follows_setting() -> None:
    action = decide(event(EventKind.INSTANCE_STOPPING), Settings(cluster_name="c", state_change_drain_seconds=30))
    assert action.deadline == T0 + datetime.timedelta(seconds=30)
