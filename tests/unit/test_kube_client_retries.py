"""The Kubernetes client's retry rules, against a local HTTP server that answers what the test
tells it to (status codes only: what is retried, how often, and what is not)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serverless_nth.kube.client import (
    Conflict,
    KubeApi,
    KubePermanentError,
    KubeTemporaryError,
    TooManyRequests,
    Unauthorized,
    longest_failure,
)


class Script:
    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]] | tuple[int, dict[str, str], bytes]] = []
        self.times: list[float] = []
        self.seen: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.seen_auth = self.headers.get("Authorization")
            script.seen.append(f"{self.command} {self.path} {self.seen_auth}")
            script.times.append(time.monotonic())
            answer = script.answers.pop(0) if script.answers else (200, {})
            status, headers = answer[0], answer[1]
            body = (
                answer[2]
                if len(answer) == 3
                else json.dumps({"kind": "Status", "message": f"answer {status}"}).encode()
            )
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = _answer  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()


def make_api(endpoint: str, tokens: list[str]) -> KubeApi:
    return KubeApi(endpoint, b"", lambda: tokens[-1], lambda: tokens.append(f"t{len(tokens)}"), 5, 4)


def test_throttled_requests_are_retried_honouring_retry_after(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(429, {"Retry-After": "0"}), (503, {}), (200, {})]
    api = make_api(endpoint, ["t0"])
    assert api.request("GET", "/api/v1/nodes/n1")["message"] == "answer 200"
    assert len(script.seen) == 3
    assert api.requests_sent == 3


def test_retries_give_up_after_four_attempts(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(429, {"Retry-After": "0"})] * 5
    with pytest.raises(TooManyRequests):
        make_api(endpoint, ["t0"]).request("GET", "/api/v1/nodes/n1")
    assert len(script.seen) == 4


def test_evictions_are_not_retried_here(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(429, {})]
    with pytest.raises(TooManyRequests):
        make_api(endpoint, ["t0"]).request(
            "POST", "/api/v1/namespaces/a/pods/b/eviction", body={}, retry_temporary=False
        )
    assert len(script.seen) == 1


def test_conflicts_and_permanent_errors_are_not_retried(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(409, {}), (403, {})]
    api = make_api(endpoint, ["t0"])
    with pytest.raises(Conflict):
        api.request("PATCH", "/api/v1/nodes/n1", body={})
    with pytest.raises(KubePermanentError):
        api.request("GET", "/api/v1/nodes/n1")
    assert len(script.seen) == 2


def test_a_401_makes_a_new_token_once(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(401, {}), (200, {})]
    tokens = ["t0"]
    make_api(endpoint, tokens).request("GET", "/version")
    assert [s.rsplit(" ", 1)[1] for s in script.seen] == ["t0", "t1"]


def test_a_401_that_persists_is_temporary_and_retried_with_new_tokens(server: tuple[str, Script]) -> None:
    # the authenticator refused for half a second: no verdict on the request, a new token each time
    endpoint, script = server
    script.answers = [(401, {}), (401, {}), (200, {})]
    tokens = ["t0"]
    assert make_api(endpoint, tokens).request("GET", "/api/v1/nodes/n1")["message"] == "answer 200"
    assert [s.rsplit(" ", 1)[1] for s in script.seen] == ["t0", "t1", "t2"]


def test_a_401_is_never_permanent(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(401, {}), (401, {})]
    with pytest.raises(Unauthorized) as caught:
        make_api(endpoint, ["t0"]).request("POST", "/api/v1/namespaces/a/pods/b/eviction", retry_temporary=False)
    assert isinstance(caught.value, KubeTemporaryError)
    assert not isinstance(caught.value, KubePermanentError)


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b"[1, 2]", b'{"truncated": '])
def test_a_2xx_answer_that_is_not_a_json_object_is_a_temporary_failure(server: tuple[str, Script], body: bytes) -> None:
    endpoint, script = server
    script.answers = [(200, {}, body)]
    with pytest.raises(KubeTemporaryError, match=r"not a JSON object|not JSON"):
        make_api(endpoint, ["t0"]).request("GET", "/api/v1/nodes/n1", retry_temporary=False)


@pytest.mark.parametrize("seconds", [0.6, 2.0])
def test_retry_after_is_honoured(server: tuple[str, Script], seconds: float) -> None:
    endpoint, script = server
    script.answers = [(429, {"Retry-After": str(seconds)}), (200, {})]
    make_api(endpoint, ["t0"]).request("GET", "/api/v1/nodes/n1")
    # as the server asked: the client's own backoff would be 0.2 s, and never above 1 s
    assert script.times[1] - script.times[0] >= seconds - 0.05


@pytest.mark.parametrize("header", ["-5", "nan", "inf", "soon"])
def test_an_unusable_retry_after_falls_back_to_the_backoff(server: tuple[str, Script], header: str) -> None:
    endpoint, script = server
    script.answers = [(503, {"Retry-After": header}), (200, {})]
    make_api(endpoint, ["t0"]).request("GET", "/api/v1/nodes/n1")
    assert 0.15 <= script.times[1] - script.times[0] < 0.5


def test_the_causes_of_a_refusal_are_read(server: tuple[str, Script]) -> None:
    endpoint, script = server
    status = {
        "kind": "Status",
        "message": 'pods "b" is forbidden: unable to create new content in namespace a because it is being terminated',
        "reason": "Forbidden",
        "details": {
            "name": "b",
            "kind": "pods",
            "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}],
        },
        "code": 403,
    }
    script.answers = [(403, {}, json.dumps(status).encode())]
    with pytest.raises(KubePermanentError) as caught:
        make_api(endpoint, ["t0"]).request("POST", "/api/v1/namespaces/a/pods/b/eviction", retry_temporary=False)
    assert caught.value.causes == ("NamespaceTerminating",)


def test_a_retry_after_of_zero_still_waits_the_backoff(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(429, {"Retry-After": "0"}), (200, {})]
    started = time.monotonic()
    make_api(url, ["t0"]).request("GET", "/api/v1/nodes/n1")
    assert time.monotonic() - started >= 0.2  # the first backoff, not at once


def test_no_retry_waits_past_give_up_at(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(429, {"Retry-After": "5"}), (200, {})]
    started = time.monotonic()
    with pytest.raises(TooManyRequests):
        make_api(url, ["t0"]).request("GET", "/api/v1/nodes/n1", give_up_at=time.time() + 1)
    assert time.monotonic() - started < 1


def test_a_stalled_api_server_fails_a_request_within_longest_failure() -> None:
    """A lifecycle drain's pauses leave room for one failing request (issue 20.4): every attempt
    times out against a server that accepts and never answers, and the error comes within
    ``longest_failure`` of the request timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepted by the kernel, never answered
    try:
        api = KubeApi(f"http://127.0.0.1:{listener.getsockname()[1]}", b"", lambda: "t", lambda: None, 0.3, 4)
        started = time.monotonic()
        with pytest.raises(KubeTemporaryError):
            api.request("GET", "/api/v1/nodes/n1")
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert api.requests_sent == 4
    assert longest_failure(0.3) - 0.3 < elapsed <= longest_failure(0.3) + 0.5, elapsed
