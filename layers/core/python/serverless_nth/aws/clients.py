"""AWS API clients, made once per execution environment.

botocore's session directly, not boto3's: boto3 adds nothing used here and its import (through
s3transfer) costs about 0.1 s of every cold start. Endpoints, credentials and region come from the
environment as usual (AWS_ENDPOINT_URL included), so local runs need no code branch.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.session import get_session

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


def aws_client(service: str) -> Any:
    return get_session().create_client(service, config=_CONFIG)
