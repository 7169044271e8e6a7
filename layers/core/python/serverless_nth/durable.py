"""Turns a long-drain workflow (``lifecycle_drain.py``, ``scheduled_drain.py``) into the handler of
a Lambda durable function: the durable execution SDK checkpoints its steps and resumes it,
Powertools logs and flushes metrics per invocation. Settings and clients are built at init, as
``entrypoint.make_handler`` does; only the durable functions import the SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from aws_durable_execution_sdk_python import DurableContext, StepError, durable_execution

from serverless_nth.config import Settings
from serverless_nth.entrypoint import (
    Handler,
    account_of,
    build_fleet,
    count_malformed,
    set_home_dimensions,
)
from serverless_nth.errors import HandlerError
from serverless_nth.events.model import MalformedEvent
from serverless_nth.long_drain import LongDrains
from serverless_nth.observability import logger, metric_account, metrics
from serverless_nth.report import Outcome

Workflow = Callable[[LongDrains, Any, DurableContext, "str | None"], dict[str, Any]]


def make_durable_handler(workflow: Workflow, event_family: str) -> Handler:
    settings = Settings.from_env()
    drains = LongDrains(build_fleet(settings), settings)
    metrics.set_default_dimensions(cluster=settings.cluster_name)

    @durable_execution
    def run(event: Any, ctx: DurableContext) -> dict[str, Any]:
        try:
            drains.home_account = account_of(ctx.lambda_context)
            set_home_dimensions(settings, drains.home_account)
            drains.error_account = metric_account(settings.many_accounts, drains.home_account)
            return workflow(drains, event, ctx, drains.home_account)
        except MalformedEvent as exc:  # raised before the first step: in the first invocation only
            count_malformed(settings.cluster_name, event_family, exc, account=drains.error_account)
            raise
        except (HandlerError, StepError):  # a step that failed for good (after its retries)
            # each failed attempt was counted by its step, with its stage (LongDrains.step)
            logger.exception("execution failed", extra={"outcome": Outcome.ERROR})
            raise

    handler = logger.inject_lambda_context(clear_state=True)(metrics.log_metrics(run, capture_cold_start_metric=True))
    return cast(Handler, handler)
