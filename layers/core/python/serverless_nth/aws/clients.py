"""AWS API clients, made once per execution environment.

botocore's session directly, not boto3's: boto3 adds nothing used here and its import (through
s3transfer) costs about 0.1 s of every cold start. Endpoints, credentials and region come from the
environment as usual (AWS_ENDPOINT_URL included), so local runs need no code branch.

``AWS_SERVICES`` is the one list of the AWS services the functions call. The deps layer's build
(layers/deps/slim.py) ships botocore's models for these services only, and for a service listed
with its operations, a model cut down to those operations: that is what keeps the layers small and
a cold start from parsing EC2's whole model (about 0.2 s). A unit test checks that every client and
operation the core uses is listed here (tests/unit/test_aws_services.py).
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.config import Config
from botocore.session import Session, get_session

# service -> the operations called (the model is cut down to them), or None for the whole model
AWS_SERVICES: dict[str, tuple[str, ...] | None] = {
    # instance facts: state, private DNS name, zone, tags; a Capacity Block's instances and its current
    # end; the instance-status backstop's impaired checks and scheduled events
    "ec2": ("DescribeInstances", "DescribeCapacityReservations", "DescribeInstanceStatus"),
    "eks": None,  # DescribeCluster: endpoint and CA
    "sts": None,  # GetCallerIdentity, presigned locally: the EKS token
    "sns": None,  # Publish: the notification per handled event
    "autoscaling": None,  # lifecycle hooks (Auto Scaling lifecycle termination)
    # the durable execution SDK's checkpoints; the long-drain starter (PublishVersion, Invoke, ...);
    # the instance-status backstop's Invoke of the starter
    "lambda": None,
}

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


_session: Session | None = None
_lock = threading.Lock()


def aws_client(service: str) -> Any:
    """A client of one session for all: botocore's ``get_session()`` makes a new session each time,
    and each would load the endpoint data and register its handlers again (about 30 ms a client)."""
    global _session
    if service not in AWS_SERVICES:
        raise ValueError(
            f"{service!r} is not in AWS_SERVICES (serverless_nth/aws/clients.py): the layer has no model for it"
        )
    with _lock:  # a botocore session is not safe to share while it makes clients
        if _session is None:
            _session = get_session()
        return _session.create_client(service, config=_CONFIG)
