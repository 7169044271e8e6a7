"""Lambda entry point (a durable function) for EC2 Capacity Block expiration warnings: list the
reservation's instances, cordon them all at once, drain each until the block's instances go."""

from serverless_nth.durable import make_durable_handler
from serverless_nth.long_drain_each import capacity_block_expiry

lambda_handler = make_durable_handler(capacity_block_expiry, "capacity-block-expiry")
