"""Fixtures shared by the tiers. The local EKS is reused when `make cluster-up` already runs it,
else started for the session (the same code as `make cluster-up`) and stopped at the end; the
unit tier never asks for it. Under pytest-xdist (``-n``) each worker has a local EKS of its own,
in ``LOCALEKS_STATE`` with ``-<worker>`` appended (``cluster_state``)."""

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from localeks.cluster import DEFAULT_STATE, Paths, down, read_env, supervisor_alive, up
from localeks.invoke import role_credentials
from localeks.scenes import Scenes


def cluster_state() -> Path:
    """This process's local EKS state directory: ``LOCALEKS_STATE`` (``.local`` by default), with
    the pytest-xdist worker's id appended in a worker, so that workers never share a cluster."""
    base = Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)).resolve()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return base.with_name(f"{base.name}-{worker}") if worker else base


@pytest.fixture(scope="session")
def cluster_env() -> Iterator[dict[str, str]]:
    paths = Paths(cluster_state())
    started_here = not (supervisor_alive(paths) and paths.env_file.exists())
    env = up(paths, "local-eks", 0.1) if started_here else read_env(paths)
    yield env
    if started_here:
        down(paths)


@pytest.fixture(scope="session")
def scenes(cluster_env: dict[str, str]) -> Scenes:
    return Scenes(cluster_env)


@pytest.fixture(scope="session")
def function_session(cluster_env: dict[str, str]) -> boto3.Session:
    """A boto3 session with the credentials of the functions' IAM role (assumed on moto)."""
    creds = role_credentials(cluster_env)
    return boto3.Session(
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=creds["AWS_SESSION_TOKEN"],
        region_name=cluster_env["AWS_DEFAULT_REGION"],
    )


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadgroup`` as it is meant to work (tests/xdist_groups.py says why it is needed)."""
    from tests.xdist_groups import make_scheduler

    return make_scheduler(config, log)
