"""The instance-status backstop: an optional EventBridge Scheduler schedule (every minute by default)
runs it. The AWS Health stream is best effort, and an impaired status check sends no event at all,
so it asks EC2 (``DescribeInstanceStatus``) what Karpenter's instancestatus controller asks:

- an instance with a scheduled event (reboot, maintenance, retirement, stop) still to come: the
  event goes to the scheduled-change path (the long-drain starter, then the durable Health workflow:
  cordon at once, drain at the lead time before ``NotBefore``), keyed by its ``InstanceEventId``.
  A node already tainted for a scheduled change is that drain's already (the Health event came
  first, or an earlier run): nothing is started. A Health event that comes later finds the node's
  drain lease held by the backstop's execution and changes nothing (``held-by-another-event``);
- an instance whose instance or system check has failed for ``Settings.impaired_seconds`` (from
  its ``ImpairedSince``): cordoned and tainted at once (``serverless-nth/instance-impaired``), with
  the node's Event and metrics; drained only with ``DRAIN_ON_IMPAIRED``; out of service only once EC2
  says it is stopped or terminated (``policy``). Never terminated: the instance is not ours.

Cost per run, whatever the fleet's size: three DescribeInstanceStatus calls (one per filter,
``aws/ec2.STATUS_QUERIES``; a page holds 1,000 matches), then, only when one matched, one
DescribeInstances per 100 matching instances, whose answer the sequence then uses (not asked again).

A deployment of many clusters (docs/multi-cluster.md) asks so in its own account and in each account
``MemberAccounts`` lists (through the member role; an organisation's accounts are not listed, so
they have no backstop), and hands each instance found to its own cluster's Service (``fleet.py``).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_nth import report
from serverless_nth.aws.clients import aws_client
from serverless_nth.aws.functions import LongDrainStarter
from serverless_nth.config import ConfigError, Settings
from serverless_nth.entrypoint import (
    Handler,
    account_of,
    build_fleet,
    count_error,
    route,
    set_home_dimensions,
)
from serverless_nth.errors import HandlerError, TemporaryError
from serverless_nth.events import instance_status
from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.fleet import Fleet, Route
from serverless_nth.instance import InstanceFacts
from serverless_nth.kube.nodes import Node, find_node
from serverless_nth.observability import Metric, logger, metric_account, metrics, tracer
from serverless_nth.policy import decide, event_taint, for_node, instance_opted_in
from serverless_nth.report import Outcome

_REPORT_SECONDS = 3
STARTED = "started"  # a scheduled event handed to the long drains
ALREADY_DRAINING = "already-draining"  # the node carries the scheduled-change taint already
IMPAIRED_TOO_SHORTLY = "impaired-too-shortly"  # failed for less than Settings.impaired_seconds
DRAIN_DUE = "drain-due"  # cordoned; drained once every impaired node is cordoned (DRAIN_ON_IMPAIRED)


class BackstopFailed(TemporaryError):
    """Some instances could not be handled in this run; the others were. The next run (a minute
    later) tries again: every step is idempotent."""


@dataclass
class Backstop:
    fleet: Fleet
    starter: LongDrainStarter
    clock: Callable[[], float] = time.time
    error_account: str | None = None  # the errors' dimension ``account`` (observability.metric_account)

    def run(self, account: str, stop_by: float) -> dict[str, Any]:
        """This account's look, then each member account's (the deployment's accounts)."""
        summary = self._run(None, account, stop_by)
        for member in sorted(self.fleet.settings.member_accounts):
            more = self._run(member, account, stop_by)
            summary = {
                "outcomes": {**summary["outcomes"], **more["outcomes"]},
                "ec2_requests": summary["ec2_requests"] + more["ec2_requests"],
                "statuses": summary["statuses"] + more["statuses"],
            }
        failed = sorted(k for k, v in summary["outcomes"].items() if v.startswith(Outcome.ERROR))
        if failed:
            raise BackstopFailed(f"not handled this run: {', '.join(failed)}; the others: {summary}", stage="backstop")
        return summary

    def _route(self, event: InterruptionEvent, instance: InstanceFacts, home: str) -> Route | None:
        """The instance's cluster's Service, with the facts just read (its metrics carry that
        cluster and account); None when that cluster's ManagedTag leaves the instance out."""
        found = route(self.fleet, event, home, instance)
        if not instance_opted_in(instance.tags, found.service.settings):
            logger.info("not managed: no tag ManagedTag names", extra={"outcome": Outcome.NOT_MANAGED})
            return None
        return found

    def _run(self, member: str | None, home: str, stop_by: float) -> dict[str, Any]:
        """One look at EC2 in one account, then every instance found on its own (its own metrics,
        its own failure)."""
        settings, now = self.fleet.settings, self.clock()
        account = member or home
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        ec2 = self.fleet.instances(member)
        before = ec2.requests_sent
        statuses = ec2.statuses()
        scheduled = [e for s in statuses for e in instance_status.scheduled_events(s)]
        impaired: list[instance_status.Impairment] = []
        young: list[instance_status.Impairment] = []
        for status in statuses:
            found = instance_status.impairment(status)
            if found is not None:
                long_enough = (moment - found.since).total_seconds() >= settings.impaired_seconds
                (impaired if long_enough else young).append(found)
        wanted = list(dict.fromkeys([e.instance_id for e in scheduled] + [i.instance_id for i in impaired]))
        facts = {k: v for k, v in (ec2.describe_many(wanted) if wanted else {}).items() if self._served(v, member)}
        outcomes: dict[str, str] = {i.instance_id: IMPAIRED_TOO_SHORTLY for i in young}
        region = settings.region
        for event in scheduled:
            if event.instance_id in facts:
                payload = instance_status.payload(event, account, region, moment)
                outcomes[event.event_id] = self._unit(EventKind.SCHEDULED_CHANGE, self._hand_over, payload, facts, home)
        events = [instance_status.impaired_event(i, account, region) for i in impaired if i.instance_id in facts]
        due = []
        for impairment in events:
            result = self._unit(impairment.kind, self._cordon, impairment, facts[impairment.instance_id], home)
            outcomes[impairment.instance_id] = result
            if result == DRAIN_DUE:
                due.append(impairment)
        for impairment in due:  # every impaired node cordoned first, then the opted-in drains
            instance = facts[impairment.instance_id]
            outcomes[impairment.instance_id] = self._unit(
                impairment.kind, self._drain, impairment, instance, home, stop_by
            )
        summary = {"outcomes": outcomes, "ec2_requests": ec2.requests_sent - before, "statuses": len(statuses)}
        logger.info("instance status checked", extra={**summary, "account": account})
        return summary

    def _served(self, instance: InstanceFacts, member: str | None) -> bool:
        """Of a cluster this deployment serves, as its tags say (``Fleet.route`` has the last word,
        and each cluster's own ManagedTag is judged once the instance is routed: ``_route``)."""
        settings = self.fleet.settings
        if settings.serves_many:
            name, named = instance.cluster_of()
            return (not named and member is None) or (name is not None and settings.serves(name))
        clusters = instance.cluster_names()
        return not clusters or settings.cluster_name in clusters

    def _unit(self, kind: EventKind, work: Callable[..., str], *args: Any) -> str:
        """One instance's work, its metrics flushed with its own dimensions; a failure is counted
        with its stage and recorded as this instance's outcome, never the others'."""
        try:
            return work(*args)
        except HandlerError as exc:
            count_error(self.fleet.settings.cluster_name, exc.stage, self.error_account)
            logger.exception("instance not handled", extra={"stage": exc.stage})
            return f"{Outcome.ERROR}: {exc}"
        finally:
            if metrics.metric_set:
                for key, value in (("event_kind", kind.value), ("outcome", Outcome.IGNORED)):
                    if key not in metrics.dimension_set:
                        metrics.add_dimension(key, value)
                metrics.flush_metrics()

    def _hand_over(self, payload: dict[str, Any], facts: dict[str, InstanceFacts], home: str) -> str:
        """Starts the scheduled-change drain, unless its node is another drain's already or this
        product leaves the node alone (its labels, KarpenterNodes)."""
        event = instance_status.normalise(payload).events[0]
        instance = facts[event.instance_id]
        found = self._route(event, instance, home)
        if found is None:
            return Outcome.NOT_MANAGED
        service = found.service
        node = find_node(service.kube(), instance)
        if not isinstance(node, Node):
            return Outcome.NODE_NOT_FOUND
        settings, now = service.settings, datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
        if for_node(decide(event, settings, instance.presence, now), event, node.labels, settings, now).is_noop:
            return Outcome.OPTED_OUT
        if node.has_taint_key(event_taint(event, settings).key):
            return ALREADY_DRAINING
        self.starter.start(payload)
        metrics.add_dimension("outcome", STARTED)
        report.count(Metric.SCHEDULED_EVENTS_STARTED)
        logger.info("scheduled event handed to the long drains", extra={"event": payload["detail"]})
        return STARTED

    def _cordon(self, event: InterruptionEvent, instance: InstanceFacts, home: str) -> str:
        found = self._route(event, instance, home)
        if found is None:
            return Outcome.NOT_MANAGED
        report.count(Metric.INSTANCES_IMPAIRED)
        result = found.service.handle(event, account=home, drain=False, described=found.described)
        return DRAIN_DUE if result.drain_due else result.outcome

    def _drain(self, event: InterruptionEvent, instance: InstanceFacts, home: str, stop_by: float) -> str:
        found = self._route(event, instance, home)
        if found is None:
            return Outcome.NOT_MANAGED
        return found.service.handle(event, stop_by=stop_by, account=home, described=found.described).outcome


def make_handler() -> Handler:
    """The scheduled function's handler. The schedule's payload (events/instance-status-check.json)
    says only when it fired: what to do comes from EC2."""
    settings = Settings.from_env()
    if not settings.long_drain_start_function or not settings.region:
        raise ConfigError("LONG_DRAIN_START_FUNCTION (the long-drain starter) and AWS_REGION must be set")
    backstop = Backstop(
        build_fleet(settings), LongDrainStarter(aws_client("lambda"), settings.long_drain_start_function)
    )
    metrics.set_default_dimensions(cluster=settings.cluster_name)

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics(capture_cold_start_metric=True)
    @tracer.capture_lambda_handler(capture_response=False)
    def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
        now = time.time()
        stop_by = now + context.get_remaining_time_in_millis() / 1000 - _REPORT_SECONDS
        logger.append_keys(cluster=settings.cluster_name, scheduled_time=(event or {}).get("scheduled-time"))
        home = account_of(context)
        set_home_dimensions(settings, home)  # each instance's own, once routed (Backstop._service)
        backstop.error_account = metric_account(settings.many_accounts, home)
        try:
            return backstop.run(home or "", stop_by)
        except HandlerError as exc:
            count_error(settings.cluster_name, exc.stage, backstop.error_account)
            logger.exception("instance status check failed", extra={"stage": exc.stage})
            raise

    return cast(Handler, lambda_handler)
