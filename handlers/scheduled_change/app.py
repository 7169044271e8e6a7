"""Lambda entry point (a durable function) for AWS Health scheduled changes of EC2 instances:
cordon every instance named at once, drain each at its lead time before the window starts."""

from serverless_nth.durable import make_durable_handler
from serverless_nth.scheduled_drain import scheduled

lambda_handler = make_durable_handler(scheduled, "scheduled-change")
