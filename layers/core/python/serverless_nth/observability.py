"""Logger, metrics and tracer, configured once for every function.

Metric names are constants here so that the dashboard in template.yaml and the tests use exactly
the names the code emits. Dimensions stay low-cardinality: event kind, cluster, outcome.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "serverless-nth"
NAMESPACE = "ServerlessNTH"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


# The dimension sets the metrics carry (CloudWatch identifies a metric by its exact set; the
# dashboard's SEARCH expressions name these).
EVENT_DIMENSIONS = ("cluster", "event_kind", "outcome", "service")
ERROR_DIMENSIONS = ("cluster", "service", "stage")  # Metric.ERRORS
COLD_START_DIMENSIONS = ("function_name", "service")  # Powertools' ColdStart
COLD_START = "ColdStart"


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
    DRAINS_INCOMPLETE = "DrainsIncomplete"
    PODS_EVICTED = "PodsEvicted"
    PODS_DELETED_PAST_PDB = "PodsDeletedPastPdb"
    EVICTIONS_REFUSED_BY_PDB = "EvictionsRefusedByPdb"
    PODS_REMAINING_AT_DEADLINE = "PodsRemainingAtDeadline"
    PODS_WITH_LOCAL_DATA = "PodsWithEmptyDirEvicted"
    PODS_WITHOUT_CONTROLLER = "PodsWithoutControllerEvicted"
    PODS_STUCK_TERMINATING = "PodsStuckTerminating"  # deletion ended long ago, still there: not waited for
    PODS_IN_TERMINATING_NAMESPACE = "PodsInTerminatingNamespace"  # go with their namespace: waited for
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
    ERRORS = "Errors"  # emitted alone, with the dimension "stage"
