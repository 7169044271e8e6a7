"""Every cluster of a local EKS started with more clusters (``--more-clusters``, local only), for
tests and scripts: what clusters.json says of each, a cluster_env for each (so ``Scenes`` and
``invoke`` work against it), sessions in each account, EKS tags, an EKS token as ``aws eks
get-token`` makes it, and stopping and starting one cluster's kube-apiserver.

    clusters = Clusters.load(cluster_env)          # cluster_env: the home cluster's cluster.env
    gamma = clusters["gamma"]                       # ClusterHandle: name, account, api_url, ...
    scenes = scenes_for(cluster_env, gamma)         # EC2 in gamma's account, nodes in gamma
    with apiserver_down(clusters, "beta"): ...      # beta's API server stopped meanwhile
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localeks.accounts import account_session
from localeks.control import apiserver_action

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"


@dataclass(frozen=True)
class ClusterHandle:
    name: str
    account: str
    home: bool
    arn: str
    api_url: str
    kubeconfig: str
    ca_file: str
    admin_token: str
    webhook_url: str  # GET {webhook_url}/verdicts: what this cluster's token webhook answered
    state: str
    logs: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ca_pem(self) -> bytes:
        return Path(self.ca_file).read_bytes()


@dataclass(frozen=True)
class Clusters:
    home_account: str
    region: str
    moto_url: str
    function_role_arn: str
    member_accounts: list[str]
    control_url: str | None
    handles: dict[str, ClusterHandle]

    @classmethod
    def load(cls, cluster_env: dict[str, str]) -> Clusters:
        """From clusters.json beside the home cluster's kubeconfig (every local EKS writes it)."""
        path = Path(
            cluster_env.get("LOCALEKS_CLUSTERS_FILE") or Path(cluster_env["KUBECONFIG"]).parent / "clusters.json"
        )
        facts = json.loads(path.read_text())
        handles = {c["name"]: ClusterHandle(**c) for c in facts.pop("clusters")}
        return cls(handles=handles, **facts)

    def __getitem__(self, name: str) -> ClusterHandle:
        return self.handles[name]

    @property
    def home(self) -> ClusterHandle:
        return next(h for h in self.handles.values() if h.home)

    def in_account(self, account: str) -> list[str]:
        return [h.name for h in self.handles.values() if h.account == account]


def env_for(cluster_env: dict[str, str], handle: ClusterHandle) -> dict[str, str]:
    """The home cluster's cluster_env pointed at ``handle``'s cluster (CLUSTER_NAME, KUBECONFIG,
    LOCALEKS_API_URL); AWS stays the home account's, as the central functions run there."""
    return {
        **cluster_env,
        "CLUSTER_NAME": handle.name,
        "KUBECONFIG": handle.kubeconfig,
        "LOCALEKS_API_URL": handle.api_url,
    }


def session_in(cluster_env: dict[str, str], account: str, via: Any = None) -> Any:
    """A boto3 session in ``account``: a member account through its serverless-nth-member role,
    assumed with ``via``'s credentials (moto's admin keys when None)."""
    return account_session(cluster_env["AWS_ENDPOINT_URL"], account, via=via, region=cluster_env["AWS_DEFAULT_REGION"])


def scenes_for(cluster_env: dict[str, str], handle: ClusterHandle, account: str | None = None) -> Any:
    """``localeks.scenes.Scenes`` whose nodes go to ``handle``'s cluster and whose EC2 instances
    go to ``account`` (the cluster's own by default). ``worker_node(tags={"eks:eks-cluster-name":
    name})`` then gives an instance tagged ``kubernetes.io/cluster/<name>=owned`` and
    ``eks:eks-cluster-name=<name>``, with a node whose providerID is ``aws:///<az>/<instance-id>``."""
    from localeks.scenes import Scenes

    session = session_in(cluster_env, account or handle.account)
    ec2 = session.client("ec2", endpoint_url=cluster_env["AWS_ENDPOINT_URL"])
    return Scenes(env_for(cluster_env, handle), ec2=ec2)


def worker_node_in(
    cluster_env: dict[str, str], handle: ClusterHandle, account: str | None = None, **kwargs: Any
) -> Any:
    """A managed node group's node in ``handle``'s cluster, its instance in ``account`` tagged
    with both cluster tags; ``kwargs`` as ``Scenes.worker_node``. Returns the NodeScene."""
    tags = {"eks:eks-cluster-name": handle.name, **kwargs.pop("tags", {})}
    return scenes_for(cluster_env, handle, account).worker_node(tags=tags, **kwargs)


def tag_cluster(cluster_env: dict[str, str], handle: ClusterHandle, tags: dict[str, str]) -> None:
    """EKS TagResource on the cluster, in its own account."""
    eks = session_in(cluster_env, handle.account).client("eks", endpoint_url=cluster_env["AWS_ENDPOINT_URL"])
    eks.tag_resource(resourceArn=handle.arn, tags=tags)


def eks_token(session: Any, endpoint_url: str, cluster_name: str) -> str:
    """The token ``aws eks get-token --cluster-name <cluster_name>`` makes with ``session``'s
    credentials (awscli/customizations/eks/get_token.py): a presigned GetCallerIdentity URL whose
    signature covers ``x-k8s-aws-id``."""
    sts = session.client("sts", endpoint_url=endpoint_url)

    def add_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_ID_HEADER] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_header)
    url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _control(clusters: Clusters) -> str:
    if not clusters.control_url:
        raise RuntimeError("this local EKS runs one cluster: start it with more clusters to stop an API server")
    return clusters.control_url


def stop_apiserver(clusters: Clusters, name: str) -> None:
    """Ends ``name``'s kube-apiserver (clients get "connection refused"); its other parts run on."""
    apiserver_action(_control(clusters), name, "stop")


def start_apiserver(clusters: Clusters, name: str) -> None:
    """Starts it again (same port, flags, certificates); returns once it is ready."""
    apiserver_action(_control(clusters), name, "start")


def freeze_apiserver(clusters: Clusters, name: str) -> None:
    """SIGSTOP: connections hang until the client's own timeout."""
    apiserver_action(_control(clusters), name, "freeze")


def thaw_apiserver(clusters: Clusters, name: str) -> None:
    apiserver_action(_control(clusters), name, "thaw")


@contextlib.contextmanager
def apiserver_down(clusters: Clusters, name: str, frozen: bool = False) -> Iterator[None]:
    """``name``'s API server stopped (or frozen) inside the block, serving again after it."""
    (freeze_apiserver if frozen else stop_apiserver)(clusters, name)
    try:
        yield
    finally:
        (thaw_apiserver if frozen else start_apiserver)(clusters, name)
