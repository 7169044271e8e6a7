"""A local EKS of three clusters in two accounts, for the tests of several clusters (local only;
docs/local-eks.md, "Several clusters and accounts"): the home cluster ``alpha`` and ``beta`` in
the home account 123456789012, ``gamma`` in the member account 210987654321 (tagged env=prod).

``multi_eks`` (session scope; tests/integration/conftest.py offers it to every test module) starts
it in its own state directory, ``<cluster state>-multi``, beside any one-cluster local EKS of the
same worker, and stops it at the end of the worker's session; one that already runs there
(``python -m localeks up --state .local-multi --name alpha --more-clusters
"beta,gamma@210987654321:env=prod"``) is reused and left running. Mark a module that uses it with
the ``xdist_group`` ``local-clusters``: its modules then run on one worker, which starts one (three
API servers, about 1.6 GB) for all of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from localeks.accounts import MEMBER_ACCOUNT_ID, ClusterSpec
from localeks.cluster import ACCOUNT_ID, Paths, down, read_env, supervisor_alive, up
from localeks.clusters import Clusters, session_in
from localeks.invoke import role_credentials
from tests.integration.support import aged_event

HOME, BETA, GAMMA = "alpha", "beta", "gamma"
MORE_CLUSTERS = [ClusterSpec(BETA), ClusterSpec(GAMMA, MEMBER_ACCOUNT_ID, {"env": "prod"})]


@dataclass(frozen=True)
class MultiEks:
    env: dict[str, str]  # the home cluster's cluster.env (CLUSTERS, MEMBER_ACCOUNTS, ... added)
    clusters: Clusters
    paths: Paths

    def function_session(self) -> boto3.Session:
        """The home account's function role, as the central functions run."""
        creds = role_credentials(self.env)
        return boto3.Session(
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=creds["AWS_SESSION_TOKEN"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        )

    def session(self, account: str = ACCOUNT_ID) -> boto3.Session:
        """The function role's session in ``account``: the member account's role assumed with it."""
        return session_in(self.env, account, via=self.function_session())


def multi_state() -> Path:
    from tests.conftest import cluster_state

    base = cluster_state()
    return base.with_name(f"{base.name}-multi")


@pytest.fixture(scope="session")
def multi_eks() -> Iterator[MultiEks]:
    paths = Paths(multi_state())
    started_here = not (supervisor_alive(paths) and paths.env_file.exists())
    env = up(paths, HOME, 0.1, more_clusters=MORE_CLUSTERS) if started_here else read_env(paths)
    try:
        yield MultiEks(env, Clusters.load(env), paths)
    finally:
        if started_here:
            down(paths)


def event_in(account: str, event_name: str, instance_id: str, age_seconds: float = 0, **detail: str) -> dict[str, Any]:
    """A sample event as ``account``'s default bus has it (``account`` and the resources' ARNs),
    forwarded unchanged to the home account's bus, as a member account's rule forwards it."""
    event = aged_event(event_name, instance_id, age_seconds, **detail)
    moved: dict[str, Any] = json.loads(json.dumps(event).replace(ACCOUNT_ID, account))
    return moved
