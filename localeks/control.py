"""Local only: lets a test stop and start one cluster's kube-apiserver while the others keep
serving (an API server outage in one of several clusters). The supervisor serves it on
127.0.0.1 (``control_url`` in clusters.json); nothing like it exists in EKS.

    POST /clusters/<name>/kube-apiserver/<stop|start|freeze|thaw>   -> 200 {"name", "action"}

``stop`` ends the process (clients then get "connection refused"), ``start`` starts it again with
the same flags, port and certificates and answers once it is ready, ``freeze``/``thaw`` send
SIGSTOP/SIGCONT (clients then hang until their own timeouts, as behind a black-holed network).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACTIONS = ("stop", "start", "freeze", "thaw")


def serve_control(planes: dict[str, Any]) -> ThreadingHTTPServer:
    """``planes``: cluster name -> localeks.control_plane.ControlPlane."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "clusters" or parts[2] != "kube-apiserver" or parts[3] not in ACTIONS:
                self._answer(404, {"error": f"no route {self.path}"})
                return
            plane = planes.get(parts[1])
            if plane is None:
                self._answer(404, {"error": f"no cluster {parts[1]}"})
                return
            try:
                plane.apiserver(parts[3])
            except Exception as exc:  # reported to the test that asked
                self._answer(500, {"error": f"{type(exc).__name__}: {exc}"})
                return
            self._answer(200, {"name": parts[1], "action": parts[3]})

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="localeks-control", daemon=True).start()
    return server


def apiserver_action(control_url: str, cluster: str, action: str, timeout: float = 180) -> None:
    """Asks the supervisor to ``action`` the kube-apiserver of ``cluster``; raises on refusal."""
    request = urllib.request.Request(f"{control_url}/clusters/{cluster}/kube-apiserver/{action}", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        json.loads(response.read())
