"""Progress lines for work that takes minutes: the first build of the control plane, the phases of
`make bench`, seeding a large cluster.

A person watching must be able to tell slow work from a hang: each piece of work says what it is
when it starts, a line every ``every`` seconds says how far it is (elapsed time, and an estimate
when one is known), and the end says how long it took. Work that ends before the first tick prints
nothing but what the caller says itself, so cached and small runs stay quiet.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO


def duration(seconds: float) -> str:
    """45 s, 2 min 05 s."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


class Progress:
    """Writes ``<prefix>: <text>`` lines to ``stream`` (stderr by default), flushed at once."""

    def __init__(self, prefix: str, stream: TextIO | None = None, every: float = 30.0) -> None:
        self.prefix = prefix
        self.stream = stream
        self.every = every

    def say(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(f"{self.prefix}: {text}", file=stream, flush=True)

    @contextlib.contextmanager
    def ticking(self, status: Callable[[float], str], every: float | None = None) -> Iterator[None]:
        """Prints ``status(elapsed seconds)`` every ``every`` seconds until the block ends (an empty
        status prints nothing)."""
        stop = threading.Event()
        started = time.monotonic()
        interval = every or self.every

        def tick() -> None:
            while not stop.wait(interval):
                text = status(time.monotonic() - started)
                if text:  # an empty status: nothing worth a line yet
                    self.say(text)

        thread = threading.Thread(target=tick, name=f"{self.prefix}-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


class Counter:
    """Counted work (nodes seeded, pods Running) with a rate-based estimate of what is left."""

    def __init__(self, what: str, total: int, unit: str = "") -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.done += n

    def set(self, n: int) -> None:
        with self._lock:
            self.done = n

    def status(self, elapsed: float) -> str:
        done = self.done
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.what}: {done:,}/{self.total:,}{unit} after {duration(elapsed)}"
        if 0 < done < self.total:
            text += f", about {duration(elapsed / done * (self.total - done))} left at this rate"
        return text
