"""Property-based fuzzing of the three event normalisers (tests/reliability/fuzzing.py): a few
thousand cases in ``make test``; ``make fuzz`` runs at least 10,000 per normaliser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.eventfiles import load_event
from tests.reliability.fuzzing import (
    NOW,
    TARGETS,
    Target,
    arbitrary_input,
    check_hostile,
    check_round_trip,
    mutated_envelopes,
    parse_stage,
    valid_envelopes,
)

settings.load_profile("ci")
NAMES = sorted(TARGETS)
SAMPLE_FILES = {
    "spot_interruption": "spot-interruption",
    "rebalance_recommendation": "rebalance-recommendation",
    "state_change": "state-change-stopping",
}


def _sample(name: str) -> Callable[[], dict[str, Any]]:
    def load() -> dict[str, Any]:
        event = load_event(SAMPLE_FILES[name])
        event["time"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
        return event

    return load


VALID_SAMPLES = {name: _sample(name) for name in NAMES}


def test_the_samples_are_valid() -> None:
    for name in NAMES:
        assert parse_stage(TARGETS[name], VALID_SAMPLES[name]()) is not None


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_valid_envelopes_round_trip(name: str, data: st.DataObject) -> None:
    target: Target = TARGETS[name]
    check_round_trip(target, data.draw(valid_envelopes(target)))


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_mutated_envelopes_parse_or_are_malformed(name: str, data: st.DataObject) -> None:
    target = TARGETS[name]
    check_hostile(target, data.draw(mutated_envelopes(target)))


@pytest.mark.parametrize("name", NAMES)
@given(event=arbitrary_input())
def test_arbitrary_input_parses_or_is_malformed(name: str, event: Any) -> None:
    check_hostile(TARGETS[name], event)


LAX_FIELDS = [
    ("id", "5d5555d5-dd55-5555-5555-5555dd55d55d\n"),
    ("account", "123456789012\n"),
    ("account", "١٢٣٤٥٦٧٨٩٠١٢"),  # Arabic-Indic digits
    ("region", "us-east-1\n"),
    ("region", "us-east-١"),
]


@pytest.mark.parametrize(("key", "value"), LAX_FIELDS, ids=[f"{k}-{v!r}" for k, v in LAX_FIELDS])
def test_envelope_fields_are_exact(key: str, value: str) -> None:
    accepted = []
    for name in NAMES:
        event = VALID_SAMPLES[name]()
        event[key] = value
        if parse_stage(TARGETS[name], event) is not None:
            accepted.append(name)
    assert not accepted, f"{key} {value!r} was accepted by {accepted}"
