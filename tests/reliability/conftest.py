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
    """Writes the figures. Under pytest-xdist each worker writes its own part beside the file
    (``<file>.<worker>``) and the controller, which ends last, merges the parts into the file."""
    out = os.environ.get("RELIABILITY_FIGURES")
    if not out:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        if _FIGURES:
            Path(f"{out}.{worker}").write_text(json.dumps(_FIGURES))
        return
    figures = dict(_FIGURES)
    for part in sorted(Path(out).parent.glob(f"{Path(out).name}.gw*")):
        figures.update(json.loads(part.read_text()))
        part.unlink()
    if figures:
        Path(out).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
