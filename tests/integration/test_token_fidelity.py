"""The local EKS judges a token exactly as aws-iam-authenticator v0.7.13's verifier does (issue 10, item 9).

Each case is a token signed (SigV4, by hand below) with the credentials that moto issued to the
functions' role, so STS would accept its signature and its caller; one property differs from what
``aws eks get-token`` makes. Three verdicts must agree for every case:

- the authenticator's, from its own code: ``eks-token-verifier`` (aws-iam-authenticator's
  ``token.Verifier.Verify``, built by localeks/build.sh) run directly by this test, STS answering
  200 as in that project's own tests (pkg/token/token_test.go, validationSuccessTest);
- the one its source gives, written in the table with the line of pkg/token/token.go (v0.7.13)
  that decides it, and for a refusal a fragment of the error it returns: so a case that fails for
  another reason than the one it names (a broken signature, say) does not pass unnoticed;
- the local EKS's: the API server's answer to ``GET /api/v1/nodes`` with the token (200 or 401),
  through the token webhook; and, for the reason, the webhook's authenticator called in-process.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from localeks.webhook import VERIFIER, EksTokenAuthenticator, TokenRejected

# under pytest-xdist, on one worker: they share the module's fixtures
pytestmark = pytest.mark.xdist_group("token-fidelity")

PREFIX = "k8s-aws-v1."
MAX_TOKEN_BYTES = 4096  # token.go maxTokenLenBytes


@dataclass(frozen=True)
class Creds:
    access_key: str
    secret_key: str
    session_token: str


@dataclass(frozen=True)
class Case:
    name: str
    accepted: bool  # the verdict token.go gives
    why: str  # the line of pkg/token/token.go (v0.7.13) that decides, and the error it returns
    host: str = "sts.us-east-1.amazonaws.com"
    scheme: str = "https"
    path: str = "/"
    region: str = "us-east-1"
    age: datetime.timedelta = datetime.timedelta(0)  # how long before now it was signed
    amz_date: str | None = None  # instead of the signing time
    expires: str | None = "60"  # None: no X-Amz-Expires parameter
    action: str = "GetCallerIdentity"
    extra: tuple[tuple[str, str], ...] = ()
    signed_headers: tuple[str, ...] = ("host", "x-k8s-aws-id")
    longer_than: int = 0  # pad the query with empty segments (skipped by every parser) to exceed this
    error: str = field(default="")  # a fragment of the verifier's error, for a refusal


MIN = datetime.timedelta(minutes=1)
CASES = [
    Case("valid token, regional endpoint", True, "passes every check to STS (token.go 594-692)"),
    Case("global endpoint sts.amazonaws.com", True, "getStsRegion 'global' in aws (519)", host="sts.amazonaws.com"),
    Case("FIPS endpoint", True, "resolved with UseFIPS (534-553)", host="sts-fips.us-east-1.amazonaws.com"),
    Case("dual-stack endpoint", True, "resolved with UseDualStack (534-553)", host="sts.us-east-1.api.aws"),
    Case("FIPS dual-stack endpoint", True, "resolved (534-553)", host="sts-fips.us-east-1.api.aws"),
    Case(
        "China host in the aws partition",
        False,
        "domain is not the partition's (584)",
        host="sts.cn-north-1.amazonaws.com.cn",
        region="cn-north-1",
        error="partition {aws} does not support hostname",
    ),
    Case(
        "not an STS host",
        False,
        "not a resolved STS host (553-566)",
        host="website.amazonaws.com",
        error="unexpected hostname",
    ),
    Case("http scheme", False, "scheme is not https (614)", scheme="http", error="unexpected scheme"),
    Case("empty path", False, "path is not / (627)", path="", error="unexpected path"),
    Case("path /abc", False, "path is not / (627)", path="/abc", error="unexpected path"),
    Case(
        "X-Amz-Expires missing",
        False,
        "Atoi('') fails (661-664)",
        expires=None,
        error="invalid X-Amz-Expires",
    ),
    Case("X-Amz-Expires not a number", False, "Atoi fails (661-664)", expires="60s", error="invalid X-Amz-Expires"),
    Case("X-Amz-Expires 901", False, "over 900 (662)", expires="901", error="invalid X-Amz-Expires"),
    Case("X-Amz-Expires 900", True, "at most 900 (662)", expires="900"),
    Case("X-Amz-Date 10 minutes ahead", True, "only expiry is checked (679-683)", age=-10 * MIN),
    Case("X-Amz-Date 16 minutes old", False, "expired after 15 min (680-682)", age=16 * MIN, error="is expired"),
    Case(
        "X-Amz-Date malformed",
        False,
        "time.Parse fails (674-677)",
        amz_date="2026-11-25T10:00:00Z",
        error="error parsing X-Amz-Date",
    ),
    Case(
        "parameter not on the list",
        False,
        "parameterWhitelist (641-644)",
        extra=(("DurationSeconds", "900"),),
        error="non-whitelisted query parameter",
    ),
    Case(
        "parameter twice, in two cases",
        False,
        "validateDuplicateParameters (637, 772-781)",
        extra=(("action", "GetCallerIdentity"),),
        error="duplicate query parameter",
    ),
    Case(
        "action is not GetCallerIdentity",
        False,
        "action check (651)",
        action="GetSessionToken",
        error="unexpected action parameter",
    ),
    Case(
        "x-k8s-aws-id not signed",
        False,
        "hasSignedClusterIDHeader (655, 783-791)",
        signed_headers=("host",),
        error="did not sign the x-k8s-aws-id header",
    ),
    Case(
        "token over 4,096 bytes",
        False,
        "len(token) > maxTokenLenBytes (595)",
        longer_than=MAX_TOKEN_BYTES,
        error="token is too large",
    ),
]


def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _q(value: str) -> str:
    return quote(value, safe="-_.~")


def make_token(case: Case, creds: Creds, cluster: str) -> str:
    """A presigned GetCallerIdentity URL as ``aws eks get-token`` makes it, with the case's changes
    (SigV4 query signing, written out from the specification rather than through botocore)."""
    signed_at = datetime.datetime.now(datetime.UTC) - case.age
    amz_date = case.amz_date or signed_at.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{signed_at:%Y%m%d}/{case.region}/sts/aws4_request"
    params = [("Action", case.action), ("Version", "2011-06-15"), ("X-Amz-Algorithm", "AWS4-HMAC-SHA256")]
    params += [("X-Amz-Credential", f"{creds.access_key}/{scope}"), ("X-Amz-Date", amz_date)]
    if case.expires is not None:
        params.append(("X-Amz-Expires", case.expires))
    params += [("X-Amz-SignedHeaders", ";".join(case.signed_headers))]
    params += [("X-Amz-Security-Token", creds.session_token), *case.extra]
    header_values = {"host": case.host, "x-k8s-aws-id": cluster}
    canonical_request = "\n".join(
        [
            "GET",
            case.path or "/",
            "&".join(f"{k}={v}" for k, v in sorted((_q(k), _q(v)) for k, v in params)),
            "".join(f"{name}:{header_values[name]}\n" for name in case.signed_headers),
            ";".join(case.signed_headers),
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{creds.secret_key}".encode()
    for part in (f"{signed_at:%Y%m%d}", case.region, "sts", "aws4_request"):
        key = _sign(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    query = "&".join(f"{_q(k)}={_q(v)}" for k, v in params)
    padding = ""
    while True:
        url = f"{case.scheme}://{case.host}{case.path}?{query}{padding}&X-Amz-Signature={signature}"
        token = PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
        if len(token) > case.longer_than:
            return token
        padding += "&" * 64


def authenticator_verdict(verifier: Path, cluster: str, token: str, caller: dict[str, str]) -> dict[str, Any]:
    """aws-iam-authenticator's verifier on the token; STS answers 200 with the caller, as in the
    project's own tests (newVerifier(partition, 200, jsonResponse(...)))."""
    result = {"Account": caller["Account"], "Arn": caller["Arn"], "UserId": caller["UserId"]}
    sts_body = json.dumps({"GetCallerIdentityResponse": {"GetCallerIdentityResult": result}})
    proc = subprocess.Popen(
        [str(verifier), "-cluster-id", cluster, "-partition", "aws", "-region", "us-east-1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    # Both lines at once: a verifier that refuses before STS reads only the first.
    stdin = json.dumps({"token": token}) + "\n" + json.dumps({"status": 200, "body": sts_body}) + "\n"
    stdout, _ = proc.communicate(stdin, timeout=30)
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert proc.returncode == 0, lines
    return dict(lines[-1])


def api_status(cluster_env: dict[str, str], token: str) -> int:
    context = ssl.create_default_context(cafile=str(Path(cluster_env["KUBECONFIG"]).parent / "pki" / "ca.crt"))
    request = urllib.request.Request(
        cluster_env["LOCALEKS_API_URL"] + "/api/v1/nodes?limit=1", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def creds(function_session: boto3.Session) -> Creds:
    frozen = function_session.get_credentials().get_frozen_credentials()
    return Creds(frozen.access_key, frozen.secret_key, str(frozen.token))


@pytest.fixture(scope="module")
def verifier(cluster_env: dict[str, str]) -> Path:
    path = Path(cluster_env["LOCALEKS_BIN"]) / VERIFIER
    assert path.exists(), (
        f"{path} is missing: this local EKS was started before its token webhook ran aws-iam-authenticator's "
        "verifier; restart it (make cluster-down cluster-up)"
    )
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_local_eks_judges_the_token_as_aws_iam_authenticator(
    case: Case,
    cluster_env: dict[str, str],
    function_session: boto3.Session,
    creds: Creds,
    verifier: Path,
) -> None:
    cluster = cluster_env["CLUSTER_NAME"]
    token = make_token(case, creds, cluster)
    caller = function_session.client("sts", endpoint_url=cluster_env["AWS_ENDPOINT_URL"]).get_caller_identity()

    upstream = authenticator_verdict(verifier, cluster, token, caller)
    assert ("identity" in upstream) == case.accepted, f"token.go: {case.why}; the verifier said {upstream}"
    assert case.error in upstream.get("error", ""), upstream

    status = api_status(cluster_env, token)
    assert status in (200, 401), status
    assert (status == 200) == case.accepted, f"the local EKS answered {status}; aws-iam-authenticator: {upstream}"

    # The same verdict, for the same reason, from the webhook's code in this process.
    webhook = EksTokenAuthenticator(
        cluster,
        cluster_env["AWS_ENDPOINT_URL"],
        Path(cluster_env["KUBECONFIG"]).parent / "access-entries.json",
        lambda key: (creds.secret_key, creds.session_token) if key == creds.access_key else None,
        verifier=verifier,
    )
    if case.accepted:
        assert webhook.authenticate(token).arn == caller["Arn"]
    else:
        with pytest.raises(TokenRejected, match=re.escape(case.error)):
            webhook.authenticate(token)


def test_cases_cover_the_checks_named_in_the_issue() -> None:
    """22 cases, both verdicts, and every check in which the old webhook differed."""
    assert len(CASES) == 22
    assert {c.accepted for c in CASES} == {True, False}
    names = " | ".join(c.name for c in CASES)
    for named in ("X-Amz-Expires missing", "not a number", "901", "empty path", "China host", "over 4,096"):
        assert named in names
    for named in ("FIPS endpoint", "dual-stack endpoint", "ahead"):
        assert named in names
