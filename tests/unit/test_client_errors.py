"""The client's mapping of an HTTP answer to a typed error (what a retry can do about it), of the
Retry-After header to seconds, and of a 2xx body to a JSON object: the functions themselves, so
every status, header and body can be tried without a server."""

from __future__ import annotations

import json

import pytest

from serverless_nth.errors import PermanentError, TemporaryError
from serverless_nth.kube.client import (
    Conflict,
    KubePermanentError,
    KubeTemporaryError,
    NotFound,
    TooManyRequests,
    Unauthorized,
    _error,
    _json,
    _retry_after,
)


def status_body(message: str, causes: list[dict[str, str]] | None = None) -> bytes:
    body: dict[str, object] = {"kind": "Status", "message": message}
    if causes is not None:
        body["details"] = {"causes": causes}
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("status", "kind", "temporary"),
    [
        (401, Unauthorized, True),
        (404, NotFound, False),
        (409, Conflict, True),
        (429, TooManyRequests, True),
        (500, KubeTemporaryError, True),
        (503, KubeTemporaryError, True),
        (504, KubeTemporaryError, True),
        (400, KubePermanentError, False),
        (403, KubePermanentError, False),
        (422, KubePermanentError, False),
        (499, KubePermanentError, False),
    ],
)
def test_each_status_is_typed_by_what_a_retry_can_do(status: int, kind: type[Exception], temporary: bool) -> None:
    error = _error(status, status_body("why"), None, "drain")
    assert type(error) is kind
    assert isinstance(error, TemporaryError if temporary else PermanentError)
    assert not isinstance(error, PermanentError if temporary else TemporaryError)
    assert isinstance(error, KubeTemporaryError | KubePermanentError)
    assert (error.status, error.reason, error.stage) == (status, "why", "drain")
    assert str(error) == f"Kubernetes API {status}: why"


@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_retry_after_is_kept_where_a_retry_is_allowed(status: int) -> None:
    assert _error(status, b"", "2.5", "kube").retry_after == 2.5


@pytest.mark.parametrize("status", [400, 403, 404, 409])
def test_no_retry_after_where_there_is_no_retry_to_time(status: int) -> None:
    assert _error(status, b"", "2.5", "kube").retry_after is None


def test_the_causes_of_a_refusal_are_read_by_type_else_reason() -> None:
    body = status_body(
        "forbidden",
        [{"type": "NamespaceTerminating"}, {"reason": "FieldValueInvalid"}, {"type": "", "reason": "Other"}, {}],
    )
    error = _error(403, body, None, "drain")
    assert isinstance(error, KubePermanentError)
    assert error.causes == ("NamespaceTerminating", "FieldValueInvalid", "Other", "")
    assert _error(403, status_body("forbidden", []), None, "drain").causes == ()  # type: ignore[attr-defined]
    assert _error(403, status_body("forbidden"), None, "drain").causes == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>bad gateway</html>", "<html>bad gateway</html>"),  # not JSON: the body itself
        (b"[1, 2]", "[1, 2]"),  # JSON, but not a Status
        (json.dumps({"kind": "Status"}).encode(), '{"kind": "Status"}'),  # a Status without a message
        (b"x" * 400, "x" * 300),  # cut to 300 characters
        (b"caf\xc3\xa9 \xff", "café \ufffd"),  # undecodable bytes replaced, not an exception
    ],
)
def test_without_a_status_message_the_reason_is_the_body(body: bytes, reason: str) -> None:
    error = _error(502, body, None, "kube")
    assert error.reason == reason  # type: ignore[attr-defined]


def test_a_status_with_unreadable_details_still_gives_its_message() -> None:
    body = json.dumps({"kind": "Status", "message": "conflict", "details": {"causes": "not a list of objects"}})
    error = _error(409, body.encode(), None, "cordon")
    assert isinstance(error, Conflict)
    assert "conflict" in error.reason


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.25", 0.25),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("-1", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),  # an HTTP date: not what the API server sends
    ],
)
def test_retry_after_is_seconds_or_nothing(header: str | None, seconds: float | None) -> None:
    assert _retry_after(header) == seconds


@pytest.mark.parametrize(
    ("data", "parsed"),
    [(b'{"kind": "Node"}', {"kind": "Node"}), (b"{}", {}), (b"", {})],
)
def test_a_2xx_body_is_a_json_object(data: bytes, parsed: dict[str, str]) -> None:
    assert _json(data, 200, "drain") == parsed


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<html>proxy</html>", "answer is not JSON: b'<html>proxy</html>'"),
        (b'{"truncated": ', "answer is not JSON: b'{\"truncated\": '"),
        (b"[1, 2]", "answer is not a JSON object: b'[1, 2]'"),
        (b'"a string"', "answer is not a JSON object: b'\"a string\"'"),
        (b"x" * 150, f"answer is not JSON: {b'x' * 100!r}"),  # quoted to 100 bytes
    ],
)
def test_a_2xx_body_that_is_not_a_json_object_is_a_temporary_failure(data: bytes, message: str) -> None:
    with pytest.raises(KubeTemporaryError) as caught:
        _json(data, 201, "cordon")
    assert type(caught.value) is KubeTemporaryError
    assert (caught.value.status, caught.value.reason, caught.value.stage) == (201, message, "cordon")
    assert caught.value.retry_after is None


def test_an_answer_that_is_no_status_has_no_causes() -> None:
    error = _error(403, b"<html>forbidden by a proxy</html>", None, "drain")
    assert isinstance(error, KubePermanentError)
    assert error.causes == ()


def test_a_long_status_without_a_message_is_cut_to_300_characters() -> None:
    body = json.dumps({"kind": "Status", "details": {"name": "n" * 400}}).encode()
    error = _error(500, body, None, "kube")
    assert error.reason == body.decode()[:300]  # type: ignore[attr-defined]


def test_a_long_2xx_body_that_is_not_an_object_is_quoted_to_100_bytes() -> None:
    data = json.dumps(list(range(100))).encode()
    with pytest.raises(KubeTemporaryError) as caught:
        _json(data, 200, "drain")
    assert caught.value.reason == f"answer is not a JSON object: {data[:100]!r}"
