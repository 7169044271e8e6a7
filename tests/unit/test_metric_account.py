"""The dimension ``account`` (issue 21): a multi-account deployment (MemberAccounts or
OrganizationId) adds it to every metric the dashboard draws, Errors and ClusterTagsInvalid
included, so that its SEARCH schema (with ``account``) finds them; a single-account deployment's
dimension sets stay exactly as they were."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from localeks.lambda_runtime import LocalContext
from serverless_nth import entrypoint
from serverless_nth.aws.eks import ClusterEndpoint, EksAccess
from serverless_nth.aws.notify import Notifier
from serverless_nth.config import Settings
from serverless_nth.events import spot_interruption
from serverless_nth.fleet import Fleet, Route
from serverless_nth.observability import ERROR_DIMENSIONS, EVENT_DIMENSIONS, TAGS_DIMENSIONS, Metric, metrics
from serverless_nth.service import Service
from tests.eventfiles import load_event

MEMBER = "111111111111"


def emf(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


def dimensions(record: dict[str, Any]) -> list[list[str]]:
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    return list(directive["Dimensions"])


@pytest.fixture(autouse=True)
def handler_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CLUSTER_NAME", "unit")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "serverless-nth")  # template.yaml sets it on every function
    # one process is one deployment: the shared Metrics keeps no other test's default dimensions
    metrics.clear_default_dimensions()
    metrics.clear_metrics()
    yield
    metrics.clear_default_dimensions()
    metrics.clear_metrics()


def test_a_single_account_deployment_s_errors_keep_their_dimensions(capsys: pytest.CaptureFixture[str]) -> None:
    entrypoint.count_error("unit", "parse")
    (record,) = emf(capsys.readouterr().out)
    assert dimensions(record) == [["cluster", "stage", "service"]]
    assert {k: v for k, v in record.items() if k != "_aws"} == {
        "cluster": "unit",
        "stage": "parse",
        "service": "serverless-nth",
        "Errors": [1.0],
    }


def test_errors_carry_the_account_they_are_given(capsys: pytest.CaptureFixture[str]) -> None:
    entrypoint.count_error("unit", "parse", MEMBER)
    (record,) = emf(capsys.readouterr().out)
    assert sorted(dimensions(record)[0]) == sorted((*ERROR_DIMENSIONS, "account"))
    assert record["account"] == MEMBER


@pytest.mark.parametrize(
    ("variable", "value"), [("MEMBER_ACCOUNTS", MEMBER), ("ORGANIZATION_ID", "o-a1b2c3d4e5"), (None, None)]
)
def test_a_failed_event_s_metrics_carry_its_account_in_a_multi_account_deployment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str | None, value: str | None
) -> None:
    if variable:
        monkeypatch.setenv(variable, value or "")

    def explode(self: Service, *args: Any) -> Any:
        raise ValueError("surprise")

    monkeypatch.setattr(Service, "_handle", explode)
    # routing asks EC2 for the instance's tags; here every event is the stack's own cluster's
    monkeypatch.setattr(Fleet, "route", lambda self, event, home, known=None: Route(self.home()))
    handler = entrypoint.make_handler(spot_interruption.normalise, "spot-interruption")
    event = load_event("spot-interruption", now=True) | {"account": MEMBER}
    with pytest.raises(ValueError, match="surprise"):
        handler(event, LocalContext("f", 60, "512"))
    records = emf(capsys.readouterr().out)
    (error,) = [r for r in records if "Errors" in r]
    (received,) = [r for r in records if "EventsReceived" in r]
    extra = ("account",) if variable else ()
    assert sorted(dimensions(error)[0]) == sorted((*ERROR_DIMENSIONS, *extra))
    assert sorted(dimensions(received)[0]) == sorted((*EVENT_DIMENSIONS, *extra))
    if variable:
        assert error["account"] == received["account"] == MEMBER


@pytest.mark.parametrize("member_accounts", ["", MEMBER])
def test_cluster_tags_invalid_carries_the_account_exactly_in_a_multi_account_deployment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], member_accounts: str
) -> None:
    settings = Settings.from_env(
        {"CLUSTER_NAME": "unit", "AWS_REGION": "us-east-1", "CLUSTERS": "*", "MEMBER_ACCOUNTS": member_accounts}
    )
    tags = {"serverless-nth/drain-on-rebalance": "perhaps"}
    monkeypatch.setattr(EksAccess, "endpoint", lambda self: ClusterEndpoint("other", "https://x", b"", tags))

    class Accounts:
        def in_account(self, member: str | None, service: str) -> Any:
            return object()

    fleet = Fleet(settings, Accounts(), Notifier("", None))  # type: ignore[arg-type]
    fleet.service(MEMBER if member_accounts else None, "other")
    (record,) = [r for r in emf(capsys.readouterr().out) if Metric.CLUSTER_TAGS_INVALID in r]
    extra = ("account",) if member_accounts else ()
    assert sorted(dimensions(record)[0]) == sorted((*TAGS_DIMENSIONS, *extra))
    if member_accounts:
        assert record["account"] == MEMBER
