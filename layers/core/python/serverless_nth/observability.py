"""Logger, metrics and tracer, configured once for every function.

Metric names are constants here so that the dashboard in template.yaml and the tests use exactly
the names the code emits. Dimensions stay low-cardinality: event kind, cluster, outcome.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics

SERVICE = "serverless-nth"
NAMESPACE = "ServerlessNTH"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


class _Subsegments(Protocol):
    def in_subsegment(self, name: str) -> contextlib.AbstractContextManager[Any]: ...


class _TracerLike(Protocol):
    """What the core uses of Powertools' Tracer."""

    @property
    def provider(self) -> _Subsegments: ...

    def capture_lambda_handler(
        self, lambda_handler: Any = None, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[..., Any]: ...


def tracing_enabled() -> bool:
    """Powertools' own rule (Tracer._is_tracer_disabled): off when POWERTOOLS_TRACE_DISABLED is
    true, outside Lambda (no LAMBDA_TASK_ROOT) and under `sam local` or chalice."""
    if os.getenv("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "y", "yes", "t", "true", "on"):
        return False
    return bool(os.getenv("LAMBDA_TASK_ROOT")) and not (os.getenv("AWS_SAM_LOCAL") or os.getenv("AWS_CHALICE_CLI_MODE"))


class _NoSubsegments:
    @contextlib.contextmanager
    def in_subsegment(self, name: str) -> Iterator[None]:
        yield None


class _NoTracer:
    """Tracing off: the same calls, doing nothing, and the X-Ray SDK (about 0.12 s of a cold start,
    which Powertools' Tracer imports even when disabled) is never loaded."""

    provider = _NoSubsegments()

    def capture_lambda_handler(
        self, lambda_handler: Any = None, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[..., Any]:
        return lambda_handler if lambda_handler is not None else (lambda handler: handler)


def _tracer() -> _TracerLike:
    if not tracing_enabled():
        return _NoTracer()
    from aws_lambda_powertools import Tracer

    # what the functions call through: botocore, and http.client under urllib3 (the Kubernetes
    # API); Powertools' default patches every library X-Ray knows (requests, sqlite3, ...), which
    # imports them: about 50 ms more of a cold start for calls the functions never make
    return Tracer(service=SERVICE, patch_modules=("botocore", "httplib"))


tracer = _tracer()


# The dimension sets the metrics carry (CloudWatch identifies a metric by its exact set; the
# dashboard's SEARCH expressions name these).
EVENT_DIMENSIONS = ("cluster", "event_kind", "outcome", "service")
ERROR_DIMENSIONS = ("cluster", "service", "stage")  # Metric.ERRORS
TAGS_DIMENSIONS = ("cluster", "service")  # Metric.CLUSTER_TAGS_INVALID
# a multi-account deployment (MEMBER_ACCOUNTS or ORGANIZATION_ID) adds this one to each set above
ACCOUNT_DIMENSION = "account"


COLD_START_DIMENSIONS = ("function_name", "service")  # Powertools' ColdStart
COLD_START = "ColdStart"


def metric_account(many_accounts: bool, account: str | None) -> str | None:
    """The value of the dimension ``account`` (ACCOUNT_DIMENSION): in a multi-account deployment
    (``Settings.many_accounts``) the event's account, else the function's own ("unknown" when
    neither is known: Powertools drops a dimension whose value is empty);
    None otherwise, where no metric has that dimension (the dimension sets stay the single-account
    ones, and the dashboard's SEARCH schemas with them)."""
    return (account or "unknown") if many_accounts else None


class Metric:
    EVENTS_RECEIVED = "EventsReceived"
    EVENTS_IGNORED = "EventsIgnored"
    EVENTS_OUTDATED = "EventsOutdated"  # EC2's current state contradicts the event: nothing done
    EVENTS_FROM_OTHER_ACCOUNT = "EventsFromOtherAccount"  # another account or region: ignored
    MALFORMED_EVENTS = "MalformedEvents"
    INSTANCE_NOT_FOUND = "InstanceNotFound"
    NOT_THIS_CLUSTER = "InstanceNotInCluster"
    NODE_NOT_FOUND = "NodeNotFound"
    NODES_CORDONED = "NodesCordoned"
    NODES_TAINTED = "NodesTainted"
    NODES_DRAINED = "NodesDrained"
    NODES_RESTORED = "NodesRestored"  # running again: our cordon, taints and label undone
    # our cordon removed by someone else while our taints, label or records stay: told once per event
    NODES_UNCORDONED_BY_OTHERS = "NodesUncordonedByOthers"
    DRAINS_INCOMPLETE = "DrainsIncomplete"
    PODS_EVICTED = "PodsEvicted"
    PODS_DELETED_PAST_PDB = "PodsDeletedPastPdb"
    EVICTIONS_REFUSED_BY_PDB = "EvictionsRefusedByPdb"
    PODS_REMAINING_AT_DEADLINE = "PodsRemainingAtDeadline"
    PODS_WITH_LOCAL_DATA = "PodsWithEmptyDirEvicted"
    PODS_WITHOUT_CONTROLLER = "PodsWithoutControllerEvicted"
    PODS_STUCK_TERMINATING = "PodsStuckTerminating"  # deletion ended long ago, still there: not waited for
    PODS_IN_TERMINATING_NAMESPACE = "PodsInTerminatingNamespace"  # go with their namespace: waited for
    PODS_WITH_MULTIPLE_PDBS = "PodsWithMultiplePdbs"  # the Eviction API cannot evict them: left, named
    DRAIN_DURATION = "DrainDuration"
    EVENT_TO_CORDON_LATENCY = "EventToCordonLatency"
    NOTIFICATIONS_FAILED = "NotificationsFailed"
    # long drains (lifecycle hooks, scheduled changes), run as durable executions
    DRAIN_ROUNDS = "DrainRounds"
    DUPLICATE_DRAINS = "DuplicateDrains"  # another execution of the same event holds the node's lease
    LIFECYCLE_HEARTBEATS = "LifecycleHeartbeats"
    LIFECYCLE_ACTIONS_COMPLETED = "LifecycleActionsCompleted"
    # the action ended before this product completed it (its timeout, or someone else)
    LIFECYCLE_ACTIONS_LOST = "LifecycleActionsLost"
    # VolumeAttachments still naming a node when the instance was let go (VolumeDetachSeconds ran out)
    VOLUMES_STILL_ATTACHED = "VolumesStillAttached"
    # the instance-status backstop: scheduled events it handed to the long drains (no Health event
    # had cordoned their node), and impaired instances of this cluster it found
    SCHEDULED_EVENTS_STARTED = "ScheduledEventsStarted"
    INSTANCES_IMPAIRED = "InstancesImpaired"
    # a tag on an EKS cluster with a value its setting refuses: the stack's value stays (per cluster)
    CLUSTER_TAGS_INVALID = "ClusterTagsInvalid"
    ERRORS = "Errors"  # emitted alone, with the dimension "stage"
