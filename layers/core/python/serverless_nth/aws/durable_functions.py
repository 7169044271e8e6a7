"""The Lambda calls of the long-drain starter (``long_drain_start.py``): publish a durable
function's current code and configuration as a version, start a durable execution on that
version, and find and delete the versions that no execution runs on any more.

What each call relies on, from the Lambda API reference (botocore's ``lambda`` model):
- PublishVersion: "Lambda doesn't publish a version if the function's configuration and code
  haven't changed since the last version": publishing at every start costs no version when nothing
  changed, and captures every change of code, layers, environment, memory or timeout when one did.
- Invoke, DurableExecutionName: "If you invoke a durable function using a name that already exists
  with the same payload, Lambda returns the existing execution instead of creating a duplicate. If
  the payload differs, Lambda returns a DurableExecutionAlreadyStartedException error." Names are
  unique "within the function", across its versions.
- DeleteFunction, Qualifier: "You can't delete a version that an alias references."
- ListDurableExecutionsByFunction, Statuses: RUNNING, PAUSING and PAUSED executions have not ended.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from serverless_nth.errors import PermanentError, TemporaryError

# executions that have not ended: their version must stay
LIVE_STATUSES = ("RUNNING", "PAUSING", "PAUSED")
_TEMPORARY = {"TooManyRequestsException", "ServiceException", "ResourceConflictException", "ResourceNotReadyException"}
_STAGE = "long-drain-start"


class ExecutionNameTaken(PermanentError):
    """An execution of this name exists with another payload: the same event id, another event."""


class DurableFunctions:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests_sent = 0

    def publish(self, function: str) -> str:
        """The version that holds the function's current code and configuration."""
        reply = self._call("PublishVersion", self._client.publish_version, FunctionName=function)
        return str(reply["Version"])

    def start(self, function: str, version: str, name: str, payload: bytes) -> str:
        """Starts (or finds, for the same name and payload) the execution; its ARN."""
        reply = self._call(
            "Invoke",
            self._client.invoke,
            FunctionName=function,
            Qualifier=version,
            InvocationType="Event",
            DurableExecutionName=name,
            Payload=payload,
        )
        return str(reply.get("DurableExecutionArn") or "")

    def versions(self, function: str) -> list[str]:
        """The function's published versions (numbers), oldest first."""
        found: list[str] = []
        marker: str | None = None
        while True:
            page = self._call(
                "ListVersionsByFunction",
                self._client.list_versions_by_function,
                FunctionName=function,
                **({"Marker": marker} if marker else {}),
            )
            found += [str(v["Version"]) for v in page.get("Versions", []) if str(v.get("Version", "")).isdigit()]
            marker = page.get("NextMarker")
            if not marker:
                return sorted(found, key=int)

    def has_live_executions(self, function: str, version: str) -> bool:
        page = self._call(
            "ListDurableExecutionsByFunction",
            self._client.list_durable_executions_by_function,
            FunctionName=function,
            Qualifier=version,
            Statuses=list(LIVE_STATUSES),
            MaxItems=1,
        )
        return bool(page.get("DurableExecutions"))

    def delete(self, function: str, version: str) -> bool:
        """False when Lambda keeps it (an alias references it, or it is gone already)."""
        kept = frozenset({"ResourceConflictException", "ResourceNotFoundException"})
        reply = self._answer(
            "DeleteFunction", self._client.delete_function, kept, FunctionName=function, Qualifier=version
        )
        return reply is not None

    def _call(self, name: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        reply = self._answer(name, method, frozenset(), **kwargs)
        assert reply is not None  # no error code is taken for an answer
        return reply

    def _answer(self, name: str, method: Any, answers: frozenset[str], **kwargs: Any) -> dict[str, Any] | None:
        """The reply; None for an error whose code is in ``answers`` (an answer, not a failure)."""
        self.requests_sent += 1
        try:
            reply: dict[str, Any] = method(**kwargs)
            return reply
        except ClientError as exc:
            code = _code(exc)
            if code in answers:
                return None
            message = str(exc.response.get("Error", {}).get("Message", ""))
            if code == "DurableExecutionAlreadyStartedException":
                raise ExecutionNameTaken(f"{name}: {code}: {message}", stage=_STAGE) from exc
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code in _TEMPORARY or status >= 500:
                raise TemporaryError(f"{name}: {code}: {message}", stage=_STAGE) from exc
            raise PermanentError(f"{name}: {code}: {message}", stage=_STAGE) from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"{name}: {exc}", stage=_STAGE) from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
