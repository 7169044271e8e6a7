"""Starts and stops the local EKS: one supervisor process owns every part.

The supervisor (``python -m localeks serve``, localeks/supervisor.py) runs moto's server and the
token webhook in its own process (the webhook needs moto's backend for the secret keys it issued,
and DescribeCluster's record is rewritten in place to point at the local API server), and starts
etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as children in its process
group. ``up`` starts it detached and waits for ``cluster.env``; ``down`` stops the group and
removes the state. With ``more_clusters`` it runs more clusters beside this one, in this account
or a member account (localeks/control_plane.py, localeks/accounts.py, localeks/clusters.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localeks.binaries import (  # noqa: F401 (re-exported: callers import them from here)
    BUILD_SCRIPT,
    COLD_BUILD_SECONDS,
    COLD_BUILD_SOURCE,
    BuildProgress,
    build_binaries,
    wanted_binaries,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE = REPO / ".local"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
FUNCTION_ROLE_NAME = "serverless-nth-function"
# The Kubernetes group that k8s/rbac.yaml binds; the access entry of the functions' role names it.
FUNCTION_GROUP = "serverless-nth"
RBAC_MANIFEST = REPO / "k8s" / "rbac.yaml"


@dataclass(frozen=True)
class Paths:
    state: Path

    @property
    def env_file(self) -> Path:
        return self.state / "cluster.env"

    @property
    def pid_file(self) -> Path:
        return self.state / "supervisor.pid"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def access_entries(self) -> Path:
        return self.state / "access-entries.json"

    @property
    def clusters_file(self) -> Path:
        """Every cluster's facts (localeks/clusters.py reads them), the home cluster's included."""
        return self.state / "clusters.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def moto_client(cluster_env: dict[str, str], service: str) -> Any:
    """A boto3 client for moto with its dummy admin credentials (for setting scenes up)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=cluster_env["AWS_ENDPOINT_URL"],
        region_name=cluster_env["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def read_env(paths: Paths) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in paths.env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value.strip("'")
    return env


def supervisor_alive(paths: Paths) -> bool:
    try:
        pid = int(paths.pid_file.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return True


def up(
    paths: Paths, cluster_name: str, speed: float, timeout: float = 1800, more_clusters: list[Any] | None = None
) -> dict[str, str]:
    """Starts the supervisor detached, unless it already runs; returns the cluster.env values (the
    home cluster's). ``more_clusters``: localeks.accounts.ClusterSpec of the clusters to run
    besides the home one (local: docs/local-eks.md, "Several clusters and accounts")."""
    if supervisor_alive(paths) and paths.env_file.exists():
        return read_env(paths)
    if paths.state.exists():
        down(paths)
    build_binaries()  # here, where a person sees its progress; the supervisor then finds them built
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = open(paths.logs / "supervisor.log", "ab")  # noqa: SIM115 (owned by the child)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localeks",
            "serve",
            "--state",
            str(paths.state),
            "--name",
            cluster_name,
            "--speed",
            str(speed),
            *(["--more-clusters", ",".join(spec.as_arg() for spec in more_clusters)] if more_clusters else []),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    paths.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while not paths.env_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (paths.logs / "supervisor.log").read_text()[-3000:]
            down(paths)
            raise RuntimeError(f"local EKS did not start:\n{tail}")
        time.sleep(0.3)
    return read_env(paths)


def _exited(pid: int) -> bool:
    """Whether the process has ended. A supervisor that this process started (``up``) stays a
    zombie, which signal 0 still finds, until it is reaped: reap it here."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # not our child: someone else reaps it
        os.kill(pid, 0)  # ProcessLookupError once it is gone
        return False


def down(paths: Paths) -> None:
    """Stops the supervisor's whole process group and removes the state directory."""
    try:
        pid = int(paths.pid_file.read_text())
    except (FileNotFoundError, ValueError):
        pid = 0
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not _exited(pid):
                time.sleep(0.2)
        except ProcessLookupError:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # anything the supervisor left behind
    shutil.rmtree(paths.state, ignore_errors=True)
