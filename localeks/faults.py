"""Fault injection for the reliability suite (tests/reliability): proxies that stand between the
functions and the local EKS and answer wrongly on purpose, and the pause of a control-plane part.

- ``KubeFaultProxy``: a TLS proxy in front of kube-apiserver. It terminates TLS with the API
  server's own certificate (issued by the cluster CA in ``<state>/pki``, valid for 127.0.0.1), so
  the functions verify it against the CA that DescribeCluster returns, as they verify the real one.
  Rules inject, per request or for a time window: an HTTP status without forwarding (401, 429 with
  Retry-After, 5xx), a stall (the answer, or the request, held N seconds), a lost answer (the
  request is forwarded and served, then the connection is closed without a reply), and a 2xx whose
  body is not JSON (the request served, its answer replaced).
- ``AwsFaultProxy``: an HTTP proxy in front of moto. It throttles EC2 actions
  (``RequestLimitExceeded``, as EC2 answers), loses the answer of an EC2 or Auto Scaling action
  (the request served by moto, the connection then closed unanswered) and rewrites
  DescribeCluster's endpoint to a ``KubeFaultProxy``.
- ``component_pid`` / ``paused``: SIGSTOP and SIGCONT a child of the supervisor (kube-apiserver,
  etcd). The supervisor takes down the whole cluster when a child exits, so a part is paused,
  never killed.

The functions are pointed at the proxies with the SDK's own service-specific endpoint variables
(``AWS_ENDPOINT_URL_EKS``, ``AWS_ENDPOINT_URL_EC2``, ``AWS_ENDPOINT_URL_AUTO_SCALING``; see
``function_env``), so the product code has
no test branch and STS (the token's signature) still goes to moto directly.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localeks.fault_rules import (  # noqa: F401 (the names tests use from here)
    APF_429,
    BUDGETS,
    EVICTION,
    NODE,
    POD,
    PODS,
    UNAUTHORIZED,
    Drop,
    Fault,
    Garbage,
    Match,
    Rule,
    Seen,
    Stall,
    Status,
    _RuleBook,
)

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade", "te"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:  # the handshake in the connection's own thread, not the accept loop
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class _Proxy:
    """What both proxies share: a threaded server, its rules and its log."""

    scheme = "http"

    def __init__(self) -> None:
        self.book = _RuleBook()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def add(self, rule: Rule) -> Rule:
        return self.book.add(rule)

    def clear(self) -> None:
        """Removes every rule and forgets what was seen (between tests)."""
        self.book.clear()

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """The requests answered (or dropped) so far, in the order they ended."""
        return self.book.requests(method, path)

    def in_flight(self, method: str | None = None, path: str | None = None) -> int:
        """Requests that arrived and are not answered yet."""
        return self.book.in_flight(method, path)

    def _start(self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None) -> None:
        server = _Server(("127.0.0.1", 0), handler)
        server.tls = tls
        server.proxy = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, name=f"{type(self).__name__}", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def proxy(self) -> Any:
        return self.server.proxy  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _relay(self, response: http.client.HTTPResponse, body: bytes | None = None) -> None:
        """Sends the upstream answer on: whole when its length is known (or ``body`` replaces it),
        chunk by chunk as it comes otherwise (a watch)."""
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        if body is None and (response.chunked or response.length is None):
            self.send_response(response.status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                while True:
                    chunk = response.read1(65536)
                    if not chunk:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                self.close_connection = True
            return
        data = response.read() if body is None else body
        self.send_response(response.status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


# --- kube-apiserver -------------------------------------------------------------------------
class KubeFaultProxy(_Proxy):
    """A TLS proxy in front of kube-apiserver that injects the faults its rules say."""

    scheme = "https"

    def __init__(self, upstream: str, pki: Path) -> None:
        super().__init__()
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 443
        self.client_tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # the API server's own certificate: issued by the cluster CA, valid for 127.0.0.1
        server_tls.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
        self._start(_KubeHandler, server_tls)

    def upstream(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.upstream_host, self.upstream_port, context=self.client_tls, timeout=300)


class _KubeHandler(_Handler):
    def _serve(self) -> None:
        proxy: KubeFaultProxy = self.proxy
        arrived = time.time()
        parts = urlsplit(self.path)
        body = self._body()
        ticket = proxy.book.arrived(self.command, parts.path)
        fault = proxy.book.decide(self.command, parts.path)
        status: int | None = None
        try:
            status = self._answer(proxy, fault, body)
        finally:
            name = fault.name if fault else None
            proxy.book.record(Seen(arrived, self.command, parts.path, parts.query, name, status, time.time()), ticket)

    def _answer(self, proxy: KubeFaultProxy, fault: Fault | None, body: bytes) -> int | None:
        if isinstance(fault, Status):
            reply = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": fault.message,
                "code": fault.code,
            }
            headers = {"Content-Type": "application/json"}
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            self._reply(fault.code, json.dumps(reply).encode(), headers)
            return fault.code
        if isinstance(fault, Stall) and fault.before:
            time.sleep(fault.seconds)
        upstream = proxy.upstream()
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            if isinstance(fault, Drop):
                response.read()  # served by the API server; the client never hears of it
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return None
            if isinstance(fault, Garbage):
                response.read()
                self._reply(fault.status, fault.body, {"Content-Type": "text/html"})
                return fault.status
            if isinstance(fault, Stall):
                data = response.read()
                time.sleep(fault.seconds)
                self._relay(response, data)
                return response.status
            self._relay(response)
            return response.status
        except (OSError, http.client.HTTPException):
            self.close_connection = True
            return None
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815


# --- moto (EC2, EKS) ------------------------------------------------------------------------
@dataclass
class AwsRule:
    """Throttle an AWS action (``service`` as in the request's credential scope), or with
    ``lose_answer`` let moto serve it and close the connection without its answer."""

    service: str
    action: str
    code: str = "RequestLimitExceeded"
    times: int | None = None
    injected: int = 0
    lose_answer: bool = False


class AwsFaultProxy(_Proxy):
    """An HTTP proxy in front of moto: throttles EC2 actions as EC2 does, and points
    DescribeCluster's endpoint at ``kube_url`` (a KubeFaultProxy) when it is set."""

    def __init__(self, upstream: str, kube_url: str | None = None) -> None:
        super().__init__()
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.kube_url = kube_url
        self.aws_rules: list[AwsRule] = []
        self._start(_AwsHandler, None)

    def throttle(self, action: str, service: str = "ec2", times: int | None = None) -> AwsRule:
        rule = AwsRule(service, action, times=times)
        with self.book.lock:
            self.aws_rules.append(rule)
        return rule

    def lose_answer(self, action: str, service: str, times: int | None = None) -> AwsRule:
        rule = AwsRule(service, action, code="lost-answer", times=times, lose_answer=True)
        with self.book.lock:
            self.aws_rules.append(rule)
        return rule

    def clear(self) -> None:
        super().clear()
        with self.book.lock:
            self.aws_rules.clear()

    def decide_aws(self, service: str, action: str) -> AwsRule | None:
        with self.book.lock:
            for rule in self.aws_rules:
                if rule.service == service and rule.action == action:
                    if rule.times is not None and rule.injected >= rule.times:
                        continue
                    rule.injected += 1
                    return rule
        return None


_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


class _AwsHandler(_Handler):
    def _serve(self) -> None:
        proxy: AwsFaultProxy = self.proxy
        arrived = time.time()
        body = self._body()
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        service = scope.group(1) if scope else ""
        parts = urlsplit(self.path)
        action = ""
        if service in ("ec2", "autoscaling"):  # both speak the query protocol: the action is in the body
            action = (parse_qs(body.decode(errors="replace")).get("Action") or [""])[0]
        elif service == "eks" and self.command == "GET" and parts.path.startswith("/clusters/"):
            action = "DescribeCluster"
        label = f"{service}:{action}" if action else service
        rule = proxy.decide_aws(service, action) if action else None
        if rule is not None and not rule.lose_answer:
            error = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                f"<Code>{rule.code}</Code><Message>Request limit exceeded.</Message>"
                "</Error></Errors><RequestID>00000000-0000-4000-8000-000000000000</RequestID></Response>"
            )
            self._reply(503, error.encode(), {"Content-Type": "text/xml;charset=UTF-8"})
            proxy.book.record(Seen(arrived, self.command, label, parts.query, rule.code, 503, time.time()))
            return
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
        status: int | None = None
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            status = response.status
            data = response.read()
            if rule is not None:  # lose_answer: served by moto; the client never hears of it
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            if action == "DescribeCluster" and proxy.kube_url and status == 200:
                reply = json.loads(data)
                reply["cluster"]["endpoint"] = proxy.kube_url
                data = json.dumps(reply).encode()
            self._relay(response, data)
        except (OSError, http.client.HTTPException):
            self.close_connection = True
        finally:
            upstream.close()
            fault = rule.code if rule is not None else None
            proxy.book.record(Seen(arrived, self.command, label, parts.query, fault, status, time.time()))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815


def function_env(aws: AwsFaultProxy) -> dict[str, str]:
    """Environment overrides that send a function's EC2, EKS and Auto Scaling calls through ``aws``
    (and so its Kubernetes requests through the KubeFaultProxy that ``aws`` names); STS stays on moto."""
    return {"AWS_ENDPOINT_URL_EC2": aws.url, "AWS_ENDPOINT_URL_EKS": aws.url, "AWS_ENDPOINT_URL_AUTO_SCALING": aws.url}


# --- pausing a part of the control plane ----------------------------------------------------
def component_pid(state: Path, name: str) -> int:
    """The pid of the supervisor's child ``name`` (``kube-apiserver``, ``etcd``, ...)."""
    supervisor = int((state / "supervisor.pid").read_text())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == supervisor and os.path.basename(argv0) == name:
            return int(entry.name)
    raise LookupError(f"no {name} under the supervisor {supervisor} of {state}")


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the time of the block; SIGCONT however the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
