"""Drain with the semantics of ``kubectl drain``, for a node that is about to vanish.

Evictions go through the Eviction API (policy/v1) so PodDisruptionBudgets are honoured, all at
once with bounded concurrency; a 429 is retried honouring Retry-After, and a temporary failure
(401, 5xx, a lost connection) with backoff, until the drain's time is up; which pods are left
alone is decided in ``kube/pods.py``; grace periods are capped to the time left before a deadline
that is still ahead, and never below GRACE_FLOOR_SECONDS; then the drain waits until the evicted
pods are gone or its time is up, and says what remains and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from serverless_nth.config import BlockedPodPolicy
from serverless_nth.kube.client import KubeApi, KubePermanentError, KubeTemporaryError, NotFound, TooManyRequests, path
from serverless_nth.kube.pods import (
    PodToEvict,
    deletion_time,
    grace_period,
    list_node_pods,
    orphaned_daemonset_pods,
    skip_reason,
    to_evict,
)

# A PDB frees up when a replacement pod turns Ready: retry often enough not to add much to that.
_BACKOFF_FIRST, _BACKOFF_MAX = 0.25, 1.0
# The longest an eviction may wait for its answer, when the drain's time allows it at all
_EVICTION_TIMEOUT_MAX = 900.0
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"


class PodFate(StrEnum):
    EVICTED = "evicted"  # the Eviction API accepted it
    GONE = "gone"  # it disappeared before we evicted it
    DELETED_PAST_PDB = "deleted-past-pdb"  # BlockedPodPolicy.DELETE_BEFORE_DEADLINE
    ALREADY_TERMINATING = "already-terminating"  # another deletion was under way: waited for
    NAMESPACE_TERMINATING = "namespace-terminating"  # its namespace is being deleted: waited for
    STUCK_TERMINATING = "stuck-terminating"  # its deletion ended long ago and it stays: not waited for
    BLOCKED = "blocked"  # a PDB still refused when the drain's time was up
    FAILED = "failed"  # errors (permission, an API server that kept failing) until the time was up
    WOULD_EVICT = "would-evict"  # dry run: the server accepted an eviction with dryRun=All
    WOULD_BLOCK = "would-block"  # dry run: a PDB would refuse it now


# fates that leave nothing for the drain to do
_DONE = {
    PodFate.EVICTED,
    PodFate.GONE,
    PodFate.DELETED_PAST_PDB,
    PodFate.ALREADY_TERMINATING,
    PodFate.NAMESPACE_TERMINATING,
    PodFate.STUCK_TERMINATING,
}


@dataclass
class DrainResult:
    pods: dict[str, PodFate] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    remaining: list[str] = field(default_factory=list)  # still on the node when the drain ended
    pdb_refusals: int = 0  # 429 answers from the Eviction API
    emptydir_pods: int = 0
    unmanaged_pods: int = 0  # no controller, or a DaemonSet that no longer exists
    grace_capped: int = 0
    # from drain start until every pod's first eviction request was sent, and answered
    evictions_sent_seconds: float = 0.0
    evictions_answered_seconds: float = 0.0
    duration_seconds: float = 0.0
    completed: bool = False  # every pod to evict was gone (or not to be waited for) in time
    errors: list[str] = field(default_factory=list)
    # the pods evicted or deleted by this drain, with the grace period each was given
    removed: list[tuple[PodToEvict, PodFate, int]] = field(default_factory=list)

    def count(self, fate: PodFate) -> int:
        return sum(1 for f in self.pods.values() if f is fate)


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


@dataclass
class _Attempt:
    """What one eviction request taught us about one pod."""

    fate: PodFate | None  # None: try again after `wait`
    wait: float = 0.0
    sent_at: float = 0.0  # clock time the request went out
    pdb_refused: bool = False
    grace: int = 0  # the grace period the pod was given, when evicted or deleted
    grace_capped: bool = False
    error: str = ""


@dataclass
class _PodState:
    pod: PodToEvict
    due: float  # clock time of the next attempt
    backoff: float = _BACKOFF_FIRST
    answered: bool = False
    last_error: str = ""  # the last attempt failed with an error, not a PDB refusal


class Drainer:
    """One drain of one node. A single loop schedules eviction attempts on a bounded thread pool,
    so a pod waiting on its PDB holds no thread and every other pod is evicted at once."""

    def __init__(
        self,
        api: KubeApi,
        options: DrainOptions,
        log: Callable[..., None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.options = options
        self.log = log
        self.clock = clock

    def seconds_left(self) -> float | None:
        """Seconds of grace a pod can still have: until the deadline less the safety margin; None
        when no deadline caps grace periods."""
        if self.options.deadline is None:
            return None
        return self.options.deadline - self.options.margin_seconds - self.clock()

    def out_of_time(self) -> bool:
        left = self.seconds_left()
        return (left is not None and left <= 0) or self.clock() >= self.options.stop_by

    def drain(self, node_name: str) -> DrainResult:
        started = self.clock()
        result = DrainResult()
        targets = self._targets(node_name, result)
        to_send = [t for t in targets if self._needs_eviction(t)]
        for target in targets:
            if target not in to_send:
                result.pods[target.ref] = PodFate.ALREADY_TERMINATING
        if to_send:
            self._evict_all(to_send, result, started)
        if targets and not self.options.dry_run:
            result.remaining = self._wait_until_gone(node_name, targets, result)
            for ref in result.remaining:
                result.pods.setdefault(ref, PodFate.BLOCKED)
        result.completed = (
            not self.options.dry_run and not result.remaining and all(f in _DONE for f in result.pods.values())
        )
        result.duration_seconds = self.clock() - started
        return result

    def _targets(self, node_name: str, result: DrainResult) -> list[PodToEvict]:
        pods = list_node_pods(self.api, node_name)
        orphans = {id(p) for p in orphaned_daemonset_pods(self.api, pods)}
        targets: list[PodToEvict] = []
        now = self.clock()
        for pod in pods:
            reason = skip_reason(pod, now, self.options.stuck_after_seconds)
            if reason == "daemonset" and id(pod) in orphans:
                reason = None
                self.log("evicting a DaemonSet pod whose DaemonSet no longer exists", pod=_ref(pod))
            if reason:
                result.skipped[reason] = result.skipped.get(reason, 0) + 1
                if reason == "stuck-terminating":
                    result.pods[_ref(pod)] = PodFate.STUCK_TERMINATING
                continue
            target = to_evict(pod)
            orphan = id(pod) in orphans
            targets.append(target)
            result.emptydir_pods += target.has_emptydir
            result.unmanaged_pods += orphan or not target.has_controller
            if target.has_emptydir or orphan or not target.has_controller:
                self.log(
                    "evicting a pod whose local data or missing controller means it will not come back as it was",
                    pod=target.ref,
                    emptydir=target.has_emptydir,
                    controller=target.has_controller and not orphan,
                )
        return targets

    def _needs_eviction(self, pod: PodToEvict) -> bool:
        """A pod someone else is deleting is only waited for, unless its deletion would end after
        the grace a deadline leaves: then an eviction shortens it."""
        if pod.deleting_since is None:
            return True
        left = self.seconds_left()
        return left is not None and pod.deleting_since > self.clock() + left

    def _evict_all(self, targets: list[PodToEvict], result: DrainResult, started: float) -> None:
        states = {t.ref: _PodState(t, due=started) for t in targets}
        unanswered = len(states)
        last_first_sent = started
        in_flight: dict[Future[_Attempt], _PodState] = {}
        with ThreadPoolExecutor(
            max_workers=min(self.options.concurrency, len(targets)), thread_name_prefix="evict"
        ) as pool:
            while states or in_flight:
                now = self.clock()
                busy = {s.pod.ref for s in in_flight.values()}
                if self.out_of_time():  # every pod has had its first try; no more retries
                    for ref in [r for r, s in states.items() if s.answered and r not in busy]:
                        result.pods[ref] = PodFate.FAILED if states[ref].last_error else PodFate.BLOCKED
                        del states[ref]
                for ref, state in states.items():
                    if ref not in busy and state.due <= now:
                        in_flight[pool.submit(self._attempt, state.pod, state.backoff)] = state
                        busy.add(ref)
                next_due = min((s.due for r, s in states.items() if r not in busy), default=now + 1.0)
                if not in_flight:
                    time.sleep(max(0.01, next_due - now))
                    continue
                done, _ = wait(in_flight, timeout=max(0.01, next_due - now), return_when=FIRST_COMPLETED)
                for future in done:
                    state = in_flight.pop(future)
                    attempt = future.result()
                    if not state.answered:
                        state.answered = True
                        unanswered -= 1
                        last_first_sent = max(last_first_sent, attempt.sent_at)
                        if unanswered == 0:
                            result.evictions_answered_seconds = self.clock() - started
                            result.evictions_sent_seconds = last_first_sent - started
                    self._record(state, attempt, result, states)

    def _record(self, state: _PodState, attempt: _Attempt, result: DrainResult, states: dict[str, _PodState]) -> None:
        pod = state.pod
        result.pdb_refusals += attempt.pdb_refused
        state.last_error = attempt.error
        if attempt.error:
            result.errors.append(f"{pod.ref}: {attempt.error}")
        if attempt.fate is None:
            state.due = self.clock() + attempt.wait
            state.backoff = min(state.backoff * 2, _BACKOFF_MAX)
            return
        fate = attempt.fate
        if fate is PodFate.EVICTED and pod.deleting_since is not None:
            fate = PodFate.ALREADY_TERMINATING  # shortened, but not this drain's eviction
        elif fate in (PodFate.EVICTED, PodFate.DELETED_PAST_PDB):
            result.removed.append((pod, fate, attempt.grace))
        result.pods[pod.ref] = fate
        result.grace_capped += attempt.grace_capped
        states.pop(pod.ref, None)

    def _attempt(self, pod: PodToEvict, backoff: float) -> _Attempt:
        sent_at = self.clock()
        try:
            attempt = self._try_eviction(pod, backoff)
        except Exception as exc:  # a thread's surprise must end as this pod's error, not the drain's
            attempt = _Attempt(None, wait=backoff, error=f"{type(exc).__name__}: {exc}")
        attempt.sent_at = sent_at
        return attempt

    def _try_eviction(self, pod: PodToEvict, backoff: float) -> _Attempt:
        """One eviction request; decides whether the pod is done or when to try again (after the
        server's Retry-After, else after ``backoff``, which doubles up to 1 s)."""
        grace = grace_period(pod.grace_seconds, self.seconds_left())
        try:
            self._post_eviction(pod, grace)
            if self.options.dry_run:
                return _Attempt(PodFate.WOULD_EVICT)
            return _Attempt(PodFate.EVICTED, grace=grace, grace_capped=grace < pod.grace_seconds)
        except NotFound:
            return _Attempt(PodFate.GONE)
        except TooManyRequests as exc:
            pdb = "disruption budget" in exc.reason.lower()
            wait_for = min(exc.retry_after if exc.retry_after is not None else backoff, _BACKOFF_MAX)
            if pdb and self.options.dry_run:
                return _Attempt(PodFate.WOULD_BLOCK, pdb_refused=True)
            left = self.seconds_left()
            if pdb and left is not None and self._deletes_past_pdb() and left - wait_for <= pod.grace_seconds:
                return self._delete_past_pdb(pod)
            return _Attempt(None, wait=wait_for, pdb_refused=pdb, error="" if pdb else str(exc))
        except KubeTemporaryError as exc:  # 401, 5xx, a lost connection: never a verdict on the pod
            wait_for = exc.retry_after if exc.retry_after is not None else backoff
            return _Attempt(None, wait=min(wait_for, _BACKOFF_MAX), error=str(exc))
        except KubePermanentError as exc:
            if exc.status == 403 and NAMESPACE_TERMINATING_CAUSE in exc.causes:
                return _Attempt(PodFate.NAMESPACE_TERMINATING)  # the namespace controller deletes it
            return _Attempt(PodFate.FAILED, error=str(exc))

    def _timeout(self) -> float:
        """An eviction waits for its answer as long as the drain's time allows: a request cut off
        after the server counted it in the PDB's disruptedPods, but before it deleted the pod,
        would leave the budget spent on nothing for two minutes."""
        return max(
            self.options.request_timeout_seconds, min(self.options.stop_by - self.clock(), _EVICTION_TIMEOUT_MAX)
        )

    def _post_eviction(self, pod: PodToEvict, grace: int) -> None:
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
            "deleteOptions": {"gracePeriodSeconds": grace, "preconditions": {"uid": pod.uid}},
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

    def _delete_past_pdb(self, pod: PodToEvict) -> _Attempt:
        grace = grace_period(pod.grace_seconds, self.seconds_left())
        self.log(
            "a PodDisruptionBudget still blocks and the instance is going away: deleting the pod with the time left",
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
            return _Attempt(PodFate.GONE, pdb_refused=True)
        except KubeTemporaryError as exc:  # tried again on the next round, as an eviction would be
            return _Attempt(None, wait=_BACKOFF_FIRST, pdb_refused=True, error=f"delete past PDB: {exc}")
        except KubePermanentError as exc:
            return _Attempt(PodFate.FAILED, pdb_refused=True, error=f"delete past PDB failed: {exc}")
        capped = grace < pod.grace_seconds
        return _Attempt(PodFate.DELETED_PAST_PDB, grace=grace, pdb_refused=True, grace_capped=capped)

    def _wait_until_gone(self, node_name: str, targets: list[PodToEvict], result: DrainResult) -> list[str]:
        """Polls the node's pods until none of the targets is left (or is left only because its
        deletion is stuck) or the drain's time is up."""
        wanted = {t.uid: t.ref for t in targets}
        while True:
            try:
                present = {p["metadata"].get("uid"): p for p in list_node_pods(self.api, node_name)}
            except KubeTemporaryError:
                present = {uid: {} for uid in wanted}  # cannot tell now; keep waiting until the deadline
            now = self.clock()
            for uid, ref in list(wanted.items()):
                deleted_at = deletion_time(present[uid]) if uid in present else None
                if deleted_at is not None and now - deleted_at > self.options.stuck_after_seconds:
                    self.log("not waiting for a pod whose deletion is stuck", pod=ref)
                    result.pods[ref] = PodFate.STUCK_TERMINATING
                    del wanted[uid]
            left = sorted(ref for uid, ref in wanted.items() if uid in present)
            end = self.options.stop_by
            if not left or now >= end:
                return left
            time.sleep(min(self.options.poll_interval_seconds, max(0.0, end - self.clock())))


def _ref(pod: dict[str, Any]) -> str:
    metadata = pod.get("metadata", {})
    return f"{metadata.get('namespace')}/{metadata.get('name')}"
