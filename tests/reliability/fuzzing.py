"""Property-based fuzzing of the three event normalisers (serverless_nth.events.*.normalise), as
the entry point calls them (normalise, then check_event_time): any input either yields a valid
InterruptionEvent or raises MalformedEvent, never another exception; valid EventBridge envelopes
round-trip. Shared by the test (a few thousand cases in ``make test``) and ``make fuzz``
(tests/reliability/fuzz.py, at least 10,000 per normaliser)."""

from __future__ import annotations

import datetime
import re
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from serverless_nth.events import rebalance_recommendation, spot_interruption, state_change
from serverless_nth.events.model import EventKind, InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import check_event_time

# hypothesis' caches (Unicode tables, constants) outside the repository, not in ./.hypothesis
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "serverless-nth-hypothesis")

# the clock the checks run against (fixed, so that a failure replays)
NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Target:
    name: str
    normalise: Callable[[Any], InterruptionEvent]
    detail_type: str
    details: st.SearchStrategy[dict[str, str]]
    kind: Callable[[dict[str, str]], EventKind]


INSTANCE_IDS = st.from_regex(r"i-[0-9a-f]{8}([0-9a-f]{9})?", fullmatch=True)
TARGETS = {
    "spot_interruption": Target(
        "spot_interruption",
        spot_interruption.normalise,
        spot_interruption.DETAIL_TYPE,
        st.fixed_dictionaries(
            {"instance-id": INSTANCE_IDS, "instance-action": st.sampled_from(["terminate", "stop", "hibernate"])}
        ),
        lambda d: EventKind.SPOT_INTERRUPTION,
    ),
    "rebalance_recommendation": Target(
        "rebalance_recommendation",
        rebalance_recommendation.normalise,
        rebalance_recommendation.DETAIL_TYPE,
        st.fixed_dictionaries({"instance-id": INSTANCE_IDS}),
        lambda d: EventKind.REBALANCE_RECOMMENDATION,
    ),
    "state_change": Target(
        "state_change",
        state_change.normalise,
        state_change.DETAIL_TYPE,
        st.fixed_dictionaries(
            {"instance-id": INSTANCE_IDS, "state": st.sampled_from(sorted(state_change.KIND_BY_STATE))}
        ),
        lambda d: state_change.KIND_BY_STATE[d["state"]],
    ),
}

# --- valid envelopes ------------------------------------------------------------------------
REGIONS = st.sampled_from(
    ["us-east-1", "us-west-2", "eu-west-1", "eu-central-2", "ap-southeast-4", "il-central-1", "us-gov-west-1"]
)
ACCOUNTS = st.text(string.digits, min_size=12, max_size=12)
_ALNUM = string.ascii_letters + string.digits
IDS = st.one_of(
    st.uuids().map(str),
    st.builds(str.__add__, st.sampled_from(_ALNUM), st.text(_ALNUM + "-", max_size=127)),
)
# within the window check_event_time accepts around NOW: 15 days back, 5 minutes ahead
TIMES = st.integers(-15 * 86400 + 60, 4 * 60).map(lambda s: NOW + datetime.timedelta(seconds=s))


@st.composite
def time_strings(draw: st.DrawFn) -> tuple[str, datetime.datetime]:
    """An RFC 3339 string as EventBridge may write it, and the instant it means."""
    moment = draw(TIMES)
    digits = draw(st.integers(0, 6))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        fraction = draw(st.integers(0, 10**digits - 1))
        text += f".{fraction:0{digits}d}"
        moment = moment.replace(microsecond=fraction * 10 ** (6 - digits))
    else:
        moment = moment.replace(microsecond=0)
    offset = draw(st.sampled_from([None, 0, 60, -330, 540]))
    if offset is None:
        return text + "Z", moment
    zone = datetime.timezone(datetime.timedelta(minutes=offset))
    local = moment.astimezone(zone)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + text[19:]
    sign = "+" if offset >= 0 else "-"
    return text + f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}", moment


@st.composite
def valid_envelopes(draw: st.DrawFn, target: Target) -> tuple[dict[str, Any], dict[str, Any]]:
    """An event as EventBridge delivers it, and what its InterruptionEvent must hold."""
    detail = draw(target.details)
    when, moment = draw(time_strings())
    event = {
        "version": "0",
        "id": draw(IDS),
        "detail-type": target.detail_type,
        "source": "aws.ec2",
        "account": draw(ACCOUNTS),
        "time": when,
        "region": draw(REGIONS),
        "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{detail['instance-id']}"],
        "detail": detail,
    }
    expected = {
        "kind": target.kind(detail),
        "event_id": event["id"],
        "instance_id": detail["instance-id"],
        "region": event["region"],
        "account": event["account"],
        "time": moment,
        "detail": detail.get("instance-action") or detail.get("state") or "",
    }
    return event, expected


# --- hostile input --------------------------------------------------------------------------
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# strings close to the valid ones: what a lax parser lets through
NEAR_STRINGS = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "\n",
            "12345678901",
            "1234567890123",
            "US-EAST-1",
            "us-east-1a",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2026-11-25T12:00:00",
            "2026-02-30T12:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T12:00:60Z",
            "2026-11-25T12:00:00+99:99",
            "2026-11-25T12:00:00.1234567890Z",
            "2026-11-25T12:00:00.123456789Z",
            "i-0123456789ABCDEF0",
            "i-01234567",
            "stopping ",
            "aws.ec2 ",
        ]
    ),
    st.text(max_size=30),
    # digits of other scripts, which a regular expression's \d also matches
    st.text(st.characters(categories=["Nd"]), min_size=12, max_size=12),
    st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})", fullmatch=True),
)
VALUES = st.one_of(JSON, NEAR_STRINGS)
AFFIXES = st.one_of(st.sampled_from(["\n", " ", "\t", "\r\n", "\x00", "\u00a0", "0", "a", "-"]), st.text(max_size=3))
ENVELOPE_KEYS = ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"]
DETAIL_KEYS = ["instance-id", "instance-action", "state"]
MUTATIONS = ["drop", "replace", "affix", "detail-drop", "detail-replace", "detail-affix", "whole-detail", "extra"]


def _affix(draw: st.DrawFn, value: Any) -> Any:
    if not isinstance(value, str):
        return draw(VALUES)
    piece = draw(AFFIXES)
    return value + piece if draw(st.booleans()) else piece + value


@st.composite
def mutated_envelopes(draw: st.DrawFn, target: Target) -> Any:
    """A valid event with a few of its fields removed, replaced, padded or added."""
    event, _ = draw(valid_envelopes(target))
    for _ in range(draw(st.integers(1, 3))):
        mutation = draw(st.sampled_from(MUTATIONS))
        detail = event.get("detail")
        if mutation.startswith("detail-") and not isinstance(detail, dict):
            mutation = "whole-detail"
        if mutation == "drop":
            event.pop(draw(st.sampled_from(ENVELOPE_KEYS)), None)
        elif mutation == "replace":
            event[draw(st.sampled_from(ENVELOPE_KEYS))] = draw(VALUES)
        elif mutation == "affix":
            key = draw(st.sampled_from(ENVELOPE_KEYS))
            event[key] = _affix(draw, event.get(key))
        elif mutation == "detail-drop":
            detail.pop(draw(st.sampled_from(DETAIL_KEYS)), None)
        elif mutation == "detail-replace":
            detail[draw(st.sampled_from(DETAIL_KEYS))] = draw(VALUES)
        elif mutation == "detail-affix":
            key = draw(st.sampled_from(DETAIL_KEYS))
            detail[key] = _affix(draw, detail.get(key))
        elif mutation == "whole-detail":
            event["detail"] = draw(JSON)
        else:
            event[draw(st.text(max_size=12))] = draw(JSON)
    return event


def arbitrary_input() -> st.SearchStrategy[Any]:
    """Anything json.loads can give, and dictionaries shaped like envelopes with random values."""
    shaped = st.fixed_dictionaries({}, optional=dict.fromkeys(ENVELOPE_KEYS, VALUES))
    return st.one_of(JSON, shaped)


# --- the properties -------------------------------------------------------------------------
_STRICT = {
    "event_id": re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}", re.ASCII),
    "account": re.compile(r"[0-9]{12}", re.ASCII),
    "region": re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}", re.ASCII),
    "instance_id": re.compile(r"i-[0-9a-f]{8}([0-9a-f]{9})?", re.ASCII),
}


def parse_stage(target: Target, event: Any) -> InterruptionEvent | None:
    """What the entry point does with an event before acting: None when it is a MalformedEvent;
    any other exception escapes (and fails the property)."""
    try:
        parsed = target.normalise(event)
        check_event_time(parsed, NOW)
    except MalformedEvent:
        return None
    return parsed


def assert_valid(target: Target, parsed: InterruptionEvent) -> bool:
    """An InterruptionEvent the rest of the core may trust: exact envelope fields, an aware time
    in the accepted window, the kind and detail of this normaliser."""
    for key, pattern in _STRICT.items():
        value = getattr(parsed, key)
        assert isinstance(value, str), f"{key} {value!r} accepted"
        assert pattern.fullmatch(value), f"{key} {value!r} accepted"
    assert parsed.time.tzinfo is not None
    assert parsed.time.utcoffset() is not None
    assert NOW - datetime.timedelta(days=15) <= parsed.time <= NOW + datetime.timedelta(minutes=5)
    if target.name == "spot_interruption":
        assert parsed.kind is EventKind.SPOT_INTERRUPTION
        assert parsed.detail in ("terminate", "stop", "hibernate")
    elif target.name == "rebalance_recommendation":
        assert parsed.kind is EventKind.REBALANCE_RECOMMENDATION
    else:
        assert parsed.kind is state_change.KIND_BY_STATE[parsed.detail]


def check_round_trip(target: Target, case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    event, expected = case
    parsed = parse_stage(target, event)
    assert parsed is not None, f"a valid envelope was rejected: {event}"
    assert_valid(target, parsed)
    got = {key: getattr(parsed, key) for key in expected}
    assert got == expected


def check_hostile(target: Target, event: Any) -> str:
    """The verdict on one hostile input: "malformed", or "accepted" with every field exact."""
    parsed = parse_stage(target, event)
    if parsed is None:
        return "malformed"
    assert_valid(target, parsed)
    return "accepted"


# Profiles: "ci" for make test (a few thousand cases in all), "fuzz" for make fuzz.
COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=250, **COMMON)
# per normaliser and kind of input; make fuzz: valid + mutated + arbitrary >= 10,000 per normaliser
FUZZ_EXAMPLES = {"valid": 2000, "mutated": 5000, "arbitrary": 3000}
