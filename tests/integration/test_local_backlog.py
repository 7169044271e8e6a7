"""The running local EKS's stand-ins of AWS listen with the deep queue a wave needs (issue 23):
moto's server and the token webhook, read from the kernel (``ss``: the Send-Q of a listening socket
is its backlog). At 128 and 5, a wave of 1,000 events in flight saw 448 cordons fail with connect
timeouts; the kernel here caps a backlog at net.core.somaxconn (4096)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from localeks.webhook import LISTEN_BACKLOG


def _backlog(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    (line,) = out.splitlines()
    return int(line.split()[2])


def test_moto_and_the_token_webhook_listen_with_a_deep_queue(cluster_env: dict[str, str]) -> None:
    webhook = json.loads((Path(cluster_env["KUBECONFIG"]).parent / "webhook.kubeconfig").read_text())
    assert LISTEN_BACKLOG >= 1024
    assert _backlog(cluster_env["AWS_ENDPOINT_URL"]) == LISTEN_BACKLOG
    assert _backlog(webhook["clusters"][0]["cluster"]["server"]) == LISTEN_BACKLOG
