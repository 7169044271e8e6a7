"""Local extension of moto (labelled local in docs/local-eks.md): DescribeInstances by instance id
answered from moto's own earlier answer while nothing has changed since, so that the one-process
local EC2 holds a wave of 1,000 concurrent callers.

moto renders each DescribeInstances answer with its generic, model-driven serializer: about 5 ms
of CPU for one instance, under one GIL, shared with the token webhook. A thousand events in
flight ask for a thousand instances at once, and with the machine's 2 cores busy with the API
server and the handlers, the last answers came after the handlers' 10 s read timeout
(bench/results/2026-12-03: 6 of 1,000 events failed so).

Here a DescribeInstances request whose only parameters are ``InstanceId.N`` (the handlers'
request) is answered with the status, headers and body moto gave the same request (same
credentials, region and ids) before, as long as moto's state has not changed since: a fresh
``x-amzn-requestid`` is the only difference. What counts as a change, conservatively: every
request to the server that is not a read (a query-protocol ``Action`` that does not start with
Describe, Get or List, or any method but GET), before and after it runs, and the instance state
timers of localeks/ec2_states.py. Nothing else changes EC2's instances in this process. An answer
rendered while a change ran is never kept. Errors (an unknown id) are never kept: moto answers
those each time. ``warm`` asks moto once per instance, so that a wave finds the answers ready.
"""

from __future__ import annotations

import io
import re
import secrets
import string
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_lock = threading.Lock()
_generation = 0
# request key -> (generation, status, headers, body)
_answers: dict[tuple[str, ...], tuple[int, str, list[tuple[str, str]], bytes]] = {}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/ec2/aws4_request")
_READS = ("Describe", "Get", "List")
_ID_CHARS = string.ascii_letters + string.digits


def changed() -> None:
    """moto's state changed (or may have): every kept answer is stale."""
    global _generation
    with _lock:
        _generation += 1
        _answers.clear()


def install() -> None:
    """Wraps moto's WSGI application once, in this process (the supervisor that serves moto)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication, "_localeks_describe_cache", False):
        return
    DomainDispatcherApplication.__call__ = _answering(DomainDispatcherApplication.__call__)  # type: ignore[method-assign]
    DomainDispatcherApplication._localeks_describe_cache = True  # type: ignore[attr-defined]


def warm(ec2: Any, instance_ids: list[str], threads: int = 4) -> None:
    """Asks for each instance once with ``ec2`` (a client with the handlers' credentials), on a
    few threads (moto renders one at a time anyway)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda instance_id: ec2.describe_instances(InstanceIds=[instance_id]), instance_ids))


def _answering(original: Callable[[Any, dict[str, Any], Any], Iterable[bytes]]) -> Any:
    def call(app: Any, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = b""
        if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):  # the query protocol's
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
        params = _params(environ, body)
        key = _key(environ, params)
        if key is None:
            if _reads_only(environ, params):
                return original(app, environ, start_response)
            changed()
            try:
                return list(original(app, environ, start_response))
            finally:
                changed()
        with _lock:
            kept = _answers.get(key)
            generation = _generation
        if kept is not None and kept[0] == generation:
            _, status, headers, answer = kept
            start_response(status, [_fresh_id(h) for h in headers])
            return [answer]
        seen: dict[str, Any] = {}

        def keep_start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            seen.update(status=status, headers=list(headers))
            return start_response(status, headers, *rest)

        answer = b"".join(original(app, environ, keep_start))
        if seen.get("status", "").startswith("200"):
            with _lock:
                if _generation == generation:
                    _answers[key] = (generation, seen["status"], seen["headers"], answer)
        return [answer]

    return call


def _params(environ: dict[str, Any], body: bytes) -> dict[str, list[str]]:
    params = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    for name, values in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items():
        params.setdefault(name, []).extend(values)
    return params


def _key(environ: dict[str, Any], params: dict[str, list[str]]) -> tuple[str, ...] | None:
    """The request's key when it is a DescribeInstances of instance ids and nothing else."""
    if params.get("Action") != ["DescribeInstances"]:
        return None
    credential = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if credential is None or any(
        name not in ("Action", "Version") and not re.fullmatch(r"InstanceId\.\d+", name) for name in params
    ):
        return None
    ids = sorted((int(name.split(".")[1]), values[0]) for name, values in params.items() if name.startswith("Instance"))
    if not ids or any(len(values) != 1 for values in params.values()):
        return None
    access_key, region = credential.groups()
    return (access_key, region, params.get("Version", [""])[0], *(instance_id for _, instance_id in ids))


def _reads_only(environ: dict[str, Any], params: dict[str, list[str]]) -> bool:
    action = params.get("Action", [""])[0]
    if action:
        return action.startswith(_READS)
    return bool(environ.get("REQUEST_METHOD") == "GET")


def _fresh_id(header: tuple[str, str]) -> tuple[str, str]:
    name, value = header
    if name.lower() == "x-amzn-requestid":
        return name, "".join(secrets.choice(_ID_CHARS) for _ in value)
    return header
