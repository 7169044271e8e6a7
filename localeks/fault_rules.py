"""The faults that localeks/faults.py's proxies inject, and the rules that say which request gets
which: a status without forwarding, a stall, a lost answer, a non-JSON 2xx; ``Match`` (method,
path pattern, header) and ``Rule`` (how often, when, per path), kept by ``_RuleBook``, which also
records what the proxy saw (``Seen``). Also the path patterns of the requests the functions send."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

# Paths of the requests the functions send (matched against the path without its query)
EVICTION = r"^/api/v1/namespaces/[^/]+/pods/[^/]+/eviction$"
POD = r"^/api/v1/namespaces/[^/]+/pods/[^/]+$"
PODS = r"^/api/v1/pods$|^/api/v1/namespaces/[^/]+/pods$"
NODE = r"^/api/v1/nodes/[^/]+$"
BUDGETS = r"/poddisruptionbudgets"


# --- faults ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    """Answer with this status and a Kubernetes Status body, without forwarding the request."""

    code: int
    message: str = "injected fault"
    retry_after: str | None = None

    @property
    def name(self) -> str:
        return str(self.code)


@dataclass(frozen=True)
class Stall:
    """Hold for ``seconds``: the answer (after the API server served the request), or with
    ``before=True`` the request (before the API server sees it)."""

    seconds: float
    before: bool = False

    @property
    def name(self) -> str:
        return f"stall-{'request' if self.before else 'answer'}"


@dataclass(frozen=True)
class Drop:
    """Forward the request, let the API server serve it, then close the connection unanswered."""

    name: str = "lost-answer"


@dataclass(frozen=True)
class Garbage:
    """Forward the request, then answer ``status`` with a body that is not JSON."""

    status: int = 200
    body: bytes = b"<html><body>502 Bad Gateway (as a proxy says it)</body></html>"

    @property
    def name(self) -> str:
        return "not-json"


Fault = Status | Stall | Drop | Garbage

UNAUTHORIZED = Status(401, "Unauthorized")
APF_429 = Status(429, "Too many requests, please try again later.", retry_after="1")


@dataclass
class Match:
    """Which requests: a method and a regular expression searched in the path (no query)."""

    method: str | None = None
    path: str | None = None

    def __call__(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or bool(re.search(self.path, path))
        )


@dataclass
class Rule:
    """Injects ``fault`` into the requests that ``match``.

    - ``times``: on at most this many matching requests (counted per path with ``per_path``,
      e.g. once per pod), then let them through; None: no limit.
    - ``window``: once the first fault is injected, every matching request for this many
      seconds, then none (a burst).
    - ``armed_by`` / ``armed_after``: inject nothing until this many requests matching
      ``armed_by`` have passed (e.g. the 5th eviction: mid-drain).
    - ``skip``: let this many matching requests through first (counted after arming).
    """

    fault: Fault
    match: Match = field(default_factory=Match)
    times: int | None = None
    per_path: bool = False
    window: float | None = None
    armed_by: Match | None = None
    armed_after: int = 0
    skip: int = 0
    # state
    injected: int = 0
    window_started: float | None = None
    _arming_seen: int = 0
    _seen: dict[str, int] = field(default_factory=dict)
    _hits: dict[str, int] = field(default_factory=dict)

    def decide(self, method: str, path: str, now: float) -> bool:
        """Whether this request gets the fault (called under the proxy's lock, for every request)."""
        if self.armed_by is not None and self._arming_seen < self.armed_after:
            if self.armed_by(method, path):
                self._arming_seen += 1
            return False
        if not self.match(method, path):
            return False
        if self.window_started is not None and self.window is not None:
            if now - self.window_started >= self.window:
                return False
            self.injected += 1
            return True
        key = path if self.per_path else ""
        self._seen[key] = self._seen.get(key, 0) + 1
        if self._seen[key] <= self.skip:
            return False
        if self.times is not None and self._hits.get(key, 0) >= self.times:
            return False
        self._hits[key] = self._hits.get(key, 0) + 1
        self.injected += 1
        if self.window is not None and self.window_started is None:
            self.window_started = now
        return True


@dataclass(frozen=True)
class Seen:
    """One request that reached a proxy, and what became of it."""

    at: float  # time.time() when it arrived
    method: str
    path: str  # without the query
    query: str
    fault: str | None  # the fault injected, or None
    status: int | None  # what the client was answered (None: nothing, the connection was closed)
    done_at: float


class _RuleBook:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.log: list[Seen] = []
        self.pending: dict[int, tuple[str, str]] = {}  # requests not answered yet: id -> method, path
        self._next = 0

    def add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.log.clear()

    def arrived(self, method: str, path: str) -> int:
        with self.lock:
            self._next += 1
            self.pending[self._next] = (method, path)
            return self._next

    def decide(self, method: str, path: str) -> Fault | None:
        now = time.time()
        with self.lock:
            chosen: Fault | None = None
            for rule in self.rules:  # every rule sees every request (arming counts); the first wins
                if rule.decide(method, path, now) and chosen is None:
                    chosen = rule.fault
            return chosen

    def record(self, seen: Seen, ticket: int | None = None) -> None:
        with self.lock:
            self.log.append(seen)
            self.pending.pop(ticket or 0, None)

    def in_flight(self, method: str | None = None, path: str | None = None) -> int:
        match = Match(method, path)
        with self.lock:
            return sum(1 for m, p in self.pending.values() if match(m, p))

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        match = Match(method, path)
        with self.lock:
            return [s for s in self.log if match(s.method, s.path)]
