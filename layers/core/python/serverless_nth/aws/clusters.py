"""The EKS clusters of one account and region, listed with ListClusters: kept while the function
is warm, listed again when an instance names a cluster the list lacks (a cluster created since),
at most once per ``RELIST_SECONDS`` so that instances of an unknown cluster cannot make every event
pay a listing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from serverless_nth.errors import PermanentError, TemporaryError

RELIST_SECONDS = 60.0
_THROTTLED = {"ThrottlingException", "ServerException", "ServiceUnavailableException"}


class ClusterDirectory:
    def __init__(self, eks_client: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._eks = eks_client
        self._clock = clock
        self._lock = threading.Lock()
        self._names: frozenset[str] | None = None
        self._listed_at = 0.0
        self.requests_sent = 0  # ListClusters pages

    def has(self, name: str) -> bool:
        """Whether the account has the cluster: from the kept list, listed again on a miss."""
        with self._lock:
            if self._names is None or (name not in self._names and self._clock() - self._listed_at >= RELIST_SECONDS):
                self._names = self._list()
            return name in self._names

    def _list(self) -> frozenset[str]:
        names: set[str] = set()
        token = ""
        while True:
            self.requests_sent += 1
            try:
                reply = self._eks.list_clusters(**({"nextToken": token} if token else {}), maxResults=100)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                error = TemporaryError if code in _THROTTLED else PermanentError
                raise error(f"ListClusters: {code}: {exc}", stage="list-clusters") from exc
            except BotoCoreError as exc:
                raise TemporaryError(f"ListClusters: {exc}", stage="list-clusters") from exc
            names.update(reply.get("clusters") or [])
            token = reply.get("nextToken") or ""
            if not token:
                break
        self._listed_at = self._clock()
        return frozenset(names)
