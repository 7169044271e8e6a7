"""The one loader of the sample events in events/, for every test tier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localeks.invoke import prepare_event

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


# what EventBridge Scheduler hands the instance-status backstop: no EventBridge event, no instance
SCHEDULE_PAYLOAD = "instance-status-check"


def event_files() -> list[Path]:
    """The EventBridge events among the samples (every file but the schedule's payload)."""
    return sorted(p for p in EVENTS_DIR.glob("*.json") if p.stem != SCHEDULE_PAYLOAD)


def load_event(name: str, *, instance_id: str | None = None, now: bool = False) -> dict[str, Any]:
    """``name`` is a file name in events/ without .json, e.g. ``state-change-stopping``."""
    raw = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    return prepare_event(raw, instance_id, now)


def schedule_payload() -> dict[str, Any]:
    """What EventBridge Scheduler hands the instance-status backstop (events/instance-status-check.json)."""
    loaded: dict[str, Any] = json.loads((EVENTS_DIR / f"{SCHEDULE_PAYLOAD}.json").read_text())
    return loaded
