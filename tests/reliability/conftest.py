"""Fixtures of the reliability tier: the fault proxies (one of each for the session, their rules
cleared around every test) and the figures each test measured, written where
``RELIABILITY_FIGURES`` says when it is set (``make reliability`` leaves it unset)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localeks.faults import AwsFaultProxy, KubeFaultProxy
from tests.reliability.support import Faults


@pytest.fixture(scope="session")
def state(cluster_env: dict[str, str]) -> Path:
    """The local EKS's state directory (pki, supervisor.pid)."""
    return Path(cluster_env["KUBECONFIG"]).parent


@pytest.fixture(scope="session")
def proxies(cluster_env: dict[str, str], state: Path) -> Iterator[Faults]:
    kube = KubeFaultProxy(cluster_env["LOCALEKS_API_URL"], state / "pki")
    aws = AwsFaultProxy(cluster_env["AWS_ENDPOINT_URL"], kube_url=kube.url)
    yield Faults(kube, aws)
    kube.stop()
    aws.stop()


@pytest.fixture
def faults(proxies: Faults) -> Iterator[Faults]:
    proxies.kube.clear()
    proxies.aws.clear()
    yield proxies
    proxies.kube.clear()
    proxies.aws.clear()


_FIGURES: dict[str, Any] = {}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A test's measured figures; printed, and kept for RELIABILITY_FIGURES."""
    mine: dict[str, Any] = {}
    _FIGURES[request.node.name] = mine
    return mine


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = os.environ.get("RELIABILITY_FIGURES")
    if out and _FIGURES:
        Path(out).write_text(json.dumps(_FIGURES, indent=2, sort_keys=True) + "\n")
