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
from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.exceptions import UnknownRegionError
from botocore.session import Session, get_session

from serverless_nth.aws.calls import typed_call

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

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


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
        return _session.create_client(service, config=CLIENT_CONFIG)


# Clients per account: the function's own account with its own credentials, a member account
# through the role its member stack created (``member/template.yaml``), assumed with STS and renewed
# before it expires, as botocore renews any assumed role.
#
# Only EC2, Auto Scaling and EKS are called in a member account (the instance's facts, its lifecycle
# action, its cluster's endpoint). The EKS token is always signed with the function's own
# credentials: a member cluster's access entry names the central function role (an EKS STANDARD
# access entry "can be in the same, or different, AWS account than the account that your cluster
# is in", docs/multi-cluster.md).

MEMBER_SERVICES = ("ec2", "autoscaling", "eks")
_SESSION_NAME = "serverless-nth"
_THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable", "InternalFailure"}


class AccountClients:
    """``in_account(account, service)``: the home account's shared clients, or a member account's
    clients over the assumed role (one session per account, credentials renewed as they near their
    end). Safe to share between threads."""

    def __init__(self, role_name: str, region: str, sts_client: Any = None) -> None:
        self._role_name = role_name
        self._region = region
        self._partition = ""  # the region's (aws, aws-cn, aws-us-gov, ...), read once from botocore's data
        self._sts = sts_client
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._sessions: dict[str, Session] = {}  # one per member account: one role session for its clients
        self.roles_assumed = 0  # AssumeRole calls (the first and each renewal)

    def role_arn(self, account: str) -> str:
        if not self._partition:
            try:
                self._partition = get_session().get_partition_for_region(self._region)
            except UnknownRegionError:  # no region (a local run): the commercial partition
                self._partition = "aws"
        return f"arn:{self._partition}:iam::{account}:role/{self._role_name}"

    def in_account(self, account: str | None, service: str) -> Any:
        """A member ``account``'s client; None: the function's own account."""
        if account is None:
            return aws_client(service)
        if service not in MEMBER_SERVICES:
            raise ValueError(f"{service} is not called in a member account")
        with self._lock:
            key = (account, service)
            if key not in self._clients:
                self._clients[key] = self._session(account).create_client(service, config=CLIENT_CONFIG)
            return self._clients[key]

    def _session(self, account: str) -> Session:
        if account not in self._sessions:
            session = get_session()
            resolver = session.get_component("credential_provider")
            resolver.insert_before("env", _AssumedRole(self, account))
            self._sessions[account] = session
        return self._sessions[account]

    def assume(self, account: str) -> dict[str, Any]:
        """Credentials of the member role, in the shape botocore's refresher takes."""
        sts = self._sts if self._sts is not None else aws_client("sts")
        self.roles_assumed += 1
        role = self.role_arn(account)
        reply = typed_call(
            f"AssumeRole {role}",
            "assume-role",
            _THROTTLED,
            lambda: sts.assume_role(RoleArn=role, RoleSessionName=_SESSION_NAME),
        )
        creds = reply["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }


class _AssumedRole(CredentialProvider):
    """The member role's credentials for one account's session; botocore renews them (a new
    AssumeRole) 15 minutes before they expire, so a drain of hours keeps working."""

    METHOD = "serverless-nth-member-role"

    def __init__(self, clients: AccountClients, account: str) -> None:
        super().__init__()
        self._clients = clients
        self._account = account

    def load(self) -> RefreshableCredentials:
        return RefreshableCredentials.create_from_metadata(
            metadata=self._clients.assume(self._account),
            refresh_using=lambda: self._clients.assume(self._account),
            method=self.METHOD,
        )
