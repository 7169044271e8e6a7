"""The one place that sends requests to the Kubernetes API server.

It uses the official client's transport (``kubernetes.client.rest``: urllib3, TLS verified against
the cluster CA) and reads plain JSON: the generated API classes cost about 0.5 s of cold start to
import and typed deserialisation of a 110-pod list about 8x the time of ``json.loads``. Errors come
back typed as temporary (retry may help) or permanent, as in kopf. No client-side rate limit: the
API server's priority and fairness says 429 when it wants fewer requests.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

from serverless_nth.errors import PermanentError, TemporaryError
from serverless_nth.kube.transport import ApiException, Configuration, RESTClientObject  # without kubernetes.config

USER_AGENT = "serverless-nth/1.0"
_RETRY_ATTEMPTS = 4
_RETRY_BACKOFF_SECONDS = 0.2
_RETRY_MAX_BACKOFF_SECONDS = 1.0
# A Retry-After is honoured as the server says, up to this: one request must not hold a drain longer
_RETRY_AFTER_MAX_SECONDS = 10.0


def longest_failure(timeout_seconds: float) -> float:
    """How long one request can take before its error is raised, every attempt timing out (a
    stalled API server) and waiting the backoff between attempts."""
    backoffs = sum(min(_RETRY_BACKOFF_SECONDS * 2.0**i, _RETRY_MAX_BACKOFF_SECONDS) for i in range(_RETRY_ATTEMPTS - 1))
    return _RETRY_ATTEMPTS * timeout_seconds + backoffs


class KubeApiError(Exception):
    """Mixin data of every API failure: the HTTP status, the server's reason, Retry-After, and the
    cause types of its Status (``details.causes[].type``, e.g. NamespaceTerminating)."""

    status: int
    reason: str
    retry_after: float | None
    causes: tuple[str, ...] = ()


class KubeTemporaryError(TemporaryError, KubeApiError):
    def __init__(self, status: int, reason: str, retry_after: float | None = None, stage: str = "kube") -> None:
        super().__init__(f"Kubernetes API {status}: {reason}", stage=stage)
        self.status, self.reason, self.retry_after = status, reason, retry_after


class KubePermanentError(PermanentError, KubeApiError):
    def __init__(self, status: int, reason: str, stage: str = "kube", causes: tuple[str, ...] = ()) -> None:
        super().__init__(f"Kubernetes API {status}: {reason}", stage=stage)
        self.status, self.reason, self.retry_after, self.causes = status, reason, None, causes


class NotFound(KubePermanentError):
    pass


class Conflict(KubeTemporaryError):
    """409: the object changed since it was read (resourceVersion precondition), or already exists."""


class TooManyRequests(KubeTemporaryError):
    """429: API priority and fairness, or an eviction that a PodDisruptionBudget refuses."""


class Unauthorized(KubeTemporaryError):
    """401 even with a token made anew: the authenticator (or the network to it) failed, which
    says nothing about the request itself. Temporary: a later attempt, with a new token, may pass."""


def path(*segments: str) -> str:
    return "/" + "/".join(quote(s, safe="") for s in segments)


class KubeApi:
    """JSON requests to one API server; thread-safe; counts the requests it sends."""

    def __init__(
        self,
        endpoint: str,
        ca_pem: bytes,
        token: Callable[[], str],
        on_unauthorized: Callable[[], None],
        timeout_seconds: float,
        pool_size: int,
    ) -> None:
        config = Configuration(host=endpoint)
        config.ca_cert_data = ca_pem.decode()
        config.verify_ssl = True  # never turned off: the CA comes from DescribeCluster
        config.connection_pool_maxsize = pool_size
        config.retries = False  # retries are decided above, where the deadline is known
        self._rest = RESTClientObject(config)
        self._endpoint = endpoint
        self._token = token
        self._on_unauthorized = on_unauthorized
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self.requests_sent = 0

    def request(
        self,
        method: str,
        api_path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        stage: str = "kube",
        retry_temporary: bool = True,
        timeout_seconds: float | None = None,
        give_up_at: float | None = None,
    ) -> dict[str, Any]:
        """Sends one request. A temporary failure (429 from API priority and fairness, 5xx, a
        connection error) is retried up to 3 times, after the server's Retry-After (up to 10 s) but
        never sooner than a backoff from 0.2 s doubling to 1 s, unless ``retry_temporary`` is False
        (the drain schedules its own eviction retries). A retry whose wait would end after
        ``give_up_at`` (time.time()) is not made: the error is raised in time for the caller to
        report. A 409 is never retried here: the caller re-reads the object. ``timeout_seconds``
        overrides the client's request timeout for this request."""
        url = self._endpoint + api_path + ("?" + urlencode(query) if query else "")
        backoff = _RETRY_BACKOFF_SECONDS
        attempts = _RETRY_ATTEMPTS if retry_temporary else 1
        timeout = self._timeout if timeout_seconds is None else timeout_seconds
        for attempt in range(1, attempts + 1):
            try:
                return self._send(method, url, body, content_type, stage, timeout)
            except KubeTemporaryError as exc:
                if attempt == attempts or isinstance(exc, Conflict):
                    raise
                pause = min(backoff, _RETRY_MAX_BACKOFF_SECONDS)
                if exc.retry_after is not None:
                    pause = max(min(exc.retry_after, _RETRY_AFTER_MAX_SECONDS), pause)
                if give_up_at is not None and time.time() + pause > give_up_at:
                    raise
                time.sleep(pause)
                backoff *= 2
        raise AssertionError("unreachable")

    def watch(self, api_path: str, query: Mapping[str, str], stage: str = "kube") -> WatchStream:
        """Opens a watch (``watch=1`` is added); the server's ``timeoutSeconds`` in ``query`` ends it.
        Failures to open it are typed as for ``request``, without retries."""
        url = self._endpoint + api_path + "?" + urlencode({**query, "watch": "1"})
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json", "User-Agent": USER_AGENT}
        with self._lock:
            self.requests_sent += 1
        try:
            response = self._rest.request(  # type: ignore[no-untyped-call]
                "GET", url, headers=headers, _request_timeout=(self._timeout, None)
            )
        except (urllib3.exceptions.HTTPError, ApiException, OSError) as exc:
            raise KubeTemporaryError(0, f"{type(exc).__name__}: {exc}", stage=stage) from exc
        if response.status != 200:
            data = response.read()
            if response.status == 401:
                self._on_unauthorized()
            raise _error(response.status, data, response.headers.get("Retry-After"), stage)
        return WatchStream(response.response, stage)

    def _send(self, method: str, url: str, body: Any, content_type: str, stage: str, timeout: float) -> dict[str, Any]:
        for attempt in (1, 2):
            headers = {
                "Authorization": f"Bearer {self._token()}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            }
            if body is not None:
                headers["Content-Type"] = content_type
            with self._lock:
                self.requests_sent += 1
            try:
                response = self._rest.request(  # type: ignore[no-untyped-call]
                    method, url, headers=headers, body=body, _request_timeout=timeout
                )
                status = response.status
                data = response.read()
            except (urllib3.exceptions.HTTPError, ApiException, OSError) as exc:
                raise KubeTemporaryError(0, f"{type(exc).__name__}: {exc}", stage=stage) from exc
            if status == 401:
                self._on_unauthorized()  # a token the server no longer takes: make a new one
                if attempt == 1:
                    continue
            if 200 <= status < 300:
                return _json(data, status, stage)
            raise _error(status, data, response.headers.get("Retry-After"), stage)
        raise AssertionError("unreachable")


class WatchStream:
    """The events of one watch (``{"type": ..., "object": ...}``), read line by line as the server
    sends them; ``close`` (from any thread) ends a read that is waiting for the next event."""

    def __init__(self, raw: Any, stage: str) -> None:
        self._raw = raw
        self._stage = stage
        self._closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        buffer = b""
        try:
            for chunk in self._raw.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield _json(line, 200, self._stage)
        except (urllib3.exceptions.HTTPError, OSError, ValueError, AttributeError) as exc:
            # closed from another thread while this one read: http.client and urllib3 fail in many
            # ways when the connection is taken away under a read (AttributeError: its file is None)
            if self._closed:
                return
            if isinstance(exc, AttributeError):
                raise
            raise KubeTemporaryError(0, f"watch ended: {type(exc).__name__}: {exc}", stage=self._stage) from exc
        finally:
            self._raw.release_conn()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(AttributeError, ValueError, RuntimeError, OSError):
            self._raw.shutdown()  # unblocks a read waiting in another thread (urllib3 >= 2.3)
        self._raw.close()


def _json(data: bytes, status: int, stage: str) -> dict[str, Any]:
    """A 2xx answer that is not a JSON object (a proxy's page, a truncated body) is a temporary
    failure of the transport, not a result."""
    if not data:
        return {}
    try:
        parsed = json.loads(data)
    except ValueError:
        raise KubeTemporaryError(status, f"answer is not JSON: {data[:100]!r}", stage=stage) from None
    if not isinstance(parsed, dict):
        raise KubeTemporaryError(status, f"answer is not a JSON object: {data[:100]!r}", stage=stage)
    return parsed


def _retry_after(header: str | None) -> float | None:
    """Seconds, as the API server sends it; a negative, non-finite or unreadable value is ignored."""
    try:
        seconds = float(header) if header else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


def _error(status: int, data: bytes, retry_after_header: str | None, stage: str) -> Exception:
    causes: tuple[str, ...] = ()
    try:
        status_body = json.loads(data)
        reason = str(status_body.get("message", "")) or data.decode(errors="replace")[:300]
        details = status_body.get("details") or {}
        causes = tuple(str(c.get("type") or c.get("reason") or "") for c in details.get("causes") or ())
    except (ValueError, AttributeError, TypeError):
        reason = data.decode(errors="replace")[:300]
    retry_after = _retry_after(retry_after_header)
    if status == 401:
        return Unauthorized(status, reason, retry_after, stage=stage)
    if status == 404:
        return NotFound(status, reason, stage=stage)
    if status == 409:
        return Conflict(status, reason, stage=stage)
    if status == 429:
        return TooManyRequests(status, reason, retry_after, stage=stage)
    if status >= 500:
        return KubeTemporaryError(status, reason, retry_after, stage=stage)
    return KubePermanentError(status, reason, stage=stage, causes=causes)
