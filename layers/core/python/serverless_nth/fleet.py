"""The clusters one deployment serves (docs/multi-cluster.md), and a ``Service`` for each.

A single-cluster deployment (no ``Clusters``, ``MemberAccounts`` or ``OrganizationId``) has one
Service, built as it always was, and routing costs nothing. Otherwise each event is routed by its
instance's own identity: EC2 in the event's account (through the member role for another account)
says which cluster the instance's tags name; the cluster must be served (``Settings.serves``) and
exist in that account (``ClusterDirectory``); its Service, built on first use and kept while the
function is warm, has the cluster's own settings (its tags, ``cluster_settings.py``), endpoint,
token, API client and time budget, so that one cluster's API server being down or slow touches
only that cluster's events. The node's identity proof (its providerID) is unchanged: tags are
user-writable, the proof is not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from serverless_nth.aws.autoscaling import LifecycleActions
from serverless_nth.aws.clients import AccountClients, aws_client
from serverless_nth.aws.ec2 import Ec2Instances
from serverless_nth.aws.eks import ClusterDirectory, EksAccess
from serverless_nth.aws.notify import Notifier
from serverless_nth.cluster_settings import for_cluster
from serverless_nth.config import Settings
from serverless_nth.events.model import InterruptionEvent
from serverless_nth.instance import Described, InstanceFacts
from serverless_nth.observability import ACCOUNT_DIMENSION, NAMESPACE, Metric, logger, metric_account
from serverless_nth.policy import ignores
from serverless_nth.service import Service

# a cluster's Service is built again (its tags read again) after this long, so that a changed tag
# reaches a function that stays warm for days
CLUSTER_REFRESH_SECONDS = 900.0


@dataclass(frozen=True)
class Route:
    service: Service  # the instance's cluster's; the stack's own cluster's when none is served
    described: Described | None = None  # EC2's answer, read to route: not asked again


class Fleet:
    def __init__(
        self,
        settings: Settings,
        accounts: AccountClients,
        notifier: Notifier,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._accounts = accounts
        self._notifier = notifier
        self._clock = clock
        self._lock = threading.RLock()  # home() builds its EC2 adapter under it
        self._home: Service | None = None
        self._services: dict[tuple[str | None, str], tuple[Service, float]] = {}
        self._ec2: dict[str | None, Ec2Instances] = {}
        self._directories: dict[str | None, ClusterDirectory] = {}
        self._routes: dict[str, tuple[str | None, str]] = {}  # instance -> (member account, cluster)

    def home(self) -> Service:
        """The stack's own cluster (``ClusterName``) with the stack's settings: a single-cluster
        deployment's one Service, and the one that tells why an event is none of the fleet's."""
        with self._lock:
            if self._home is None:
                eks = EksAccess(self.settings.cluster_name, aws_client("eks"), aws_client("sts"))
                self._home = Service(self.settings, self.instances(None), eks, self._notifier)
            return self._home

    def route(self, event: InterruptionEvent, home_account: str | None, known: InstanceFacts | None = None) -> Route:
        """The Service of the cluster that ``event``'s instance is in; ``known``: EC2's facts of the
        instance, read already (not asked again)."""
        settings = self.settings
        if not settings.serves_many:
            return Route(self.home(), None if known is None else Described(known))
        if ignores(event) or not settings.accepts_account(event.account, home_account or event.account):
            return Route(self.home())  # it tells why, and changes nothing
        member = self.member_of(event, home_account)
        kept = self._routes.get(event.instance_id)
        if kept is not None and kept[0] == member:
            return Route(self.service(member, kept[1], event.account), None if known is None else Described(known))
        facts = known if known is not None else self.instances(member).describe(event.instance_id)
        cluster = self._cluster_of(facts, member) if facts is not None else None
        if cluster is None:  # not found, or no served cluster: the stack's own Service says which
            return Route(self.home(), Described(facts))
        self._routes[event.instance_id] = (member, cluster)
        return Route(self.service(member, cluster, event.account), Described(facts))

    def service(self, member: str | None, cluster: str, account: str | None = None) -> Service:
        """``cluster`` of ``member`` (None: this account): built on first use, kept while warm;
        ``account``: the cluster's account ID, for the metrics of a multi-account deployment."""
        with self._lock:
            kept = self._services.get((member, cluster))
            if kept is not None and self._clock() - kept[1] < CLUSTER_REFRESH_SECONDS:
                return kept[0]
        built = self._build(member, cluster, account or member)
        with self._lock:
            self._services[(member, cluster)] = (built, self._clock())
        return built

    def instances(self, member: str | None) -> Ec2Instances:
        with self._lock:
            if member not in self._ec2:
                self._ec2[member] = Ec2Instances(self._accounts.in_account(member, "ec2"))
            return self._ec2[member]

    def lifecycle_actions(self, member: str | None) -> LifecycleActions:
        return LifecycleActions(self._accounts.in_account(member, "autoscaling"))

    def routing_requests(self) -> int:
        """AWS requests made to route, besides DescribeInstances (ListClusters pages)."""
        return sum(directory.requests_sent for directory in self._directories.values())

    def member_of(self, event: InterruptionEvent, home_account: str | None) -> str | None:
        """The event's account when it is a member's (None: this account's)."""
        return None if event.account == (home_account or event.account) else event.account

    def _cluster_of(self, facts: InstanceFacts, member: str | None) -> str | None:
        """The cluster the instance's tags name (``InstanceFacts.cluster_of``), when the deployment
        serves it and the account has it; an untagged instance of this account is the stack's own
        cluster's, as in a single-cluster deployment. Tags that disagree route nowhere: told."""
        name, named = facts.cluster_of()
        if not named:
            return self.settings.cluster_name if member is None else None
        if name is None:
            logger.warning("the instance's tags name several clusters: not routed", extra={"clusters": named})
            return None
        if not self.settings.serves(name):
            return None
        if member is None and name == self.settings.cluster_name:
            return name
        return name if self._directory(member).has(name) else None

    def _directory(self, member: str | None) -> ClusterDirectory:
        with self._lock:
            if member not in self._directories:
                self._directories[member] = ClusterDirectory(self._accounts.in_account(member, "eks"), self._clock)
            return self._directories[member]

    def _build(self, member: str | None, cluster: str, account_id: str | None) -> Service:
        """A cluster's Service: its endpoint and tags read once (DescribeCluster), its settings."""
        eks = EksAccess(cluster, self._accounts.in_account(member, "eks"), aws_client("sts"))
        tags = eks.endpoint().tags
        settings, problems = for_cluster(self.settings, cluster, tags)
        # a multi-account deployment's metrics carry the account (entrypoint.set_dimensions)
        account = metric_account(self.settings.many_accounts, account_id)
        for problem in problems:
            logger.warning(problem, extra={"cluster": cluster, "account": member})
            with single_metric(
                name=Metric.CLUSTER_TAGS_INVALID, unit=MetricUnit.Count, value=1, namespace=NAMESPACE
            ) as metric:
                metric.add_dimension("cluster", cluster)
                if account is not None:
                    metric.add_dimension(ACCOUNT_DIMENSION, account)
        return Service(settings, self.instances(member), eks, self._notifier)
