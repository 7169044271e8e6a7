"""aws/calls.typed_call: what a retry can do about a failed AWS call, as the adapters that share it
(EKS, STS, the backstop's Invoke of the starter) rely on."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from serverless_nth.aws.calls import typed_call
from serverless_nth.aws.functions import LongDrainStarter
from serverless_nth.errors import PermanentError, TemporaryError


def refused(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Invoke")


def fail(error: Exception) -> Any:
    raise error


@pytest.mark.parametrize(
    ("error", "server_errors", "expected"),
    [
        (refused("ThrottlingException", 400), False, TemporaryError),  # a listed code
        (refused("AccessDeniedException", 403), False, PermanentError),
        (refused("InternalError", 503), False, PermanentError),  # a 5xx counts only when asked
        (refused("InternalError", 503), True, TemporaryError),
        (refused("InvalidParameterValueException", 400), True, PermanentError),
        (EndpointConnectionError(endpoint_url="https://lambda"), False, TemporaryError),  # no answer at all
    ],
)
def test_a_failure_is_typed_by_its_code_its_status_and_whether_it_was_answered(
    error: Exception, server_errors: bool, expected: type[Exception]
) -> None:
    with pytest.raises(expected, match=r"^Call: ") as raised:
        typed_call("Call", "stage", {"ThrottlingException"}, lambda: fail(error), server_errors=server_errors)
    assert raised.value.stage == "stage"  # type: ignore[attr-defined]


def test_the_starter_is_invoked_asynchronously_and_a_throttled_invoke_is_retried_later() -> None:
    class Lambda:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            if len(self.calls) > 1:
                raise refused("TooManyRequestsException", 429)
            return {"StatusCode": 202}

    client = Lambda()
    starter = LongDrainStarter(client, "starter")
    starter.start({"id": "e-1"})
    assert client.calls == [{"FunctionName": "starter", "InvocationType": "Event", "Payload": b'{"id": "e-1"}'}]
    with pytest.raises(TemporaryError, match="Invoke: TooManyRequestsException") as raised:
        starter.start({"id": "e-2"})
    assert raised.value.stage == "start-long-drain"
    assert starter.requests_sent == 2
