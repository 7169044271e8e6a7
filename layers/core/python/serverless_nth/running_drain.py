"""The sequence's drain step: the drain's options from the cluster's settings, the drain run, its
outcome told (result, metrics, the node's Events), and a drain that errors left unfinished failed,
so that Lambda retries the event."""

from __future__ import annotations

from collections.abc import Callable

from serverless_nth import report
from serverless_nth.config import Settings
from serverless_nth.errors import TemporaryError
from serverless_nth.events.model import InterruptionEvent
from serverless_nth.kube.client import KubeApi
from serverless_nth.kube.drain import Drainer, DrainResult
from serverless_nth.kube.evict import DrainOptions, PodFate
from serverless_nth.kube.nodes import Node
from serverless_nth.observability import logger, tracer
from serverless_nth.policy import Action
from serverless_nth.report import HandlerResult, Outcome


class DrainFailed(TemporaryError):
    """Pods were left because of errors, not PDBs: the invocation fails so that Lambda retries the
    event and, in the end, the on-failure queue keeps it for a replay."""


def run_drain(
    settings: Settings,
    api: KubeApi,
    node: Node,
    deadline: float | None,
    stop_by: float,
    clock: Callable[[], float],
) -> DrainResult:
    options = DrainOptions(
        deadline=deadline,
        stop_by=stop_by,
        margin_seconds=settings.deadline_margin_seconds,
        concurrency=settings.eviction_concurrency,
        blocked_pod_policy=settings.blocked_pod_policy,
        poll_interval_seconds=settings.poll_interval_seconds,
        dry_run=settings.dry_run,
        stuck_after_seconds=settings.skip_wait_for_delete_seconds,
        request_timeout_seconds=settings.request_timeout_seconds,
        critical_priority=settings.critical_pod_priority,
        critical_share_percent=settings.critical_pod_share,
    )
    with tracer.provider.in_subsegment("Drain"):
        return Drainer(api, options, log=lambda msg, **kw: logger.info(msg, extra=kw), clock=clock).drain(node.name)


def drain_node(
    settings: Settings,
    api: KubeApi,
    event: InterruptionEvent,
    action: Action,
    node: Node,
    result: HandlerResult,
    started: float,
    stop_by: float | None,
    clock: Callable[[], float],
) -> None:
    ends = [t for t in (stop_by, action.wait_until.timestamp() if action.wait_until else None) if t is not None]
    deadline = action.deadline.timestamp() if action.deadline else None
    drain_started_after = clock() - started
    drain = run_drain(settings, api, node, deadline, min(ends, default=float("inf")), clock)
    result.drain = report.drain_summary(drain, drain_started_after)
    if not settings.dry_run:
        result.outcome = Outcome.DRAINED if drain.completed else Outcome.DRAIN_INCOMPLETE
        report.drain_metrics(drain)
        report.drain_events(api, event, node, drain, settings.eviction_concurrency)
    logger.info(
        "drain finished" if drain.completed else "drain ended",
        extra={"outcome": result.outcome, "drain": result.drain},
    )
    failed = drain.count(PodFate.FAILED)
    if failed and not drain.completed:
        raise DrainFailed(
            f"{failed} pods not evicted because of errors ({len(drain.remaining)} left on the node): "
            f"{drain.errors[-1] if drain.errors else 'no detail'}",
            stage="drain",
        )
