"""Failures typed by what a retry can do about them (as kopf does).

TemporaryError: the same event may succeed later (API server down, throttled, 5xx); the handler
raises it so that Lambda retries and, in the end, the event lands on the on-failure queue.
PermanentError: retrying cannot help (no permission, a request the server rejects).
"""

from __future__ import annotations


class HandlerError(Exception):
    stage = "unknown"

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        if stage is not None:
            self.stage = stage


class TemporaryError(HandlerError):
    """Retrying the same event later may succeed."""


class PermanentError(HandlerError):
    """Retrying the same event cannot succeed."""
