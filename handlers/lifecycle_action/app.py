"""Lambda entry point (a durable function) for EC2 Auto Scaling terminate lifecycle actions: cordon,
drain with heartbeats for as long as the node needs, then CONTINUE."""

from serverless_nth.durable import make_durable_handler
from serverless_nth.lifecycle_drain import lifecycle

lambda_handler = make_durable_handler(lifecycle, "asg-lifecycle")
