"""A stand-in for KubeApi that answers from a script and records every request as sent, for unit
tests of the code that builds requests (node lookup, cordon, pod listing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serverless_nth.kube.client import KubeApi

Answer = dict[str, Any] | Exception | Callable[["Request"], dict[str, Any]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str] | None
    body: Any
    content_type: str
    stage: str


class FakeApi(KubeApi):
    """``answers`` maps (method, path) to a list of answers, used in order (the last one repeats):
    a dict is returned, an exception raised, a callable called with the request."""

    def __init__(self, answers: dict[tuple[str, str], list[Answer]] | None = None) -> None:
        self.answers = answers or {}
        self.sent: list[Request] = []
        self.requests_sent = 0

    def request(  # type: ignore[override]
        self,
        method: str,
        api_path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        stage: str = "kube",
        retry_temporary: bool = True,
        timeout_seconds: float | None = None,
        give_up_at: float | None = None,
    ) -> dict[str, Any]:
        request = Request(method, api_path, dict(query) if query is not None else None, body, content_type, stage)
        self.sent.append(request)
        self.requests_sent += 1
        script = self.answers.get((method, api_path))
        if not script:
            raise AssertionError(f"unexpected request {method} {api_path}")
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer
