"""Lambda entry point for EC2 Instance State-change Notification: drain on stopping/shutting-down,
cordon and mark out-of-service on stopped/terminated."""

from serverless_nth.entrypoint import make_handler
from serverless_nth.events import state_change

lambda_handler = make_handler(state_change.normalise, "state-change")
