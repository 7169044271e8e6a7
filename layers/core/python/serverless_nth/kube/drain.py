"""Drain with the semantics of ``kubectl drain``, for a node that is about to vanish.

Evictions go through the Eviction API (policy/v1) so PodDisruptionBudgets are honoured, all at
once with bounded concurrency; a 429 is retried honouring Retry-After until the deadline; DaemonSet
pods, mirror pods and finished pods are left alone; grace periods are capped to the time left
before a deadline that is still ahead, and never below GRACE_FLOOR_SECONDS; then the drain waits
until the evicted pods are gone or its time is up, and says what remains.
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

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_GRACE_SECONDS = 30
# No pod is ever sent a shorter grace period. The API server reads 0 as "remove the object now"
# (a force delete, whatever the kubelet is doing), and a truncated 0.9 s would become that.
GRACE_FLOOR_SECONDS = 1
# A PDB frees up when a replacement pod turns Ready: retry often enough not to add much to that.
_BACKOFF_FIRST, _BACKOFF_MAX = 0.25, 1.0


class PodFate(StrEnum):
    EVICTED = "evicted"  # the Eviction API accepted it
    GONE = "gone"  # it disappeared before we evicted it
    DELETED_PAST_PDB = "deleted-past-pdb"  # BlockedPodPolicy.DELETE_BEFORE_DEADLINE
    BLOCKED = "blocked"  # a PDB still refused at the deadline
    FAILED = "failed"  # a permanent error (permission, invalid request)
    WOULD_EVICT = "would-evict"  # dry run: the server accepted an eviction with dryRun=All
    WOULD_BLOCK = "would-block"  # dry run: a PDB would refuse it now


@dataclass(frozen=True)
class PodToEvict:
    namespace: str
    name: str
    uid: str
    grace_seconds: int
    has_emptydir: bool
    has_controller: bool

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class DrainResult:
    pods: dict[str, PodFate] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    remaining: list[str] = field(default_factory=list)  # still on the node when the drain ended
    pdb_refusals: int = 0  # 429 answers from the Eviction API
    emptydir_pods: int = 0
    unmanaged_pods: int = 0
    grace_capped: int = 0
    # from drain start until every pod's first eviction request was sent, and answered
    evictions_sent_seconds: float = 0.0
    evictions_answered_seconds: float = 0.0
    duration_seconds: float = 0.0
    completed: bool = False  # every evicted pod was gone before the deadline
    errors: list[str] = field(default_factory=list)
    # the pods evicted or deleted, with the grace period each was given
    removed: list[tuple[PodToEvict, PodFate, int]] = field(default_factory=list)

    def count(self, fate: PodFate) -> int:
        return sum(1 for f in self.pods.values() if f is fate)


def skip_reason(pod: dict[str, Any]) -> str | None:
    metadata, status = pod.get("metadata", {}), pod.get("status", {})
    if MIRROR_ANNOTATION in (metadata.get("annotations") or {}):
        return "mirror"
    if any(o.get("controller") and o.get("kind") == "DaemonSet" for o in metadata.get("ownerReferences") or ()):
        return "daemonset"
    if status.get("phase") in ("Succeeded", "Failed"):
        return "finished"
    return None


def to_evict(pod: dict[str, Any]) -> PodToEvict:
    metadata, spec = pod["metadata"], pod.get("spec", {})
    grace = spec.get("terminationGracePeriodSeconds")
    return PodToEvict(
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata.get("uid", ""),
        grace_seconds=DEFAULT_GRACE_SECONDS if grace is None else int(grace),
        has_emptydir=any("emptyDir" in v for v in spec.get("volumes") or ()),
        has_controller=any(o.get("controller") for o in metadata.get("ownerReferences") or ()),
    )


def list_node_pods(api: KubeApi, node_name: str) -> list[dict[str, Any]]:
    query = {"fieldSelector": f"spec.nodeName={node_name}", "limit": "500"}
    pods: list[dict[str, Any]] = []
    while True:
        page = api.request("GET", "/api/v1/pods", query=query, stage="drain")
        pods.extend(page.get("items", []))
        token = page.get("metadata", {}).get("continue")
        if not token:
            return pods
        query = {**query, "continue": token}


def grace_period(own_seconds: int, seconds_left: float | None) -> int:
    """The pod's own grace period, capped to ``seconds_left`` when a deadline caps it, and never
    below the floor."""
    grace = max(own_seconds, GRACE_FLOOR_SECONDS)
    if seconds_left is None:
        return grace
    return max(GRACE_FLOOR_SECONDS, min(grace, int(seconds_left)))


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
        if targets:
            self._evict_all(targets, result, started)
            if not self.options.dry_run:
                result.remaining = self._wait_until_gone(node_name, targets)
                for ref in result.remaining:
                    result.pods.setdefault(ref, PodFate.BLOCKED)
        result.completed = (
            not self.options.dry_run
            and not result.remaining
            and all(f in (PodFate.EVICTED, PodFate.GONE, PodFate.DELETED_PAST_PDB) for f in result.pods.values())
        )
        result.duration_seconds = self.clock() - started
        return result

    def _targets(self, node_name: str, result: DrainResult) -> list[PodToEvict]:
        targets: list[PodToEvict] = []
        for pod in list_node_pods(self.api, node_name):
            reason = skip_reason(pod)
            if reason:
                result.skipped[reason] = result.skipped.get(reason, 0) + 1
                continue
            target = to_evict(pod)
            targets.append(target)
            result.emptydir_pods += target.has_emptydir
            result.unmanaged_pods += not target.has_controller
            if target.has_emptydir or not target.has_controller:
                self.log(
                    "evicting a pod whose local data or missing controller means it will not come back as it was",
                    pod=target.ref,
                    emptydir=target.has_emptydir,
                    controller=target.has_controller,
                )
        return targets

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
                        result.pods[ref] = PodFate.BLOCKED
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
                    result.pdb_refusals += attempt.pdb_refused
                    if attempt.error:
                        result.errors.append(f"{state.pod.ref}: {attempt.error}")
                    if attempt.fate in (PodFate.EVICTED, PodFate.DELETED_PAST_PDB):
                        result.removed.append((state.pod, attempt.fate, attempt.grace))
                    if attempt.fate is not None:
                        result.pods[state.pod.ref] = attempt.fate
                        states.pop(state.pod.ref, None)
                        result.grace_capped += attempt.grace_capped
                    else:
                        state.due = self.clock() + attempt.wait
                        state.backoff = min(state.backoff * 2, _BACKOFF_MAX)

    def _attempt(self, pod: PodToEvict, backoff: float) -> _Attempt:
        sent_at = self.clock()
        attempt = self._try_eviction(pod, backoff)
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
            wait_for = exc.retry_after if exc.retry_after is not None else backoff
            if pdb and self.options.dry_run:
                return _Attempt(PodFate.WOULD_BLOCK, pdb_refused=True)
            left = self.seconds_left()
            if (
                pdb
                and left is not None
                and self._deletes_past_pdb()
                and left - min(wait_for, _BACKOFF_MAX) <= pod.grace_seconds
            ):
                return self._delete_past_pdb(pod)
            return _Attempt(None, wait=min(wait_for, _BACKOFF_MAX), pdb_refused=pdb)
        except KubeTemporaryError as exc:
            return _Attempt(None, wait=min(exc.retry_after or backoff, _BACKOFF_MAX))
        except KubePermanentError as exc:
            return _Attempt(PodFate.FAILED, error=str(exc))

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
            )
        except NotFound:
            return _Attempt(PodFate.GONE, pdb_refused=True)
        except (KubeTemporaryError, KubePermanentError) as exc:
            return _Attempt(PodFate.BLOCKED, pdb_refused=True, error=f"delete past PDB failed: {exc}")
        return _Attempt(PodFate.DELETED_PAST_PDB, grace=grace, pdb_refused=True, grace_capped=grace < pod.grace_seconds)

    def _wait_until_gone(self, node_name: str, targets: list[PodToEvict]) -> list[str]:
        """Polls the node's pods until none of the targets is left or the deadline passes."""
        wanted = {t.uid: t.ref for t in targets}
        while True:
            try:
                present = {p["metadata"].get("uid") for p in list_node_pods(self.api, node_name)}
            except KubeTemporaryError:
                present = set(wanted)  # cannot tell now; keep waiting until the deadline
            left = sorted(ref for uid, ref in wanted.items() if uid in present)
            end = self.options.stop_by
            if not left or self.clock() >= end:
                return left
            time.sleep(min(self.options.poll_interval_seconds, max(0.0, end - self.clock())))
