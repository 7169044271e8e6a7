"""Lambda entry point for EC2 Instance Rebalance Recommendation: cordon and taint (drain if enabled)."""

from serverless_nth.entrypoint import make_handler
from serverless_nth.events import rebalance_recommendation

lambda_handler = make_handler(rebalance_recommendation.normalise, "rebalance-recommendation")
