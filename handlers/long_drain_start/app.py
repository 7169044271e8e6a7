"""Lambda entry point (an ordinary function) that EventBridge invokes for Auto Scaling terminate
lifecycle actions and AWS Health scheduled changes: starts the durable function that drains, on
the version that holds what was deployed last."""

from serverless_nth.long_drain_start import make_handler

lambda_handler = make_handler()
