"""An EKS-style token-review webhook: checks the tokens that ``aws eks get-token`` makes.

It follows aws-iam-authenticator's checks (prefix, base64url without padding, an STS URL with
Action=GetCallerIdentity, ``x-k8s-aws-id`` signed, X-Amz-Date at most 15 minutes old), then maps
the caller to a username and groups through an access-entry table, as an EKS access entry with
Kubernetes groups does.

Where a real EKS sends the presigned request to STS, which verifies the signature over the
``x-k8s-aws-id: <cluster>`` header, moto's server cannot answer that GET (it reads it as S3). So
this webhook verifies the SigV4 signature itself, with the secret key that moto issued for the
access key, and then asks STS on moto for the caller's ARN with GetCallerIdentity.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import boto3
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TOKEN_PREFIX = "k8s-aws-v1."
TOKEN_MAX_AGE = datetime.timedelta(minutes=15)
CLUSTER_ID_HEADER = "x-k8s-aws-id"
_ALLOWED_PARAMS = {
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
}
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_STS_HOST = re.compile(r"^sts(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?$")
_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/(.+)$")

log = logging.getLogger("localeks.webhook")


class TokenRejected(Exception):
    """The token is not a valid EKS token for this cluster."""


@dataclass(frozen=True)
class Identity:
    username: str
    uid: str
    groups: list[str]
    arn: str


# access key id -> (secret key, session token), or None when STS never issued that key
SecretLookup = Callable[[str], "tuple[str, str | None] | None"]


class EksTokenAuthenticator:
    def __init__(
        self,
        cluster_name: str,
        local_sts_url: str,
        access_entries: Path,
        secret_lookup: SecretLookup,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.cluster_name = cluster_name
        self.local_sts = urlsplit(local_sts_url)
        self.access_entries = access_entries
        self.secret_lookup = secret_lookup
        self.now = now

    def authenticate(self, token: str) -> Identity:
        url = self._decode(token)
        parts = urlsplit(url)
        self._check_endpoint(parts.scheme, parts.netloc, parts.path)
        params = self._query_params(parts.query)
        if params.get("action") != "GetCallerIdentity":
            raise TokenRejected("action is not GetCallerIdentity")
        signed = params.get("x-amz-signedheaders", "").lower().split(";")
        if CLUSTER_ID_HEADER not in signed:
            raise TokenRejected(f"{CLUSTER_ID_HEADER} is not among the signed headers")
        self._check_date(params.get("x-amz-date", ""))
        access_key, region = self._credential_scope(params.get("x-amz-credential", ""))
        secret = self.secret_lookup(access_key)
        if secret is None:
            raise TokenRejected("STS did not issue this access key")
        self._verify_signature(url, params, secret[0], region, signed)
        arn = self._caller_arn(access_key, secret[0], secret[1])
        return self._map(arn)

    def _decode(self, token: str) -> str:
        if not token.startswith(TOKEN_PREFIX):
            raise TokenRejected("missing k8s-aws-v1. prefix")
        body = token[len(TOKEN_PREFIX) :]
        if not _BASE64URL.match(body):
            raise TokenRejected("token is not base64url without padding")
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise TokenRejected(f"token does not decode: {exc}") from exc

    def _check_endpoint(self, scheme: str, netloc: str, path: str) -> None:
        is_aws = scheme == "https" and _STS_HOST.match(netloc.lower()) is not None
        is_local = (scheme, netloc) == (self.local_sts.scheme, self.local_sts.netloc)
        if not (is_aws or is_local):
            raise TokenRejected(f"not an STS endpoint: {scheme}://{netloc}")
        if path not in ("", "/"):
            raise TokenRejected(f"unexpected path {path!r}")

    @staticmethod
    def _query_params(query: str) -> dict[str, str]:
        raw = parse_qs(query, keep_blank_values=True)
        params: dict[str, str] = {}
        for key, values in raw.items():
            if key.lower() not in _ALLOWED_PARAMS:
                raise TokenRejected(f"unexpected query parameter {key}")
            if len(values) != 1 or key.lower() in params:
                raise TokenRejected(f"query parameter {key} repeated")
            params[key.lower()] = values[0]
        return params

    def _check_date(self, amz_date: str) -> None:
        try:
            signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        except ValueError as exc:
            raise TokenRejected("X-Amz-Date is missing or malformed") from exc
        if self.now() - signed_at > TOKEN_MAX_AGE:
            raise TokenRejected("token expired (X-Amz-Date older than 15 minutes)")
        if signed_at - self.now() > datetime.timedelta(minutes=5):
            raise TokenRejected("X-Amz-Date is in the future")

    @staticmethod
    def _credential_scope(credential: str) -> tuple[str, str]:
        fields = credential.split("/")
        if len(fields) != 5 or fields[3] != "sts" or fields[4] != "aws4_request":
            raise TokenRejected("X-Amz-Credential is not an STS credential scope")
        return fields[0], fields[2]

    def _verify_signature(
        self, url: str, params: dict[str, str], secret_key: str, region: str, signed: list[str]
    ) -> None:
        """Recomputes the SigV4 query signature as STS would, over x-k8s-aws-id = this cluster."""
        parts = urlsplit(url)
        unsigned_query = urlencode(
            [(k, v) for k, v in parse_qs(parts.query).items() if k.lower() != "x-amz-signature"],
            doseq=True,
        )
        request = AWSRequest(
            method="GET",
            url=urlunsplit((parts.scheme, parts.netloc, parts.path or "/", unsigned_query, "")),
            headers={CLUSTER_ID_HEADER: self.cluster_name},
        )
        request.context["timestamp"] = params["x-amz-date"]
        signer = SigV4QueryAuth(Credentials("unused", secret_key), "sts", region)
        if sorted(signer.headers_to_sign(request)) != sorted(signed):
            raise TokenRejected(f"signed headers {signed} are not host and {CLUSTER_ID_HEADER}")
        string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
        expected = signer.signature(string_to_sign, request)
        if not hmac.compare_digest(expected, params.get("x-amz-signature", "")):
            raise TokenRejected("signature does not match (a token for another cluster?)")

    def _caller_arn(self, access_key: str, secret_key: str, session_token: str | None) -> str:
        return _get_caller_identity_arn(
            self.local_sts.scheme, self.local_sts.netloc, access_key, secret_key, session_token
        )

    def _map(self, caller_arn: str) -> Identity:
        principal = caller_arn
        session = ""
        assumed = _ASSUMED_ROLE.match(caller_arn)
        if assumed:
            partition, account, role, session = assumed.groups()
            principal = f"arn:{partition}:iam::{account}:role/{role}"
        entries: dict[str, dict[str, Any]] = json.loads(self.access_entries.read_text())
        entry = entries.get(principal)
        if entry is None:
            raise TokenRejected(f"no access entry for {principal}")
        # EKS's default username for a role is its assumed-role ARN with the session name.
        username = str(entry.get("username") or caller_arn).replace("{{SessionName}}", session)
        return Identity(
            username=username,
            uid=f"aws-iam-authenticator:{principal}",
            groups=[str(g) for g in entry.get("kubernetesGroups", [])],
            arn=caller_arn,
        )


@functools.lru_cache(maxsize=1024)
def _get_caller_identity_arn(
    scheme: str, netloc: str, access_key: str, secret_key: str, session_token: str | None
) -> str:
    """GetCallerIdentity on moto with the token's access key (cached: one STS client per key)."""
    sts = boto3.client(
        "sts",
        endpoint_url=urlunsplit((scheme, netloc, "", "", "")),
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
    )
    return str(sts.get_caller_identity()["Arn"])


def token_review_response(authenticator: EksTokenAuthenticator, review: dict[str, Any]) -> dict[str, Any]:
    token = str(review.get("spec", {}).get("token", ""))
    status: dict[str, Any]
    try:
        identity = authenticator.authenticate(token)
    except TokenRejected as exc:
        log.info("token rejected: %s", exc)
        status = {"authenticated": False, "error": str(exc)}
    else:
        status = {
            "authenticated": True,
            "user": {
                "username": identity.username,
                "uid": identity.uid,
                "groups": identity.groups,
                "extra": {"arn": [identity.arn]},
            },
        }
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}


def serve(authenticator: EksTokenAuthenticator, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Starts the webhook on a daemon thread; returns the server (``server_address`` has the port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            try:
                review = json.loads(self.rfile.read(length) or b"{}")
                body = json.dumps(token_review_response(authenticator, review)).encode()
                code = 200
            except Exception as exc:  # an unexpected failure must not authenticate anyone
                log.exception("token review failed")
                body = json.dumps({"error": str(exc)}).encode()
                code = 500
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="token-webhook", daemon=True).start()
    return server
