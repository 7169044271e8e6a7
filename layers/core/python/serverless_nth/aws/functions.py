"""The instance-status backstop's one Lambda call: an asynchronous Invoke of the long-drain starter
with the event it would get from a rule, so that a scheduled event found by the backstop starts its
drain exactly as a Health event does (the starter's checks, version and execution name).

Invoke, InvocationType (botocore's ``lambda`` model): "``Event`` – Invoke the function
asynchronously. Send events that fail multiple times to the function's dead-letter queue (if one is
configured)": the starter's own retries and on-failure destination (EventInvokeConfig) apply, as for
the rules.
"""

from __future__ import annotations

import json
from typing import Any

from serverless_nth.aws.calls import typed_call

_TEMPORARY = {"TooManyRequestsException", "ServiceException", "ResourceNotReadyException", "EC2ThrottledException"}
_STAGE = "start-long-drain"


class LongDrainStarter:
    def __init__(self, client: Any, function: str) -> None:
        self._client = client
        self._function = function
        self.requests_sent = 0

    def start(self, event: dict[str, Any]) -> None:
        """Hands ``event`` to the starter; Lambda has queued it when this returns."""
        self.requests_sent += 1
        payload = json.dumps(event).encode()
        typed_call(
            "Invoke",
            _STAGE,
            _TEMPORARY,
            lambda: self._client.invoke(FunctionName=self._function, InvocationType="Event", Payload=payload),
            server_errors=True,
        )
