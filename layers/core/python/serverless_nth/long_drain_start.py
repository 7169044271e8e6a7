"""The long-drain starter: the ordinary function that EventBridge invokes for the long-drain event
kinds (Auto Scaling terminate lifecycle actions, AWS Health scheduled changes, Capacity Block
expiration warnings; the instance-status backstop's scheduled events; ``ROUTES``). It starts the
durable execution that drains, on a published version, so that:

- EventBridge never targets a durable function: those need a qualified ARN, and Lambda takes no
  resource policy on ``$LATEST`` (docs/deploy.md, "Long drains and versions");
- every new event runs the code and configuration deployed last: the version is published from
  ``$LATEST`` at each start (PublishVersion publishes nothing new when nothing changed);
- a running execution finishes on the version it started on, which is how Lambda pins durable
  executions; versions are deleted only once no execution runs on them;
- a duplicate delivery of the same event starts nothing: the execution is named after the event id.

The event is checked with the same parser the durable function uses before anything is published
or started: a malformed event starts nothing and fails here, where the on-failure queue keeps it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_nth.aws.clients import aws_client
from serverless_nth.aws.durable_functions import DurableFunctions, ExecutionNameTaken
from serverless_nth.config import StarterSettings
from serverless_nth.entrypoint import Handler, account_of, count_error, count_malformed
from serverless_nth.errors import HandlerError, TemporaryError
from serverless_nth.events import capacity_block, instance_status, lifecycle_action, scheduled_change
from serverless_nth.events.model import MalformedEvent
from serverless_nth.observability import logger, metric_account, metrics
from serverless_nth.report import Outcome

# The one table of what starts which durable function: (source, detail-type) -> the parser that
# checks the event (the durable function's own) and the starter's environment variable that names
# the function. Capacity Block warnings come under two detail-types (events/capacity_block.py).
ROUTES: dict[tuple[str, str], tuple[Callable[[Any], object], str]] = {
    (lifecycle_action.SOURCE, lifecycle_action.DETAIL_TYPE): (lifecycle_action.normalise, "LIFECYCLE_ACTION_FUNCTION"),
    (scheduled_change.SOURCE, scheduled_change.DETAIL_TYPE): (scheduled_change.normalise, "SCHEDULED_CHANGE_FUNCTION"),
    # a scheduled event the instance-status backstop found (instance_status.py): the Health workflow
    (instance_status.SOURCE, instance_status.DETAIL_TYPE): (instance_status.normalise, "SCHEDULED_CHANGE_FUNCTION"),
    **{
        (capacity_block.SOURCE, detail_type): (capacity_block.normalise, "CAPACITY_BLOCK_FUNCTION")
        for detail_type in capacity_block.DETAIL_TYPES
    },
}
_EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # Invoke's DurableExecutionName


def execution_name(event_id: str) -> str:
    """The event id (EventBridge's ids are UUIDs); anything else, by its digest, so that the same
    id always gives the same name."""
    if _EXECUTION_NAME.match(event_id):
        return event_id
    return hashlib.sha256(event_id.encode()).hexdigest()[:64]


def start(event: Any, settings: StarterSettings, functions: DurableFunctions) -> dict[str, Any]:
    kind = (event.get("source"), event.get("detail-type")) if isinstance(event, dict) else (None, None)
    route = ROUTES.get((str(kind[0]), str(kind[1])))
    if route is None:
        raise MalformedEvent(f"not a long-drain event: source {kind[0]!r}, detail-type {kind[1]!r}")
    parse, key = route
    parse(event)  # raises MalformedEvent
    function = settings.targets[key]
    version = functions.publish(function)
    name = execution_name(str(event["id"]))
    result: dict[str, Any] = {"function": function, "version": version, "execution_name": name}
    try:
        result["execution_arn"] = functions.start(function, version, name, json.dumps(event).encode())
        result["outcome"] = "started"
    except ExecutionNameTaken as exc:
        # the same id with another payload: not a redelivery of this event; the first one runs
        logger.warning("an execution of this name runs another payload: not started", extra={"reason": str(exc)})
        result["outcome"] = "name-taken"
    result["versions_deleted"] = prune(function, version, functions)
    logger.info("long drain started", extra=result)
    return result


def prune(function: str, current: str, functions: DurableFunctions) -> list[str]:
    """Deletes the versions older than ``current`` that no execution runs on. Best effort: a
    version left now is found again at the next start; a failure here never fails the start."""
    deleted: list[str] = []
    try:
        for version in functions.versions(function):
            if int(version) >= int(current) or functions.has_live_executions(function, version):
                continue
            if functions.delete(function, version):
                deleted.append(version)
    except HandlerError as exc:
        logger.warning("old versions not pruned this time", extra={"reason": str(exc), "deleted": deleted})
    return deleted


def make_handler() -> Handler:
    settings = StarterSettings.from_env(key for _, key in ROUTES.values())
    functions = DurableFunctions(aws_client("lambda"))
    metrics.set_default_dimensions(cluster=settings.cluster_name)

    @logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
        # a multi-account deployment's metrics carry the account (observability.metric_account): the event's
        sender = event.get("account") if isinstance(event, dict) else None
        account = metric_account(settings.many_accounts, sender if isinstance(sender, str) else account_of(context))
        if account is not None:
            metrics.set_default_dimensions(cluster=settings.cluster_name, account=account)
        try:
            return start(event, settings, functions)
        except MalformedEvent as exc:
            count_malformed(settings.cluster_name, "long-drain-start", exc, account=account)
            raise
        except HandlerError as exc:
            count_error(settings.cluster_name, exc.stage, account)
            retryable = isinstance(exc, TemporaryError)
            logger.exception(
                "not started", extra={"outcome": Outcome.ERROR, "stage": exc.stage, "retryable": retryable}
            )
            raise

    return cast(Handler, lambda_handler)
