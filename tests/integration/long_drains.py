"""What the long-drain tests share: the functions' names and readers of a durable execution's
record as the local invoke returns it."""

from __future__ import annotations

import datetime
from typing import Any

from localeks.invoke import Invocation

LIFECYCLE = "LifecycleActionFunction"
SCHEDULED = "ScheduledChangeFunction"


def at(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def steps(invocation: Invocation) -> list[dict[str, Any]]:
    return list(invocation.result["operations"])


def named(invocation: Invocation, prefix: str) -> list[dict[str, Any]]:
    return [op for op in steps(invocation) if (op["name"] or "").startswith(prefix)]
