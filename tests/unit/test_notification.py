"""The SNS notification of a handled event and the handler's result name its cluster and its
account (issue 21: one deployment for many clusters and accounts, where the cluster's name alone
may be ambiguous: two accounts can each have a cluster `prod`)."""

from __future__ import annotations

from typing import Any

import pytest

from localeks.lambda_runtime import LocalContext
from serverless_nth import entrypoint, report
from serverless_nth.events import spot_interruption
from serverless_nth.fleet import Fleet, Route
from serverless_nth.report import HandlerResult
from serverless_nth.service import Service
from tests.eventfiles import load_event

MEMBER = "111111111111"


class Captured:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, subject: str, message: dict[str, Any]) -> str | None:
        self.sent.append((subject, message))
        return None


def test_the_notification_names_the_cluster_and_the_account_of_the_event() -> None:
    event = spot_interruption.normalise(load_event("spot-interruption", now=True) | {"account": MEMBER})
    result = HandlerResult("cordoned", event.kind.value, event.instance_id, "prod", account=event.account, node="n1")
    notifier = Captured()
    report.notify(notifier, event, result)  # type: ignore[arg-type]
    ((subject, message),) = notifier.sent
    assert (message["cluster"], message["account"]) == ("prod", MEMBER)
    assert "prod" in subject
    assert (result.as_dict()["cluster"], result.as_dict()["account"]) == ("prod", MEMBER)


def test_the_handler_s_result_names_the_event_s_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTER_NAME", "unit")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("MEMBER_ACCOUNTS", MEMBER)
    monkeypatch.setattr(Fleet, "route", lambda self, event, home, known=None: Route(self.home()))
    monkeypatch.setattr(Service, "_decide", lambda self, *args: None)  # nothing to do: the result as it starts
    handler = entrypoint.make_handler(spot_interruption.normalise, "spot-interruption")
    result = handler(load_event("spot-interruption", now=True) | {"account": MEMBER}, LocalContext("f", 60, "512"))
    assert (result["cluster"], result["account"]) == ("unit", MEMBER)
