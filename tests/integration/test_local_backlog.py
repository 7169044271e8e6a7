"""The running local EKS's stand-ins of AWS listen with the deep queue a wave needs (issue 23):
moto's server and the token webhook, read from the kernel (``ss``: Send-Q of a listening socket
is its backlog)."""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

from localeks.webhook import LISTEN_BACKLOG


def _backlog(port: int) -> int:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    (line,) = out.splitlines()
    return int(line.split()[2])


def test_moto_listens_with_a_deep_queue(cluster_env: dict[str, str]) -> None:
    port = urlsplit(cluster_env["AWS_ENDPOINT_URL"]).port
    assert port is not None
    assert _backlog(port) == LISTEN_BACKLOG
