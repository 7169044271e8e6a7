"""Lambda entry point for the EC2 interruption warnings (Spot interruption, interruptible Capacity
Reservation reclaimed): cordon, taint, drain before the instance ends."""

from serverless_nth.entrypoint import make_handler
from serverless_nth.events import interruption_warning

lambda_handler = make_handler(interruption_warning.normalise, "interruption-warning")
