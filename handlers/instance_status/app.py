"""Lambda entry point (an ordinary function) that the optional EventBridge Scheduler schedule invokes
every minute: the instance-status backstop (impaired instances, scheduled events Health did not
deliver)."""

from serverless_nth.instance_status import make_handler

lambda_handler = make_handler()
