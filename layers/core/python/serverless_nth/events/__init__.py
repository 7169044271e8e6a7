"""EventBridge payloads, one module per event type, all normalised into one InterruptionEvent."""

from serverless_nth.events.model import EventKind, InterruptionEvent, MalformedEvent

__all__ = ["EventKind", "InterruptionEvent", "MalformedEvent"]
