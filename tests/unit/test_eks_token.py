import base64
from urllib.parse import parse_qs, urlsplit

import boto3

from serverless_nth.aws.eks import TOKEN_PREFIX, EksAccess


def sts_client():  # type: ignore[no-untyped-def]
    return boto3.client(
        "sts",
        region_name="eu-west-1",
        endpoint_url="https://sts.eu-west-1.amazonaws.com",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token="session",
    )


def test_token_is_what_aws_eks_get_token_makes() -> None:
    access = EksAccess("prod-eu", eks_client=None, sts_client=sts_client())
    token = access.token()
    assert token.startswith(TOKEN_PREFIX)
    body = token[len(TOKEN_PREFIX) :]
    assert "=" not in body
    url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.scheme == "https"
    assert parts.netloc == "sts.eu-west-1.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert query["X-Amz-Security-Token"] == ["session"]
    assert "ClusterName" not in query


def test_token_is_cached_and_refreshed_after_ten_minutes() -> None:
    now = [1000.0]
    access = EksAccess("prod-eu", eks_client=None, sts_client=sts_client(), clock=lambda: now[0])
    first = access.token()
    now[0] += 1
    assert access.token() is first
    now[0] += 600
    assert access.token() is not first


def test_forget_token_makes_a_new_one() -> None:
    access = EksAccess("prod-eu", eks_client=None, sts_client=sts_client())
    first = access.token()
    access.forget_token()
    assert access.token() is not first
