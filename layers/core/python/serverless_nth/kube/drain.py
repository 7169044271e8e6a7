"""Drain with the semantics of ``kubectl drain``, for a node that is about to vanish.

Evictions go through the Eviction API (policy/v1) so PodDisruptionBudgets are honoured, all at
once with bounded concurrency; a 429 is retried honouring Retry-After, and a temporary failure
(401, 5xx, a lost connection) with backoff, until the drain's time is up; which pods are left
alone is decided in ``kube/pods.py``; grace periods are capped to the time left before a deadline
that is still ahead, and never below GRACE_FLOOR_SECONDS; ordinary pods go first and critical
ones once they are gone (``Drainer._ordinary_first``); then the drain waits until the evicted pods
are gone or its time is up, and says what remains and why.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from serverless_nth.kube.client import KubeApi, KubeTemporaryError
from serverless_nth.kube.evict import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    DONE_FATES,
    WAKE_CHECK_SECONDS,
    Attempt,
    DrainOptions,
    Evictor,
    PodFate,
)
from serverless_nth.kube.pods import (
    PodToEvict,
    critical_reserve,
    deletion_time,
    list_node_pods,
    orphaned_daemonset_pods,
    skip_reason,
    to_evict,
)

# around the moment the last evicted pod should be gone, the node's pods are listed this often (for
# at most FAST_POLL_WINDOW_SECONDS after it: a kubelet may take longer than the grace period)
FAST_POLL_SECONDS = 0.2
FAST_POLL_WINDOW_SECONDS = 5.0
# before a certain end, the ordinary pods' grace periods end this long before the critical pods'
# time begins: a kubelet reports a pod gone a moment after its grace period (kwok, 100 pods
# evicted within 1 s: the last one 0.1 s after the critical pods' time, with no such gap)
SETTLE_SECONDS = 2.0


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
    # from drain start until the critical pods' evictions began (after the ordinary pods); None:
    # no critical pods beside ordinary ones, or they were held
    critical_after_seconds: float | None = None
    errors: list[str] = field(default_factory=list)
    # the pods evicted or deleted by this drain, with the grace period each was given
    removed: list[tuple[PodToEvict, PodFate, int]] = field(default_factory=list)
    # the pods that several PDBs select, which the Eviction API cannot evict
    several_budgets: list[PodToEvict] = field(default_factory=list)

    def count(self, fate: PodFate) -> int:
        return sum(1 for f in self.pods.values() if f is fate)


@dataclass
class _PodState:
    pod: PodToEvict
    due: float  # clock time of the next attempt
    backoff: float = BACKOFF_FIRST
    answered: bool = False
    last_error: str = ""  # the last attempt failed with an error, not a PDB refusal
    pdb_waiting: bool = False  # the last attempt was refused by a PDB
    maybe_done: tuple[PodFate, int] | None = None  # a request whose answer was lost (Attempt.maybe_done)


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
        self.evictor = Evictor(api, options, log, clock)
        # when the longest grace period given so far runs out (clock time)
        self._last_gone = 0.0

    def ends_at(self) -> float:
        """When the drain stops retrying: its stop_by, or sooner the deadline less the margin."""
        left = self.evictor.seconds_left()
        return self.options.stop_by if left is None else min(self.options.stop_by, self.clock() + left)

    def out_of_time(self) -> bool:
        return self.clock() >= self.ends_at()

    def drain(self, node_name: str) -> DrainResult:
        started = self.clock()
        result = DrainResult()
        targets = self._targets(node_name, result)
        ordinary = [t for t in targets if not t.critical]
        critical = [t for t in targets if t.critical]
        held: list[PodToEvict] = []
        if ordinary and critical:
            held = self._ordinary_first(node_name, ordinary, critical, result, started)
        else:
            self._evict(targets, result, started)
        if targets and not self.options.dry_run:
            # no eviction can move a pod that several budgets select: not waited for, still there
            movable = [t for t in targets if t not in held and result.pods.get(t.ref) is not PodFate.MULTIPLE_PDBS]
            stay = sorted(t.ref for t in targets if t not in movable)
            left = self._wait_until_gone(node_name, movable, result, self._last_gone, self.options.stop_by)
            result.remaining = sorted(left + stay)
            for ref in result.remaining:
                result.pods.setdefault(ref, PodFate.BLOCKED)
        result.completed = (
            not self.options.dry_run and not result.remaining and all(f in DONE_FATES for f in result.pods.values())
        )
        result.duration_seconds = self.clock() - started
        return result

    def _ordinary_first(
        self,
        node_name: str,
        ordinary: list[PodToEvict],
        critical: list[PodToEvict],
        result: DrainResult,
        started: float,
    ) -> list[PodToEvict]:
        """The ordinary pods, then the critical ones once the ordinary ones are gone, as Karpenter's
        terminator (groupPodsByPriority) and the kubelet's graceful node shutdown order them. Before
        a certain end the critical pods keep their share of the time (``critical_reserve``): the
        ordinary pods' grace periods, retries and deletes past a PDB end that much sooner, and the
        critical pods go then at the latest, with the ordinary pods still refused by a PDB retried
        beside them until the end. Without one, the critical pods wait for the ordinary ones as long
        as the drain lasts; they are returned when that was too long (``PodFate.CRITICAL_HELD``)."""
        whole = self.evictor
        reserve = critical_reserve(critical, whole.seconds_left(), self.options.critical_share_percent)
        switch_at = self.ends_at()
        if reserve is not None and self.options.deadline is not None:
            switch_at = min(self.options.stop_by, self.options.deadline - self.options.margin_seconds - reserve)
            ends = self.options.deadline - reserve - SETTLE_SECONDS
            self.evictor = Evictor(self.api, dataclasses.replace(self.options, deadline=ends), self.log, self.clock)
        self._evict(ordinary, result, started)
        self.evictor = whole
        if not self.options.dry_run:
            movable = [t for t in ordinary if result.pods.get(t.ref) is not PodFate.MULTIPLE_PDBS]
            if self._wait_until_gone(node_name, movable, result, self._last_gone, switch_at) and reserve is None:
                for target in critical:
                    result.pods[target.ref] = PodFate.CRITICAL_HELD
                return critical
        result.critical_after_seconds = self.clock() - started
        again = [t for t in ordinary if result.pods.get(t.ref) in (PodFate.BLOCKED, PodFate.FAILED)]
        for target in again:
            del result.pods[target.ref]
        self._evict(critical + again, result, started)
        return []

    def _evict(self, targets: list[PodToEvict], result: DrainResult, started: float) -> None:
        to_send = [t for t in targets if self._needs_eviction(t)]
        for target in targets:
            if target not in to_send:
                result.pods[target.ref] = PodFate.ALREADY_TERMINATING
        removed_before = len(result.removed)
        if to_send:
            self._evict_all(to_send, result, started)
        graces = [g for _, _, g in result.removed[removed_before:]]
        answered = started + result.evictions_answered_seconds
        self._last_gone = max(self._last_gone, answered + max(graces, default=0))

    def _targets(self, node_name: str, result: DrainResult) -> list[PodToEvict]:
        pods = list_node_pods(self.api, node_name, give_up_at=self.options.stop_by)
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
            target = to_evict(pod, self.options.critical_priority)
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
        left = self.evictor.seconds_left()
        return left is not None and pod.deleting_since > self.clock() + left

    def _evict_all(self, targets: list[PodToEvict], result: DrainResult, started: float) -> None:
        # the drain cannot end before the longest grace period has run out: those pods go first
        ordered = sorted(targets, key=lambda t: -t.grace_seconds)
        states = {t.ref: _PodState(t, due=started) for t in ordered}
        workers = min(self.options.concurrency, len(targets))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evict") as pool:
            try:
                self._schedule(states, pool, result, started)
            finally:
                self.evictor.budgets.stop()

    def _schedule(
        self, states: dict[str, _PodState], pool: ThreadPoolExecutor, result: DrainResult, started: float
    ) -> None:
        """The one loop: sends every attempt that is due, wakes the pods whose budget allows a
        disruption again, and records each answer, until every pod has its fate."""
        unanswered = len(states)
        last_first_sent = started
        in_flight: dict[Future[Attempt], _PodState] = {}
        while states or in_flight:
            now = self.clock()
            busy = {s.pod.ref for s in in_flight.values()}
            woken = self.evictor.take_woken()
            for state in states.values():
                if state.pdb_waiting and state.pod.namespace in woken:
                    state.due = min(state.due, now)
            if self.out_of_time():  # every pod has had its first try; no more retries
                for ref in [r for r, s in states.items() if s.answered and r not in busy]:
                    result.pods[ref] = PodFate.FAILED if states[ref].last_error else PodFate.BLOCKED
                    del states[ref]
            for ref, state in states.items():
                if ref not in busy and state.due <= now:
                    in_flight[pool.submit(self.evictor.attempt, state.pod, state.backoff)] = state
                    busy.add(ref)
            next_due = min((s.due for r, s in states.items() if r not in busy), default=now + 1.0)
            if any(s.pdb_waiting for s in states.values()):
                next_due = min(next_due, now + WAKE_CHECK_SECONDS)
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

    def _record(self, state: _PodState, attempt: Attempt, result: DrainResult, states: dict[str, _PodState]) -> None:
        pod = state.pod
        result.pdb_refusals += attempt.pdb_refused
        state.last_error = attempt.error
        state.pdb_waiting = attempt.pdb_refused and attempt.fate is None
        if attempt.error:
            result.errors.append(f"{pod.ref}: {attempt.error}")
        if attempt.refreshed is not None:
            state.pod = attempt.refreshed
        if attempt.maybe_done is not None:
            state.maybe_done = attempt.maybe_done
        if attempt.fate is None:
            # however long the server asks to wait, the drain wakes at its end to report in time
            state.due = min(self.clock() + attempt.wait, self.ends_at())
            state.backoff = min(state.backoff * 2, BACKOFF_MAX)
            return
        fate, grace = attempt.fate, attempt.grace
        if state.maybe_done is not None and fate in (PodFate.ALREADY_TERMINATING, PodFate.GONE):
            # the deletion found under way is this drain's own request, whose answer was lost
            fate, grace = state.maybe_done
            result.grace_capped += grace < pod.grace_seconds
        if fate is PodFate.EVICTED and pod.deleting_since is not None:
            fate = PodFate.ALREADY_TERMINATING  # shortened, but not this drain's eviction
        elif fate in (PodFate.EVICTED, PodFate.DELETED_PAST_PDB, PodFate.DELETED_AT_END):
            result.removed.append((pod, fate, grace))
        elif fate is PodFate.MULTIPLE_PDBS:
            result.several_budgets.append(pod)
        result.pods[pod.ref] = fate
        result.grace_capped += attempt.grace_capped
        states.pop(pod.ref, None)

    def _wait_until_gone(
        self, node_name: str, targets: list[PodToEvict], result: DrainResult, last_gone: float, end: float
    ) -> list[str]:
        """Polls the node's pods until none of the targets is left (or is left only because its
        deletion is stuck) or ``end``, at the latest the drain's. Around ``last_gone``, when the longest grace
        period given runs out, it polls every FAST_POLL_SECONDS instead, so the drain's end is seen
        when it happens, not up to a poll interval later."""
        wanted = {t.uid: t.ref for t in targets}
        while True:
            try:
                pods = list_node_pods(self.api, node_name, give_up_at=self.options.stop_by)
                present = {p["metadata"].get("uid"): p for p in pods}
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
            end = min(end, self.options.stop_by)
            if not left or now >= end:
                return left
            interval = self.options.poll_interval_seconds
            if last_gone - interval <= now <= last_gone + FAST_POLL_WINDOW_SECONDS:
                interval = min(interval, FAST_POLL_SECONDS)
            time.sleep(min(interval, max(0.0, end - self.clock())))


def _ref(pod: dict[str, Any]) -> str:
    metadata = pod.get("metadata", {})
    return f"{metadata.get('namespace')}/{metadata.get('name')}"
