"""The local stand-ins of AWS (moto's werkzeug server, the token webhook) accept a wave's
connections: their listen queues are as deep as the kernel allows, not 128 and 5 (issue 23: at
1,000 events in flight, 448 cordons failed with connect timeouts against the local moto)."""

from __future__ import annotations

import socket

from localeks.webhook import LISTEN_BACKLOG, WebhookServer


def test_the_webhook_server_listens_with_a_deep_queue() -> None:
    assert WebhookServer.request_queue_size == LISTEN_BACKLOG >= 1024


def test_a_thousand_connections_wait_to_be_accepted_by_a_server_that_does_not_accept_yet() -> None:
    """What the backlog buys, measured on this kernel: 1,000 clients connect while the server's
    accept loop is busy; none is refused or left hanging."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(LISTEN_BACKLOG)
    clients = []
    try:
        for _ in range(1000):
            client = socket.socket()
            client.settimeout(2)
            client.connect(server.getsockname())  # completes in the kernel, before any accept()
            clients.append(client)
        assert len(clients) == 1000
    finally:
        for client in clients:
            client.close()
        server.close()
