"""An EKS-style token-review webhook: judges the tokens that ``aws eks get-token`` makes.

Every check of the token itself is aws-iam-authenticator's own code: ``eks-token-verifier``
(``localeks/go/iamauth``, built by ``build.sh`` from the aws-iam-authenticator release its go.mod
pins) runs that project's ``token.Verifier.Verify`` on the token: size, prefix, base64url, the
URL's scheme, STS host for the partition (FIPS and dual-stack included), path, query parameters,
``x-k8s-aws-id`` signed, X-Amz-Expires, X-Amz-Date. When the token passes, the verifier sends the
presigned GetCallerIdentity request to STS; the binary hands that request to this module instead,
which plays STS, and the verifier reads the answer as it reads STS's. This webhook then maps the
caller to a username and groups through an access-entry table, as an EKS access entry with
Kubernetes groups does.

Playing STS: moto's server cannot answer the presigned GET (it reads it as S3), and does not
check signatures. So this module checks what STS checks, as far as moto knows the facts: the
access key is one STS issued and the session token is that key's; the SigV4 signature over the
request the verifier sends (its ``x-k8s-aws-id`` header, the verifier's cluster ID, among the
signed headers) recomputes with the secret key moto issued. Then it asks moto for the caller with
GetCallerIdentity, and answers as STS does (JSON, 200 or 403). A real EKS gets all this from STS.

One local step is not EKS's: the functions sign their tokens for moto's address
(``http://127.0.0.1:<port>``), as ``AWS_ENDPOINT_URL`` makes every client do. Such a token is
judged as the one the same client makes in AWS: the same URL with
``https://sts.<region>.amazonaws.com`` in place of moto's address (the region of its credential
scope); the signature stays checked over the URL as it was signed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import subprocess
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import boto3
import botocore.exceptions
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from localeks.binaries import build_binaries  # builds nothing when the binaries exist

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
VERIFIER = "eks-token-verifier"
VERIFIER_TIMEOUT_SECONDS = 20.0  # the verifier's own HTTP client gives STS 10 s (token.go NewVerifier)
# The STS domain of each partition, as aws-iam-authenticator's pkg/endpoints GetSTSPartitionDomain.
_PARTITION_DOMAIN = {"aws": "amazonaws.com", "aws-cn": "amazonaws.com.cn", "aws-us-gov": "amazonaws.com"}
# A region name as the verifier accepts it (token.go validateInputRegion).
_REGION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")
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


class StsRefusal(Exception):
    """What STS answers with a 403: ``code`` as in STS's error responses."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class EksTokenAuthenticator:
    def __init__(
        self,
        cluster_name: str,
        local_sts_url: str,
        access_entries: Path,
        secret_lookup: SecretLookup,
        verifier: Path | None = None,
        partition: str = "aws",
        region: str = "us-east-1",
    ) -> None:
        if verifier is None:
            verifier = build_binaries() / VERIFIER
        self.cluster_name = cluster_name
        self.local_sts = urlsplit(local_sts_url)
        self.access_entries = access_entries
        self.secret_lookup = secret_lookup
        self.verifier = verifier
        self.partition = partition
        self.region = region

    def authenticate(self, token: str) -> Identity:
        judged, signed_origin = self._as_in_aws(token)
        verdict = self._verify(judged, signed_origin)
        if "identity" not in verdict:
            raise TokenRejected(str(verdict.get("error") or f"unexpected verifier output {verdict}"))
        return self._map(verdict["identity"])

    def _as_in_aws(self, token: str) -> tuple[str, str | None]:
        """The token to judge, and the scheme://host its URL was signed for when that is moto's."""
        body = token[len(TOKEN_PREFIX) :]
        if not token.startswith(TOKEN_PREFIX) or not _BASE64URL.match(body) or len(body) % 4 == 1:
            return token, None  # the verifier rejects it as it is
        url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        local = f"{self.local_sts.scheme}://{self.local_sts.netloc}".encode()
        if not (url.startswith(local) and url[len(local) : len(local) + 1] in (b"", b"/", b"?")):
            return token, None
        query = urlsplit(url.decode(errors="replace")).query
        scope = dict(parse_qsl(query, keep_blank_values=True)).get("X-Amz-Credential", "").split("/")
        region = scope[2] if len(scope) == 5 and _REGION.match(scope[2]) else self.region
        domain = _PARTITION_DOMAIN.get(self.partition, "amazonaws.com")
        in_aws = f"https://sts.{region}.{domain}".encode() + url[len(local) :]
        return TOKEN_PREFIX + base64.urlsafe_b64encode(in_aws).decode().rstrip("="), local.decode()

    def _verify(self, token: str, signed_origin: str | None) -> dict[str, Any]:
        """Runs aws-iam-authenticator's verifier on the token, playing STS when it asks."""
        argv = [str(self.verifier), "-cluster-id", self.cluster_name, "-partition", self.partition]
        proc = subprocess.Popen(
            [*argv, "-region", self.region],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        watchdog = threading.Timer(VERIFIER_TIMEOUT_SECONDS, proc.kill)
        watchdog.start()
        with proc, proc.stdin as to_verifier, proc.stdout as from_verifier:  # type: ignore[union-attr]
            try:
                to_verifier.write(json.dumps({"token": token}) + "\n")
                to_verifier.flush()
                message = _read_message(from_verifier)
                if "sts" in message:
                    to_verifier.write(json.dumps(self._play_sts(message["sts"], signed_origin)) + "\n")
                    to_verifier.flush()
                    message = _read_message(from_verifier)
                return message
            finally:
                watchdog.cancel()
                proc.kill()

    def _play_sts(self, request: dict[str, Any], signed_origin: str | None) -> dict[str, Any]:
        """STS's answer to the verifier's presigned GetCallerIdentity request."""
        try:
            arn, account, user_id = self._sts_get_caller_identity(
                str(request["method"]), str(request["url"]), request.get("header") or {}, signed_origin
            )
        except StsRefusal as refusal:
            log.info("local STS refused the token: %s", refusal)
            error = {"Code": refusal.code, "Message": refusal.message, "Type": "Sender"}
            return {"status": 403, "body": json.dumps({"Error": error, "RequestId": str(uuid.uuid4())})}
        except botocore.exceptions.BotoCoreError as exc:  # moto did not answer: no verdict on the token
            return {"error": f"local STS unreachable: {exc}"}
        result = {"Account": account, "Arn": arn, "UserId": user_id}
        body = {
            "GetCallerIdentityResponse": {
                "GetCallerIdentityResult": result,
                "ResponseMetadata": {"RequestId": str(uuid.uuid4())},
            }
        }
        return {"status": 200, "body": json.dumps(body)}

    def _sts_get_caller_identity(
        self, method: str, url: str, header: dict[str, list[str]], signed_origin: str | None
    ) -> tuple[str, str, str]:
        parts = urlsplit(url)
        params = parse_qsl(parts.query, keep_blank_values=True)
        query = {k.lower(): v for k, v in params}  # the verifier refused repeated parameters
        fields = query.get("x-amz-credential", "").split("/")
        if len(fields) != 5 or fields[3] != "sts" or fields[4] != "aws4_request":
            raise StsRefusal("IncompleteSignature", "X-Amz-Credential is not an STS credential scope")
        access_key, region = fields[0], fields[2]
        issued = self.secret_lookup(access_key)
        if issued is None:
            raise StsRefusal("InvalidClientTokenId", "The security token included in the request is invalid.")
        secret_key, session_token = issued
        if session_token is not None and query.get("x-amz-security-token") != session_token:
            raise StsRefusal("InvalidClientTokenId", "The security token included in the request is invalid.")
        if query.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
            raise StsRefusal("IncompleteSignature", "X-Amz-Algorithm is not AWS4-HMAC-SHA256")
        # The request as STS receives it; the host as the token was signed (moto's, see above).
        origin = signed_origin or f"{parts.scheme}://{parts.netloc}"
        received = {name.lower(): ",".join(values) for name, values in header.items()}
        received["host"] = urlsplit(origin).netloc
        signed = query.get("x-amz-signedheaders", "").lower().split(";")
        if any(name not in received for name in signed):
            raise StsRefusal("SignatureDoesNotMatch", "a signed header is not in the request")
        unsigned = AWSRequest(
            method=method,
            url=origin + (parts.path or "/"),
            params={k: v for k, v in params if k.lower() != "x-amz-signature"},
            headers={name: received[name] for name in signed if name != "host"},
        )
        unsigned.context["timestamp"] = query.get("x-amz-date", "")
        signer = SigV4QueryAuth(Credentials(access_key, secret_key), "sts", region)
        expected = signer.signature(signer.string_to_sign(unsigned, signer.canonical_request(unsigned)), unsigned)
        if signer.signed_headers(signer.headers_to_sign(unsigned)) != ";".join(signed) or not hmac.compare_digest(
            expected, query.get("x-amz-signature", "")
        ):
            raise StsRefusal(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        return _get_caller_identity(self.local_sts.scheme, self.local_sts.netloc, access_key, secret_key, session_token)

    def _map(self, verified: dict[str, Any]) -> Identity:
        """The access entry of the verified caller (aws-iam-authenticator's Identity fields)."""
        caller_arn = str(verified["ARN"])
        principal = str(verified["CanonicalARN"])
        session = str(verified.get("SessionName") or "")
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


def _read_message(from_verifier: IO[str]) -> dict[str, Any]:
    line = from_verifier.readline()
    if not line:
        raise RuntimeError(f"{VERIFIER} ended without a verdict")
    message: dict[str, Any] = json.loads(line)
    return message


@functools.lru_cache(maxsize=1024)
def _get_caller_identity(
    scheme: str, netloc: str, access_key: str, secret_key: str, session_token: str | None
) -> tuple[str, str, str]:
    """GetCallerIdentity on moto with the token's access key (cached: one STS client per key)."""
    sts = boto3.client(
        "sts",
        endpoint_url=urlunsplit((scheme, netloc, "", "", "")),
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
    )
    caller = sts.get_caller_identity()
    return str(caller["Arn"]), str(caller["Account"]), str(caller["UserId"])


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


def token_digest(token: str) -> str:
    """How the verdicts name a token: enough to find one's own, nothing to replay."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class Verdicts:
    """What the webhook answered to each token review, oldest first (the last ``keep``): the API
    server answers 401 both to a token the webhook rejected and to a review the webhook failed
    (HTTP 500), so only this tells a rejection from a crash. ``outcome`` is ``authenticated``,
    ``rejected`` or ``error``; ``token`` is ``token_digest`` of the reviewed token."""

    def __init__(self, keep: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._seen: deque[dict[str, str]] = deque(maxlen=keep)

    def add(self, token: str, outcome: str, detail: str) -> None:
        with self._lock:
            self._seen.append({"token": token_digest(token), "outcome": outcome, "detail": detail[:300]})

    def all(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self._seen)


# Connections a local server keeps waiting to be accepted: a wave of events opens hundreds at
# once, and http.server's 5 (werkzeug's 128 for moto) turned them into connect timeouts, failures
# of the stand-ins that AWS's endpoints do not have (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096


class WebhookServer(ThreadingHTTPServer):
    verdicts: Verdicts
    request_queue_size = LISTEN_BACKLOG


def serve(authenticator: EksTokenAuthenticator, host: str = "127.0.0.1", port: int = 0) -> WebhookServer:
    """Starts the webhook on a daemon thread; returns the server (``server_address`` has the port).
    POST (any path): a TokenReview. GET /verdicts: ``Verdicts.all()`` as JSON."""
    verdicts = Verdicts()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            token = ""
            try:
                review = json.loads(self.rfile.read(length) or b"{}")
                token = str(review.get("spec", {}).get("token", ""))
                answer = token_review_response(authenticator, review)
                status = answer["status"]
                outcome = "authenticated" if status["authenticated"] else "rejected"
                verdicts.add(token, outcome, str(status.get("error") or status.get("user", {}).get("username")))
                body = json.dumps(answer).encode()
                code = 200
            except Exception as exc:  # an unexpected failure must not authenticate anyone
                log.exception("token review failed")
                verdicts.add(token, "error", f"{type(exc).__name__}: {exc}")
                body = json.dumps({"error": str(exc)}).encode()
                code = 500
            self._answer(code, body)

        def do_GET(self) -> None:
            if self.path != "/verdicts":
                self._answer(404, b"{}")
                return
            self._answer(200, json.dumps(verdicts.all()).encode())

        def _answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = WebhookServer((host, port), Handler)
    server.verdicts = verdicts
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="token-webhook", daemon=True).start()
    return server
