"""The entry point classifies every failure: a stage, an Errors metric and an outcome, whatever
raised it, so the dashboard and the alarms see it; and the invocation still fails, for a retry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localeks.lambda_runtime import LocalContext
from serverless_nth import entrypoint
from serverless_nth.events import spot_interruption
from serverless_nth.events.model import InterruptionEvent
from serverless_nth.service import Service
from tests.eventfiles import load_event


def emf(output: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    return [line for line in lines if "_aws" in line]


@pytest.fixture(autouse=True)
def handler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTER_NAME", "unit")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


@pytest.mark.parametrize("error", [ValueError("surprise"), OverflowError("date value out of range")])
def test_an_unforeseen_failure_in_the_service_is_classified_and_raised(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception
) -> None:
    def explode(self: Service, *args: Any) -> Any:
        raise error

    monkeypatch.setattr(Service, "_handle", explode)
    handler = entrypoint.make_handler(spot_interruption.normalise, "spot-interruption")
    with pytest.raises(type(error)):
        handler(load_event("spot-interruption", now=True), LocalContext("f", 60, "512"))
    records = emf(capsys.readouterr().out)
    assert [r["stage"] for r in records if "Errors" in r] == ["internal"]
    received = [r for r in records if "EventsReceived" in r]
    assert received  # the event was counted, and with the outcome the dashboard groups by
    assert [(r["event_kind"], r["outcome"]) for r in received] == [("spot-interruption", "error")]


def test_an_unforeseen_failure_while_parsing_is_classified_and_raised(capsys: pytest.CaptureFixture[str]) -> None:
    def broken_parser(event: Any) -> InterruptionEvent:
        raise KeyError("detail")

    handler = entrypoint.make_handler(broken_parser, "spot-interruption")
    with pytest.raises(KeyError):
        handler(load_event("spot-interruption", now=True), LocalContext("f", 60, "512"))
    assert [r["stage"] for r in emf(capsys.readouterr().out) if "Errors" in r] == ["parse"]


def test_an_event_too_old_for_a_replay_is_malformed(capsys: pytest.CaptureFixture[str]) -> None:
    handler = entrypoint.make_handler(spot_interruption.normalise, "spot-interruption")
    event = load_event("spot-interruption")
    event["time"] = "2020-01-01T00:00:00Z"
    with pytest.raises(Exception, match="older than 15 days"):
        handler(event, LocalContext("f", 60, "512"))
    records = emf(capsys.readouterr().out)
    assert [r["stage"] for r in records if "Errors" in r] == ["parse"]
    assert [r["outcome"] for r in records if "MalformedEvents" in r] == ["malformed"]
