"""The sequence every function runs: decide, find the instance and its node, cordon, taint, drain.
Telling what happened (metrics, logs, Kubernetes Events, the SNS notification) lives beside it,
in report.py.

It depends on small interfaces (Ec2Instances, EksAccess, KubeApi, Notifier) built once per
execution environment and reused while the function is warm.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

from aws_lambda_powertools.metrics import MetricUnit

from serverless_nth import report
from serverless_nth.aws.ec2 import Ec2Instances
from serverless_nth.aws.eks import EksAccess
from serverless_nth.aws.notify import Notifier
from serverless_nth.config import Settings
from serverless_nth.events.model import InterruptionEvent
from serverless_nth.instance import Described, InstanceFacts
from serverless_nth.kube.client import KubeApi, NotFound, path
from serverless_nth.kube.cordon import cordon_and_taint, restore
from serverless_nth.kube.drain import DrainResult
from serverless_nth.kube.evict import PodFate
from serverless_nth.kube.nodes import Node, find_node
from serverless_nth.observability import Metric, logger, metrics, tracer
from serverless_nth.policy import Action, Basis, decide, for_node, ignores, instance_opted_in
from serverless_nth.report import HandlerResult, Outcome, quiet
from serverless_nth.running_drain import drain_node, run_drain


class Service:
    def __init__(
        self,
        settings: Settings,
        instances: Ec2Instances,
        eks: EksAccess,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.instances = instances
        self.eks = eks
        self.notifier = notifier or Notifier("", None)
        self.clock = clock
        self._kube: KubeApi | None = None

    def kube(self) -> KubeApi:
        """The API client, made on first use and kept while the function is warm."""
        if self._kube is None:
            endpoint = self.eks.endpoint()
            self._kube = KubeApi(
                endpoint.endpoint,
                endpoint.ca_pem,
                self.eks.token,
                self.eks.forget_token,
                timeout_seconds=self.settings.request_timeout_seconds,
                pool_size=self.settings.eviction_concurrency,
            )
        return self._kube

    def handle(
        self,
        event: InterruptionEvent,
        stop_by: float | None = None,
        account: str | None = None,
        drain: bool = True,
        described: Described | None = None,
    ) -> HandlerResult:
        """``stop_by``: time.time() by which the result must be returned (the invocation's end);
        ``account``: the function's own AWS account (from its ARN), when known; ``drain`` False:
        stop after the cordon and say whether a drain is due (``result.drain_due``), for a long
        drain that a durable execution runs in rounds (``drain_round``); ``described``: EC2's
        answer already read (to route the event, ``fleet.py``), not asked again."""
        logger.append_keys(
            cluster=self.settings.cluster_name,
            account=event.account,
            instance_id=event.instance_id,
            event_kind=event.kind.value,
        )
        metrics.add_dimension("event_kind", event.kind.value)
        metrics.add_metric(name=Metric.EVENTS_RECEIVED, unit=MetricUnit.Count, value=1)
        started = self.clock()
        result = self._handle(event, stop_by, account, drain, described)
        result.seconds = round(self.clock() - started, 4)
        metrics.add_dimension("outcome", result.outcome)
        if result.node is not None and not result.dry_run:
            report.notify(self.notifier, event, result)
        return result

    def foreign(self, event: InterruptionEvent, account: str | None) -> str | None:
        """Why the event is not this deployment's (another region, or an account that is neither
        the function's nor a member: a bus that receives other accounts' events, or a forged one),
        or None. Never this cluster's nodes."""
        home = (account or event.account, self.settings.region or event.region)
        if event.region == home[1] and self.settings.accepts_account(event.account, home[0]):
            return None
        members = " or its member accounts" if self.settings.member_accounts else ""
        return (
            f"the event is for account {event.account} in {event.region}, "
            f"this function runs in {home[0]}{members} {home[1]}"
        )

    def _handle(
        self,
        event: InterruptionEvent,
        stop_by: float | None,
        account: str | None,
        drain: bool,
        described: Described | None,
    ) -> HandlerResult:
        """The steps, top to bottom: decide (EC2's facts and the policy), find the node, the node's
        own policy, then restore, or cordon and drain. A step that ends the handling has told why
        (``report.quiet``) and returns None."""
        started = self.clock()
        aws_before = self.instances.requests_sent + self.eks.requests_sent
        settings = self.settings
        result = HandlerResult(
            Outcome.IGNORED,
            event.kind.value,
            event.instance_id,
            settings.cluster_name,
            account=event.account,
            dry_run=settings.dry_run,
        )
        decided = self._decide(event, account, started, result, described)
        if decided is None:
            return result
        instance, action = decided
        api = self.kube()
        kube_before = api.requests_sent
        try:
            node = self._find(api, instance, result)
            if node is None:
                return result
            for_this_node = self._for_node(action, event, node, started, result)
            if for_this_node is None:
                return result
            action = for_this_node
            if action.restore:
                self._restore(api, event, node, result)
                return result
            self.tell_if_uncordoned(event, node)
            self._cordon(api, event, action, node, result)
            result.cordoned_after_seconds = round(self.clock() - started, 4)
            aws_after = self.instances.requests_sent + self.eks.requests_sent
            result.requests_to_cordon = api.requests_sent - kube_before + aws_after - aws_before
            if not settings.dry_run:
                report.cordon_event(api, event, action, node, instance.state)
            result.drain_due = action.drain and not drain
            if action.drain and drain:
                drain_node(settings, api, event, action, node, result, started, stop_by, self.clock)
            return result
        finally:
            result.api_requests = api.requests_sent - kube_before

    def _decide(
        self,
        event: InterruptionEvent,
        account: str | None,
        started: float,
        result: HandlerResult,
        described: Described | None,
    ) -> tuple[InstanceFacts, Action] | None:
        """What EC2 says of the instance now, and what the event means for it."""
        settings = self.settings
        if ignores(event):
            quiet(result, Outcome.IGNORED, Metric.EVENTS_IGNORED, "no action for this event")
            return None
        why = self.foreign(event, account)
        if why:
            quiet(result, Outcome.OTHER_ACCOUNT, Metric.EVENTS_FROM_OTHER_ACCOUNT, why)
            return None
        if described is not None:
            instance = described.facts
        else:
            with tracer.provider.in_subsegment("DescribeInstances"):
                instance = self.instances.describe(event.instance_id)
        if instance is None:
            quiet(result, Outcome.INSTANCE_NOT_FOUND, Metric.INSTANCE_NOT_FOUND, "EC2 does not know this instance")
            return None
        clusters = instance.cluster_names()
        if clusters and settings.cluster_name not in clusters:
            served = "which this deployment does not serve" if settings.serves_many else "not to this cluster"
            why = f"the instance belongs to {', '.join(sorted(clusters))}, {served}"
            quiet(result, Outcome.NOT_THIS_CLUSTER, Metric.NOT_THIS_CLUSTER, why)
            return None
        if not instance_opted_in(instance.tags, settings):
            why = f"the instance has no tag {settings.managed_tag} (ManagedTag)"
            quiet(result, Outcome.NOT_MANAGED, Metric.EVENTS_IGNORED, why)
            return None
        action = decide(event, settings, instance.presence, datetime.datetime.fromtimestamp(started, datetime.UTC))
        result.instance_state, result.basis = instance.state, action.basis.value
        logger.append_keys(instance_state=instance.state, basis=action.basis.value)
        if action.is_noop:
            why = f"EC2 says the instance is {instance.state}: the {event.kind.value} event no longer holds"
            quiet(result, Outcome.OUTDATED, Metric.EVENTS_OUTDATED, why)
            return None
        return instance, action

    def _find(self, api: KubeApi, instance: InstanceFacts, result: HandlerResult) -> Node | None:
        """The instance's node, proven by its providerID."""
        with tracer.provider.in_subsegment("NodeLookup"):
            node = find_node(api, instance)
        if node is None:
            quiet(result, Outcome.NODE_NOT_FOUND, Metric.NODE_NOT_FOUND, "no node of this cluster is this instance")
            return None
        if not isinstance(node, Node):
            why = (
                f"node {node.name} has the instance's name but no spec.providerID, and the name proves nothing "
                "(another VPC may have the same): it is left alone until its providerID is set"
            )
            quiet(result, Outcome.IDENTITY_UNPROVEN, Metric.NODE_NOT_FOUND, why)
            return None
        result.node = node.name
        logger.append_keys(node=node.name)
        return node

    def _for_node(
        self, action: Action, event: InterruptionEvent, node: Node, started: float, result: HandlerResult
    ) -> Action | None:
        """The action as the node's labels have it (per-node policy, Karpenter)."""
        now = datetime.datetime.fromtimestamp(started, datetime.UTC)
        action = for_node(action, event, node.labels, self.settings, now)
        result.basis = action.basis.value
        if action.is_noop:
            outcome = Outcome.LEFT_TO_KARPENTER if action.basis is Basis.LEFT_TO_KARPENTER else Outcome.OPTED_OUT
            quiet(result, outcome, Metric.EVENTS_IGNORED, f"the node's policy says so ({action.basis.value})")
            return None
        return action

    def _cordon(
        self, api: KubeApi, event: InterruptionEvent, action: Action, node: Node, result: HandlerResult
    ) -> None:
        dry_run = self.settings.dry_run
        with tracer.provider.in_subsegment("Cordon"):
            cordon = cordon_and_taint(
                api, node, action.taints, action.exclude_from_lb, dry_run, event.event_id, event.time
            )
        result.cordoned, result.taints_added = cordon.cordoned, list(cordon.taints_added)
        result.lb_excluded = cordon.lb_excluded
        result.node_unschedulable = cordon.node.unschedulable
        result.cordoned_by_this_event = cordon.node.cordoned_by == event.event_id
        result.outcome = Outcome.DRY_RUN if dry_run else Outcome.CORDONED
        logger.info(
            "dry run: would cordon and taint" if dry_run else "node cordoned and tainted",
            extra={"outcome": result.outcome, "cordoned": cordon.cordoned, "taints_added": list(cordon.taints_added)},
        )
        if dry_run:
            return
        if cordon.cordoned:
            metrics.add_metric(name=Metric.NODES_CORDONED, unit=MetricUnit.Count, value=1)
            latency = max(0.0, self.clock() - event.time.timestamp())
            metrics.add_metric(name=Metric.EVENT_TO_CORDON_LATENCY, unit=MetricUnit.Seconds, value=latency)
        if cordon.taints_added:
            metrics.add_metric(name=Metric.NODES_TAINTED, unit=MetricUnit.Count, value=1)

    def restore_marks(self, event: InterruptionEvent, node: Node, since: datetime.datetime) -> None:
        """What this product added to ``node`` (as just read) for events older than ``since`` (an
        instance launched again then) undone, as a return to running undoes it."""
        result = HandlerResult(
            Outcome.IGNORED, event.kind.value, event.instance_id, self.settings.cluster_name, account=event.account
        )
        self._restore(self.kube(), event, node, result, since)

    def _restore(
        self,
        api: KubeApi,
        event: InterruptionEvent,
        node: Node,
        result: HandlerResult,
        since: datetime.datetime | None = None,
    ) -> None:
        """The instance runs again: undo what this product added, and only that, unless an event
        newer than this one (or than ``since``) holds the node (this `running` event is late or
        replayed)."""
        with tracer.provider.in_subsegment("Restore"):
            restored = restore(api, node, self.settings.dry_run, since or event.time)
        if restored.held_since:
            result.basis = Basis.SUPERSEDED.value
            why = f"an event of {restored.held_since}, newer than this one, holds the node"
            quiet(result, Outcome.OUTDATED, Metric.EVENTS_OUTDATED, why)
            return
        undone = restored.undone
        result.undone = list(undone)
        result.outcome = Outcome.DRY_RUN if self.settings.dry_run else Outcome.RESTORED if undone else Outcome.IGNORED
        logger.info("node restored" if undone else "nothing of ours on the node", extra={"undone": list(undone)})
        if undone and not self.settings.dry_run:
            metrics.add_metric(name=Metric.NODES_RESTORED, unit=MetricUnit.Count, value=1)
            report.restore_event(api, event, node, undone)

    def drain_round(
        self, event: InterruptionEvent, node: Node, stop_by: float, deadline: float | None = None
    ) -> DrainResult:
        """One round of a long drain, until ``stop_by``: every pod's own grace period, every PDB
        respected (the instance waits for this drain, or its end is far ahead), unless the policy
        gives the round a certain ``deadline`` (a Capacity Block's end once its instances have begun
        to terminate: grace capped, ``BlockedPodPolicy``). Idempotent: a round
        lists what is left on the node and evicts it, so a round run again after a crash, or by a
        resumed execution, just goes on. Per-pod metrics and Events are told per round; the drain's
        outcome once, by the caller. ``node`` as just read (``get_node``)."""
        api = self.kube()
        drain = run_drain(self.settings, api, node, deadline, stop_by, self.clock)
        if not self.settings.dry_run:
            report.drain_round_metrics(drain)
            report.drain_events(api, event, node, drain, self.settings.eviction_concurrency, summary=False)
        failed = drain.count(PodFate.FAILED)
        if failed:
            logger.warning("drain round: pods not evicted because of errors", extra={"errors": drain.errors[-5:]})
        return drain

    def tell_if_uncordoned(self, event: InterruptionEvent, node: Node) -> None:
        """Our cordon removed by someone else while our marks stay: told (once per event), not left
        half-handled in silence. ``node`` as just read."""
        if node.cordoned_by and not node.unschedulable and not self.settings.dry_run:
            report.uncordoned_by_other(self.kube(), event, node)

    def get_node(self, name: str) -> Node | None:
        """The node as it is now; None when it is gone."""
        try:
            return Node.from_api(self.kube().request("GET", path("api", "v1", "nodes", name), stage="drain"))
        except NotFound:
            return None
