"""The Kubernetes client's retry rules, against a local HTTP server that answers what the test
tells it to (status codes only: what is retried, how often, and what is not)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serverless_nth.kube.client import Conflict, KubeApi, KubePermanentError, TooManyRequests


class Script:
    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.seen: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.seen_auth = self.headers.get("Authorization")
            script.seen.append(f"{self.command} {self.path} {self.seen_auth}")
            status, headers = script.answers.pop(0) if script.answers else (200, {})
            body = json.dumps({"kind": "Status", "message": f"answer {status}"}).encode()
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
