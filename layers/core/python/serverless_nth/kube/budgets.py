"""Reacting when a PodDisruptionBudget allows a disruption again, instead of asking the Eviction
API every second: one watch on the budgets of each namespace where a budget refused a pod.

A budget frees up when a replacement pod turns Ready, which the disruption controller writes into
the budget's status (``disruptionsAllowed``). The watch sees that write and the drain retries the
refused pods of that namespace at once; between such moments it asks only every
``FALLBACK_POLL_SECONDS`` (kubectl drain asks every 5 s), in case a watch event is missed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from serverless_nth.kube.client import KubeApi, KubeApiError, WatchStream, path

FALLBACK_POLL_SECONDS = 10.0
# a watch lasts at most this long before it is opened again from a fresh list
_WATCH_SECONDS = 120


def allows_disruption(pdb: dict[str, Any]) -> bool:
    return int((pdb.get("status") or {}).get("disruptionsAllowed") or 0) > 0


class BudgetWatch:
    """The watches of one drain. ``on_allowed(namespace)`` is called from a watch thread whenever a
    budget of that namespace allows a disruption. A watch that cannot be opened (no permission, an
    API server that fails) marks its namespace unwatched, and the drain falls back to its own
    backoff there."""

    def __init__(
        self, api: KubeApi, on_allowed: Callable[[str], None], until: float, clock: Callable[[], float]
    ) -> None:
        self.api = api
        self.on_allowed = on_allowed
        self.until = until
        self.clock = clock
        self._lock = threading.Lock()
        self._watched: set[str] = set()
        self._failed: set[str] = set()
        self._streams: set[WatchStream] = set()
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    def follow(self, namespace: str) -> None:
        with self._lock:
            if namespace in self._watched or self._stopped.is_set():
                return
            self._watched.add(namespace)
            thread = threading.Thread(target=self._run, args=(namespace,), name=f"pdb-watch-{namespace}", daemon=True)
            self._threads.append(thread)
        thread.start()

    def watching(self, namespace: str) -> bool:
        with self._lock:
            return namespace in self._watched and namespace not in self._failed

    def stop(self) -> None:
        """Ends every watch now: nothing of this drain may outlive it in a warm function."""
        self._stopped.set()
        with self._lock:
            streams, threads = list(self._streams), list(self._threads)
        for stream in streams:
            stream.close()
        for thread in threads:
            thread.join(timeout=2)

    def _run(self, namespace: str) -> None:
        collection = path("apis", "policy", "v1", "namespaces", namespace, "poddisruptionbudgets")
        try:
            while not self._stopped.is_set() and self.clock() < self.until:
                listing = self.api.request("GET", collection, stage="drain")
                if any(allows_disruption(p) for p in listing.get("items", [])):
                    self.on_allowed(namespace)
                version = str(listing.get("metadata", {}).get("resourceVersion", ""))
                seconds = max(1, min(_WATCH_SECONDS, int(self.until - self.clock()) + 1))
                self._follow_stream(namespace, collection, version, seconds)
        except KubeApiError:
            with self._lock:
                self._failed.add(namespace)
            self.on_allowed(namespace)  # the pods' own retries take over at once

    def _follow_stream(self, namespace: str, collection: str, version: str, seconds: int) -> None:
        query = {"resourceVersion": version, "timeoutSeconds": str(seconds), "allowWatchBookmarks": "true"}
        stream = self.api.watch(collection, query, stage="drain")
        with self._lock:
            self._streams.add(stream)
        try:
            if self._stopped.is_set():
                return
            for change in stream:
                if change.get("type") == "ERROR":  # e.g. 410 Gone: list again
                    return
                if change.get("type") in ("ADDED", "MODIFIED") and allows_disruption(change.get("object") or {}):
                    self.on_allowed(namespace)
        finally:
            with self._lock:
                self._streams.discard(stream)
