"""The AWS side of several clusters (local): which clusters to run in which account, the member
account's role, and each cluster's record in moto's EKS.

One moto server serves every account. moto picks the account of a request from its access key:
keys that STS issued for an assumed role belong to the role's account (moto/sts/models.py
``_create_access_key``), any other key to the home account 123456789012; the header
``x-moto-account-id`` overrides both (moto/core/responses.py ``get_current_account``). The member
account is therefore reached as the product reaches it in AWS: by assuming its role.

moto does not enforce trust policies: the member role's trust policy (the home account's
function role may assume it) is written as a real one would be, but moto lets any caller assume
any role. A real member account refuses everyone else.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localeks.cluster import ACCOUNT_ID, FUNCTION_ROLE_NAME, REGION

MEMBER_ACCOUNT_ID = "210987654321"
MEMBER_ROLE_NAME = "serverless-nth-member"
FUNCTION_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{FUNCTION_ROLE_NAME}"
_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")  # EKS's cluster name pattern
_ACCOUNT = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class ClusterSpec:
    """One cluster to run: its name, the account whose EKS lists it, the tags of its record."""

    name: str
    account: str = ACCOUNT_ID
    tags: dict[str, str] = field(default_factory=dict)

    def as_arg(self) -> str:
        """The spec as ``--more-clusters`` takes it (``parse_clusters`` reads it back)."""
        account = f"@{self.account}" if self.account != ACCOUNT_ID else ""
        return self.name + account + "".join(f":{k}={v}" for k, v in self.tags.items())


def parse_clusters(text: str) -> list[ClusterSpec]:
    """``--more-clusters``: comma-separated ``name[@account][:key=value]...``, e.g.
    ``beta:team=web,gamma@210987654321:env=prod``; no account means the home account."""
    specs: list[ClusterSpec] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        head, *pairs = item.split(":")
        name, _, account = head.partition("@")
        account = account or ACCOUNT_ID
        if not _NAME.match(name):
            raise ValueError(f"not an EKS cluster name: {name!r} (in {item!r})")
        if not _ACCOUNT.match(account):
            raise ValueError(f"not a 12-digit account: {account!r} (in {item!r})")
        tags = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ValueError(f"a tag is key=value, not {pair!r} (in {item!r})")
            tags[key] = value
        specs.append(ClusterSpec(name, account, tags))
    return specs


def member_accounts(specs: list[ClusterSpec]) -> list[str]:
    return sorted({s.account for s in specs if s.account != ACCOUNT_ID})


def member_role_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:role/{MEMBER_ROLE_NAME}"


def _with_account_header(client: Any, account: str) -> Any:
    """A client whose requests moto files under ``account`` (the set-up of an account that no
    role of ours can reach yet: AWS Organizations would create it with its first role)."""

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account

    client.meta.events.register("before-sign.*.*", add_header)
    return client


def create_member_role(moto_url: str, account: str) -> str:
    """The member account's role that the home account's function role assumes."""
    import boto3

    iam = _with_account_header(boto3.client("iam", endpoint_url=moto_url, region_name=REGION), account)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": FUNCTION_ROLE_ARN}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(
        RoleName=MEMBER_ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(trust),
        Description="serverless-nth: the home account's functions act in this account (local)",
    )
    return str(role["Role"]["Arn"])


def account_session(
    moto_url: str, account: str, via: Any = None, session_name: str = "localeks", region: str = REGION
) -> Any:
    """A boto3 session in ``account``: the home account with ``via`` (a boto3 session; moto's
    dummy admin keys when None), a member account by assuming its member role with ``via``'s
    credentials, as the functions do."""
    import boto3

    base = via or boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
    if account == ACCOUNT_ID:
        return base
    sts = base.client("sts", endpoint_url=moto_url, region_name=region)
    creds = sts.assume_role(RoleArn=member_role_arn(account), RoleSessionName=session_name)["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def register_cluster(moto_url: str, spec: ClusterSpec, api_url: str, ca_file: Path) -> str:
    """Creates the cluster in its account's EKS (the member account through its role) and points
    the record at the local API server and CA (moto invents an unreachable endpoint and a non-PEM
    CA). Runs in the supervisor, where moto's backends are. Returns the cluster's ARN."""
    from moto.eks.models import eks_backends

    eks = account_session(moto_url, spec.account).client("eks", endpoint_url=moto_url, region_name=REGION)
    extra = {"tags": spec.tags} if spec.tags else {}
    created = eks.create_cluster(
        name=spec.name,
        version="1.34",
        roleArn=f"arn:aws:iam::{spec.account}:role/eks-cluster",
        resourcesVpcConfig={"subnetIds": []},
        **extra,
    )["cluster"]
    record = eks_backends[spec.account][REGION].clusters[spec.name]
    record.endpoint = api_url
    ca = {"data": base64.b64encode(ca_file.read_bytes()).decode()}
    # moto 5.2.5's serializer answers the camelCase attribute when it exists; set both spellings
    record.certificateAuthority = record.certificate_authority = ca
    return str(created["arn"])


def moto_secret_lookup(access_key_id: str) -> tuple[str, str | None] | None:
    """The secret and session token STS issued with ``access_key_id``, in any account (STS
    knows every key it issued; the access entry then decides whether the caller gets in)."""
    from moto.sts.models import sts_backends

    for _account, backend in list(sts_backends.items()):
        role = backend["global"].get_assumed_role_from_access_key(access_key_id)
        if role is not None:
            return str(role.secret_access_key), str(role.session_token)
    return None
