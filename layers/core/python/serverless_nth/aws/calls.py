"""One AWS call, its failure typed as kopf types errors: a code that a later retry may get past
(throttling, the service's own failure) or no answer at all is temporary; any other code is
permanent. The adapters whose calls have answers of their own among the error codes (EC2's unknown
instance, Auto Scaling's ended action, the durable API's started execution) type theirs in place."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from serverless_nth.errors import PermanentError, TemporaryError

T = TypeVar("T")


def typed_call(
    what: str, stage: str, temporary: Collection[str], send: Callable[[], T], server_errors: bool = False
) -> T:
    """``send()``'s reply; a ClientError whose code is in ``temporary`` (or, with
    ``server_errors``, any 5xx answer) or a BotoCoreError raises TemporaryError, any other
    ClientError PermanentError, both named ``what`` and staged ``stage``."""
    try:
        return send()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        error = TemporaryError if code in temporary or (server_errors and status >= 500) else PermanentError
        raise error(f"{what}: {code}: {exc}", stage=stage) from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"{what}: {exc}", stage=stage) from exc
