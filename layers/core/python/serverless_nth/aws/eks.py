"""EKS cluster data (endpoint, CA, tags) and the bearer token, cached across warm invocations;
and the clusters of an account (``ClusterDirectory``), for a deployment of many clusters.

The token is what ``aws eks get-token`` makes: a presigned STS GetCallerIdentity URL whose
signature covers the header ``x-k8s-aws-id: <cluster>``, base64url without padding, prefixed
``k8s-aws-v1.``. EKS accepts it for 15 minutes after signing; it is re-made after 10.
"""

from __future__ import annotations

import base64
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError

from serverless_nth.aws.calls import typed_call
from serverless_nth.errors import PermanentError
from serverless_nth.observability import tracer

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 (a format prefix, not a secret)
CLUSTER_ID_HEADER = "x-k8s-aws-id"
TOKEN_REFRESH_AFTER_SECONDS = 600  # EKS accepts a token for 15 minutes after X-Amz-Date
# EKS's error codes that a later retry may get past
EKS_TEMPORARY = frozenset({"ThrottlingException", "ServerException", "ServiceUnavailableException"})
_URL_EXPIRES_SECONDS = 60  # as aws-cli: the URL's own expiry; EKS applies its 15-minute rule


@dataclass(frozen=True)
class ClusterEndpoint:
    name: str
    endpoint: str
    ca_pem: bytes
    tags: dict[str, str] = field(default_factory=dict)  # the cluster's: per-cluster settings


class EksAccess:
    """Cluster endpoint, CA and token for one cluster; safe to share between threads."""

    def __init__(
        self,
        cluster_name: str,
        eks_client: Any,
        sts_client: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster_name = cluster_name
        self._eks = eks_client
        self._sts = sts_client
        self._clock = clock
        self._lock = threading.Lock()
        self._endpoint: ClusterEndpoint | None = None
        self._token: str | None = None
        self._token_made_at = 0.0
        self.requests_sent = 0  # DescribeCluster calls (the token is signed locally, no request)
        self._sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", _take_cluster_name)
        self._sts.meta.events.register("before-sign.sts.GetCallerIdentity", _add_cluster_header)

    def endpoint(self) -> ClusterEndpoint:
        with self._lock:
            if self._endpoint is None:
                with tracer.provider.in_subsegment("DescribeCluster"):
                    self._endpoint = self._describe_cluster()
            return self._endpoint

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() - self._token_made_at > TOKEN_REFRESH_AFTER_SECONDS:
                with tracer.provider.in_subsegment("EksToken"):
                    self._token = self._make_token()
                self._token_made_at = self._clock()
            return self._token

    def forget_token(self) -> None:
        """After a 401: the next call makes a new token."""
        with self._lock:
            self._token = None

    def _describe_cluster(self) -> ClusterEndpoint:
        self.requests_sent += 1
        cluster = typed_call(
            f"DescribeCluster {self.cluster_name}",
            "describe-cluster",
            EKS_TEMPORARY,
            lambda: self._eks.describe_cluster(name=self.cluster_name)["cluster"],
        )
        endpoint = cluster.get("endpoint") or ""
        ca_data = (cluster.get("certificateAuthority") or {}).get("data") or ""
        if not endpoint.startswith("https://") or not ca_data:
            raise PermanentError(
                f"cluster {self.cluster_name} has no https endpoint or CA (status {cluster.get('status')})",
                stage="describe-cluster",
            )
        try:
            ca_pem = base64.b64decode(ca_data, validate=True)
        except ValueError as exc:
            raise PermanentError(f"cluster {self.cluster_name}: CA is not base64", stage="describe-cluster") from exc
        tags = {str(k): str(v) for k, v in (cluster.get("tags") or {}).items()}
        return ClusterEndpoint(self.cluster_name, endpoint.rstrip("/"), ca_pem, tags)

    def _make_token(self) -> str:
        try:
            url: str = self._sts.generate_presigned_url(
                "get_caller_identity",
                Params={"ClusterName": self.cluster_name},
                ExpiresIn=_URL_EXPIRES_SECONDS,
                HttpMethod="GET",
            )
        except BotoCoreError as exc:  # no credentials, mostly
            raise PermanentError(f"cannot sign the EKS token: {exc}", stage="token") from exc
        return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _take_cluster_name(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    if "ClusterName" in params:
        context["eks_cluster"] = params.pop("ClusterName")


def _add_cluster_header(request: Any, **_: Any) -> None:
    if "eks_cluster" in request.context:
        request.headers[CLUSTER_ID_HEADER] = request.context["eks_cluster"]


RELIST_SECONDS = 60.0


class ClusterDirectory:
    """The EKS clusters of one account and region, listed with ListClusters: kept while the function
    is warm, listed again when an instance names a cluster the list lacks (a cluster created since),
    at most once per ``RELIST_SECONDS`` so that instances of an unknown cluster cannot make every event
    pay a listing."""

    def __init__(self, eks_client: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._eks = eks_client
        self._clock = clock
        self._lock = threading.Lock()
        self._names: frozenset[str] | None = None
        self._listed_at = 0.0
        self.requests_sent = 0  # ListClusters pages

    def has(self, name: str) -> bool:
        """Whether the account has the cluster: from the kept list, listed again on a miss."""
        with self._lock:
            if self._names is None or (name not in self._names and self._clock() - self._listed_at >= RELIST_SECONDS):
                self._names = self._list()
            return name in self._names

    def _list(self) -> frozenset[str]:
        names: set[str] = set()
        token = ""
        while True:
            self.requests_sent += 1
            page = {"nextToken": token} if token else {}
            send = functools.partial(self._eks.list_clusters, **page, maxResults=100)
            reply = typed_call("ListClusters", "list-clusters", EKS_TEMPORARY, send)
            names.update(reply.get("clusters") or [])
            token = reply.get("nextToken") or ""
            if not token:
                break
        self._listed_at = self._clock()
        return frozenset(names)
