"""Lambda entry point for EC2 Instance Launch Successful from a warm pool: the node of an instance
back in service gets what this product added undone (its terminate lifecycle action drained it)."""

from serverless_nth.entrypoint import make_handler
from serverless_nth.events import instance_launch

lambda_handler = make_handler(instance_launch.normalise, "warm-pool-return")
