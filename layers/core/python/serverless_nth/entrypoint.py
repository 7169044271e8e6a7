"""Turns a ``normalise`` function into a Lambda handler: the only glue the handlers need.

Settings are validated and the AWS clients built when the handler module is imported (Lambda's
init phase), so a wrong configuration fails before the first event is touched.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_nth.aws.clients import AccountClients, aws_client
from serverless_nth.aws.notify import Notifier
from serverless_nth.config import Settings
from serverless_nth.errors import HandlerError, TemporaryError
from serverless_nth.events.model import InterruptionEvent, MalformedEvent
from serverless_nth.events.parsing import check_event_time
from serverless_nth.fleet import Fleet, Route
from serverless_nth.instance import InstanceFacts
from serverless_nth.observability import ACCOUNT_DIMENSION, NAMESPACE, Metric, logger, metric_account, metrics, tracer
from serverless_nth.report import Outcome
from serverless_nth.service import Service

Handler = Callable[[Any, LambdaContext], dict[str, Any]]
_REPORT_SECONDS = 3


def build_fleet(settings: Settings) -> Fleet:
    """The clusters the deployment serves: one Service per cluster, built on first use."""
    topic = settings.notification_topic_arn
    notifier = Notifier(topic, aws_client("sns") if topic else None)
    return Fleet(settings, AccountClients(settings.member_role_name, settings.region), notifier)


def build_service(settings: Settings) -> Service:
    """The stack's own cluster's Service (a single-cluster deployment's only one)."""
    return build_fleet(settings).home()


def set_home_dimensions(settings: Settings, home_account: str | None) -> None:
    """An invocation's metrics, until its event is routed: the stack's own cluster, and in a
    multi-account deployment the function's own account (what a previous event set is undone)."""
    _default_dimensions(settings.cluster_name, settings.many_accounts, home_account)


def route(
    fleet: Fleet, event: InterruptionEvent, home_account: str | None, known: InstanceFacts | None = None
) -> Route:
    """The event's cluster's Service (``Fleet.route``); the metrics from here on carry that cluster,
    and in a multi-account deployment the event's account."""
    found = fleet.route(event, home_account, known)
    settings = found.service.settings
    _default_dimensions(settings.cluster_name, settings.many_accounts, event.account or home_account)
    return found


def _default_dimensions(cluster: str, many_accounts: bool, account: str | None) -> None:
    value = metric_account(many_accounts, account)
    if value is None:
        metrics.set_default_dimensions(cluster=cluster)
    else:
        metrics.set_default_dimensions(cluster=cluster, account=value)


def count_error(cluster: str, stage: str, account: str | None = None) -> None:
    """Errors by stage: a metric of its own, since its dimensions differ from the event's; with
    ``account`` (``metric_account``: a multi-account deployment's) that dimension too."""
    with single_metric(name=Metric.ERRORS, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension("cluster", cluster)
        if account is not None:
            metric.add_dimension(ACCOUNT_DIMENSION, account)
        metric.add_dimension("stage", stage)


def count_malformed(
    cluster: str, event_family: str, exc: MalformedEvent, raised: bool = True, account: str | None = None
) -> None:
    """A malformed event: told and counted (nothing was changed); raised by the caller unless
    ``raised`` is False (a durable execution that ends quietly instead of failing for good)."""
    metrics.add_dimension("event_kind", event_family)
    metrics.add_dimension("outcome", Outcome.MALFORMED)
    metrics.add_metric(name=Metric.MALFORMED_EVENTS, unit=MetricUnit.Count, value=1)
    logger.error("malformed event: nothing was changed", extra={"outcome": Outcome.MALFORMED, "reason": str(exc)})
    if raised:
        count_error(cluster, "parse", account)


def account_of(context: object) -> str | None:
    """The function's own account, from its ARN (arn:aws:lambda:<region>:<account>:function:...)."""
    parts = str(getattr(context, "invoked_function_arn", "") or "").split(":")
    return parts[4] if len(parts) > 4 and parts[4].isdigit() else None


def make_handler(normalise: Callable[[Any], InterruptionEvent], event_family: str) -> Handler:
    """``event_family`` names the function's events in metrics when an event cannot be parsed."""
    settings = Settings.from_env()
    fleet = build_fleet(settings)
    metrics.set_default_dimensions(cluster=settings.cluster_name)

    @logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
    @metrics.log_metrics(capture_cold_start_metric=True)
    @tracer.capture_lambda_handler(capture_response=False)
    def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
        now = time.time()
        home = account_of(context)
        set_home_dimensions(settings, home)
        account = metric_account(settings.many_accounts, home)
        try:
            interruption = normalise(event)
            check_event_time(interruption, datetime.datetime.fromtimestamp(now, datetime.UTC))
        except MalformedEvent as exc:
            count_malformed(settings.cluster_name, event_family, exc, account=account)
            raise
        except Exception:
            metrics.add_dimension("event_kind", event_family)
            _failed(settings.cluster_name, "parse", False, account)
            raise
        cluster = settings.cluster_name
        account = metric_account(settings.many_accounts, interruption.account or home)
        try:
            # leave time to report (and flush metrics) before Lambda stops the invocation
            stop_by = now + context.get_remaining_time_in_millis() / 1000 - _REPORT_SECONDS
            routed = route(fleet, interruption, home)
            cluster = routed.service.settings.cluster_name
            result = routed.service.handle(interruption, stop_by=stop_by, account=home, described=routed.described)
            return result.as_dict()
        except HandlerError as exc:
            _failed(cluster, exc.stage, isinstance(exc, TemporaryError), account)
            raise
        except Exception:  # a failure nobody foresaw still ends with a stage, a metric and an outcome
            _failed(cluster, "internal", True, account)
            raise

    def _failed(cluster: str, stage: str, retryable: bool, account: str | None) -> None:
        metrics.add_dimension("outcome", Outcome.ERROR)
        count_error(cluster, stage, account)
        logger.exception("handler failed", extra={"outcome": Outcome.ERROR, "stage": stage, "retryable": retryable})

    return cast(Handler, lambda_handler)  # Powertools' decorators are typed as returning Any
