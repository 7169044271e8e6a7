"""Lambda entry point for EC2 Spot Instance Interruption Warning: cordon, taint, drain before +120 s."""

from serverless_nth.entrypoint import make_handler
from serverless_nth.events import spot_interruption

lambda_handler = make_handler(spot_interruption.normalise, "spot-interruption")
