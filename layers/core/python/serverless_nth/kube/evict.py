"""One eviction attempt for one pod, and what its answer means: evicted, gone, refused by a PDB
(retry when the budget allows, or delete just before a certain end), a temporary failure (retry),
or a permanent one. The drain (drain.py) schedules the attempts; this module sends them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from serverless_nth.config import BlockedPodPolicy
from serverless_nth.kube.budgets import FALLBACK_POLL_SECONDS, BudgetWatch
from serverless_nth.kube.client import (
    Conflict,
    KubeApi,
    KubeApiError,
    KubePermanentError,
    KubeTemporaryError,
    NotFound,
    TooManyRequests,
    path,
)
from serverless_nth.kube.pods import PodToEvict, grace_period, to_evict

# Backoff of retries after a failure, and after a PDB refusal where no watch tells when the budget
# frees up (with one, the watch wakes the pod, and FALLBACK_POLL_SECONDS is the backstop).
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 1.0
# how often the scheduling loop looks for pods that a budget watch woke
WAKE_CHECK_SECONDS = 0.05
# The longest an eviction may wait for its answer, when the drain's time allows it at all
EVICTION_TIMEOUT_MAX = 900.0
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"
# kube-apiserver's eviction handler, for a pod that several PDBs select: a 500, whatever is retried
MULTIPLE_BUDGETS = "more than one PodDisruptionBudget"


def retry_wait(retry_after: float | None, backoff: float) -> float:
    """The server's Retry-After as it says, but never sooner than our own backoff (``backoff``,
    at most BACKOFF_MAX): a Retry-After of 0 from a server that says it is overloaded is no licence
    to ask again at once. The drain ends the wait at its own end, however long the server asks."""
    own = min(backoff, BACKOFF_MAX)
    return own if retry_after is None else max(retry_after, own)


class PodFate(StrEnum):
    EVICTED = "evicted"  # the Eviction API accepted it
    GONE = "gone"  # it disappeared before we evicted it
    DELETED_PAST_PDB = "deleted-past-pdb"  # BlockedPodPolicy.DELETE_BEFORE_DEADLINE
    # its namespace is being deleted, but that deletion had not reached it when only its grace
    # period was left before a certain end: deleted gracefully (BlockedPodPolicy.DELETE_BEFORE_DEADLINE)
    DELETED_AT_END = "deleted-at-end"
    ALREADY_TERMINATING = "already-terminating"  # another deletion was under way: waited for
    NAMESPACE_TERMINATING = "namespace-terminating"  # its namespace is being deleted: waited for
    STUCK_TERMINATING = "stuck-terminating"  # its deletion ended long ago and it stays: not waited for
    BLOCKED = "blocked"  # a PDB still refused when the drain's time was up
    # several PDBs select it: the Eviction API refuses it for as long as they do, so it is asked
    # once, named and counted, and left (deleted past its budgets only at a certain end)
    MULTIPLE_PDBS = "multiple-pdbs"
    FAILED = "failed"  # errors (permission, an API server that kept failing) until the time was up
    WOULD_EVICT = "would-evict"  # dry run: the server accepted an eviction with dryRun=All
    WOULD_BLOCK = "would-block"  # dry run: a PDB would refuse it now
    # a critical pod not evicted: ordinary pods were still on the node when the drain's time was up
    # (no certain end; the next round of a long drain tries again)
    CRITICAL_HELD = "critical-held"


# fates that leave nothing for the drain to do
DONE_FATES = {
    PodFate.EVICTED,
    PodFate.GONE,
    PodFate.DELETED_PAST_PDB,
    PodFate.DELETED_AT_END,
    PodFate.ALREADY_TERMINATING,
    PodFate.NAMESPACE_TERMINATING,
    PodFate.STUCK_TERMINATING,
}


@dataclass(frozen=True)
class DrainOptions:
    # time.time() at which the instance is certainly gone, while that is still ahead: it caps grace
    # periods and lets blocked_pod_policy act. None: pods' own grace periods, PDBs respected.
    deadline: float | None
    # time.time() by which the drain must report (the deadline, or the Lambda function's own
    # timeout); it ends retries and waiting, but never shortens a pod's grace period
    stop_by: float
    margin_seconds: float
    concurrency: int
    blocked_pod_policy: BlockedPodPolicy
    poll_interval_seconds: float
    dry_run: bool
    # a pod whose deletion ended longer ago than this is not waited for
    stuck_after_seconds: float = 30.0
    request_timeout_seconds: float = 10.0
    # pods at or above this priority are critical (Settings.critical_pod_priority)
    critical_priority: int = 2_000_000_000
    # of the time left before a certain deadline, the most kept for critical pods (Settings.critical_pod_share)
    critical_share_percent: int = 50


@dataclass
class Attempt:
    """What one eviction request taught us about one pod."""

    fate: PodFate | None  # None: try again after `wait`
    wait: float = 0.0
    sent_at: float = 0.0  # clock time the request went out
    pdb_refused: bool = False
    grace: int = 0  # the grace period the pod was given, when evicted or deleted
    grace_capped: bool = False
    error: str = ""
    refreshed: PodToEvict | None = None  # the pod as it is now, for the next attempt
    # A request that may have been carried out, its answer lost (a dropped connection, a garbled
    # 2xx): the fate it gives, with its grace period, if the pod is then found deleting or gone.
    maybe_done: tuple[PodFate, int] | None = None


class Evictor:
    """Sends the attempts of one drain, from its worker threads."""

    def __init__(
        self, api: KubeApi, options: DrainOptions, log: Callable[..., None], clock: Callable[[], float]
    ) -> None:
        self.api = api
        self.options = options
        self.log = log
        self.clock = clock
        self.budgets = BudgetWatch(api, self._wake, until=options.stop_by, clock=clock)
        self._woken: set[str] = set()  # namespaces where a budget allows a disruption again
        self._woken_lock = threading.Lock()

    def _wake(self, namespace: str) -> None:
        with self._woken_lock:
            self._woken.add(namespace)

    def take_woken(self) -> set[str]:
        with self._woken_lock:
            woken, self._woken = self._woken, set()
        return woken

    def seconds_left(self) -> float | None:
        """Seconds of grace a pod can still have: until the deadline less the safety margin; None
        when no deadline caps grace periods."""
        if self.options.deadline is None:
            return None
        return self.options.deadline - self.options.margin_seconds - self.clock()

    def attempt(self, pod: PodToEvict, backoff: float) -> Attempt:
        sent_at = self.clock()
        try:
            attempt = self._try_eviction(pod, backoff)
        except Exception as exc:  # a thread's surprise must end as this pod's error, not the drain's
            attempt = Attempt(None, wait=backoff, error=f"{type(exc).__name__}: {exc}")
        attempt.sent_at = sent_at
        return attempt

    def _try_eviction(self, pod: PodToEvict, backoff: float) -> Attempt:
        """One eviction request; decides whether the pod is done or when to try again (after the
        server's Retry-After, else after ``backoff``, which doubles up to 1 s)."""
        grace = grace_period(pod.grace_seconds, self.seconds_left())
        try:
            self._post_eviction(pod, grace)
            if self.options.dry_run:
                return Attempt(PodFate.WOULD_EVICT)
            return Attempt(PodFate.EVICTED, grace=grace, grace_capped=grace < pod.grace_seconds)
        except NotFound:
            return Attempt(PodFate.GONE)
        except Conflict:
            return self._after_conflict(pod)
        except TooManyRequests as exc:
            pdb = "disruption budget" in exc.reason.lower()
            wait_for = retry_wait(exc.retry_after, backoff)
            if not pdb:  # API priority and fairness: its Retry-After
                return Attempt(None, wait=wait_for, error=str(exc))
            if self.options.dry_run:
                return Attempt(PodFate.WOULD_BLOCK, pdb_refused=True)
            self.budgets.follow(pod.namespace)
            if self.budgets.watching(pod.namespace):
                wait_for = FALLBACK_POLL_SECONDS  # the watch wakes the pod when the budget allows
            left = self.seconds_left()
            if left is not None and self._deletes_past_pdb():
                if left - BACKOFF_MAX <= pod.grace_seconds:
                    return self._delete_past_pdb(pod)
                # come back in time to delete it while its whole grace period still fits
                wait_for = min(wait_for, left - pod.grace_seconds - BACKOFF_MAX)
            return Attempt(None, wait=wait_for, pdb_refused=True)
        except KubeTemporaryError as exc:  # 401, 5xx, a lost connection: never a verdict on the pod
            if exc.status == 500 and MULTIPLE_BUDGETS in exc.reason:  # ... except this one
                why = "more than one PodDisruptionBudget selects it"
                return self._unmovable(pod, PodFate.MULTIPLE_PDBS, PodFate.DELETED_PAST_PDB, why)
            wait_for = retry_wait(exc.retry_after, backoff)
            lost = (exc.status == 0 or 200 <= exc.status < 300) and not self.options.dry_run
            maybe = (PodFate.EVICTED, grace) if lost else None
            return Attempt(None, wait=wait_for, error=str(exc), maybe_done=maybe)
        except KubePermanentError as exc:
            if exc.status == 403 and NAMESPACE_TERMINATING_CAUSE in exc.causes:
                why = "its namespace's deletion has not reached it"
                return self._unmovable(pod, PodFate.NAMESPACE_TERMINATING, PodFate.DELETED_AT_END, why)
            return Attempt(PodFate.FAILED, error=str(exc))

    def _unmovable(self, pod: PodToEvict, fate: PodFate, deleted: PodFate, why: str) -> Attempt:
        """A pod no eviction can move: a namespace being deleted (403 NamespaceTerminating: the
        namespace controller deletes it, and it is waited for) or several PDBs selecting it (500:
        kubectl drain stops there). It keeps ``fate``, except before a certain end with
        BlockedPodPolicy=delete-before-deadline: once only its grace period is left it is deleted
        gracefully with the time left, as a pod one budget blocks, so that it still gets SIGTERM.
        Until then it is asked again once, when that time comes (unless its namespace took it)."""
        left = self.seconds_left()
        if left is None or not self._deletes_past_pdb() or self.options.dry_run:
            return Attempt(fate)
        if left - BACKOFF_MAX <= pod.grace_seconds:
            return self._delete_before_end(pod, deleted, why)
        return Attempt(None, wait=left - pod.grace_seconds - BACKOFF_MAX)

    def _after_conflict(self, pod: PodToEvict) -> Attempt:
        """The pod changed since it was listed (the eviction carries its resourceVersion as a
        precondition). If its deletion has begun, another drain (a duplicate delivery) evicted it:
        waited for, but not counted as this drain's eviction. Otherwise try again with it as it is."""
        try:
            page = self.api.request(
                "GET",
                path("api", "v1", "namespaces", pod.namespace, "pods"),
                query={"fieldSelector": f"metadata.name={pod.name}"},
                stage="drain",
            )
        except KubeApiError as exc:
            return Attempt(None, wait=BACKOFF_FIRST, error=str(exc))
        items = [item for item in page.get("items", []) if item["metadata"].get("uid") == pod.uid]
        current = [to_evict(item, self.options.critical_priority) for item in items]
        if not current:
            return Attempt(PodFate.GONE)
        if current[0].deleting_since is not None:
            return Attempt(PodFate.ALREADY_TERMINATING)
        return Attempt(None, refreshed=current[0])

    def _timeout(self) -> float:
        """An eviction waits for its answer as long as the drain's time allows: a request cut off
        after the server counted it in the PDB's disruptedPods, but before it deleted the pod,
        would leave the budget spent on nothing for two minutes."""
        return max(self.options.request_timeout_seconds, min(self.options.stop_by - self.clock(), EVICTION_TIMEOUT_MAX))

    def _post_eviction(self, pod: PodToEvict, grace: int) -> None:
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
            "deleteOptions": {
                "gracePeriodSeconds": grace,
                "preconditions": {"uid": pod.uid, "resourceVersion": pod.resource_version},
            },
        }
        self.api.request(
            "POST",
            path("api", "v1", "namespaces", pod.namespace, "pods", pod.name, "eviction"),
            body=body,
            query={"dryRun": "All"} if self.options.dry_run else None,
            stage="drain",
            retry_temporary=False,
            timeout_seconds=self._timeout(),
        )

    def _deletes_past_pdb(self) -> bool:
        return (
            self.options.deadline is not None
            and self.options.blocked_pod_policy is BlockedPodPolicy.DELETE_BEFORE_DEADLINE
        )

    def _delete_past_pdb(self, pod: PodToEvict) -> Attempt:
        return self._delete_before_end(pod, PodFate.DELETED_PAST_PDB, "a PodDisruptionBudget still blocks")

    def _delete_before_end(self, pod: PodToEvict, fate: PodFate, why: str) -> Attempt:
        """A graceful delete with the time left before a certain end, of a pod no eviction moved."""
        refused = fate is PodFate.DELETED_PAST_PDB  # a PDB's refusal, counted as such
        grace = grace_period(pod.grace_seconds, self.seconds_left())
        self.log(
            f"{why} and the instance is going away: deleting the pod with the time left",
            pod=pod.ref,
            grace_seconds=grace,
        )
        try:
            self.api.request(
                "DELETE",
                path("api", "v1", "namespaces", pod.namespace, "pods", pod.name),
                body={"gracePeriodSeconds": grace, "preconditions": {"uid": pod.uid}},
                stage="drain",
                retry_temporary=False,
                timeout_seconds=self._timeout(),
            )
        except NotFound:
            return Attempt(PodFate.GONE, pdb_refused=refused)
        except KubeTemporaryError as exc:
            # Tried again on the next round, as an eviction would be. The delete may have been done
            # and only its answer lost: if the pod is then found deleting, it was this delete.
            return Attempt(
                None,
                wait=BACKOFF_FIRST,
                pdb_refused=refused,
                error=f"delete before the end: {exc}",
                maybe_done=(fate, grace),
            )
        except KubePermanentError as exc:
            return Attempt(PodFate.FAILED, pdb_refused=refused, error=f"delete before the end failed: {exc}")
        capped = grace < pod.grace_seconds
        return Attempt(fate, grace=grace, pdb_refused=refused, grace_capped=capped)
