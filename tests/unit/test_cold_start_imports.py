"""What a handler's import loads, in a fresh interpreter each (bench/size.py measures the time).

The Kubernetes transport comes without the package's config machinery (kube/transport.py), the
X-Ray SDK only when tracing is on (observability.py), and neither trick changes what the rest of
the process gets from ``import kubernetes``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "layers" / "core" / "python"


def _run(code: str, **env: str) -> Any:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "LAMBDA_"))}
    base.update(PYTHONPATH=str(CORE), CLUSTER_NAME="prod", AWS_DEFAULT_REGION="us-east-1", **env)
    out = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_handler_import_leaves_kubernetes_config_and_xray_out() -> None:
    got = _run(
        "import sys, json\n"
        "import serverless_nth.entrypoint, serverless_nth.kube.client\n"
        "heavy = ('kubernetes', 'aws_xray_sdk', 'yaml', 'requests', 'boto3')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))",
        AWS_SAM_LOCAL="true",
    )
    assert got == []


def test_kubernetes_imported_afterwards_is_the_whole_package() -> None:
    got = _run(
        "import json\n"
        "from serverless_nth.kube import transport\n"
        "import kubernetes\n"
        "from kubernetes import client, config, watch\n"
        "print(json.dumps({'rest': client.rest.ApiException.__name__, 'core': client.CoreV1Api.__name__,\n"
        "    'config': callable(config.load_kube_config), 'ours': transport.RESTClientObject.__module__}))"
    )
    assert got == {"rest": "ApiException", "core": "CoreV1Api", "config": True, "ours": "kubernetes.client.rest"}


def test_an_imported_kubernetes_is_shared() -> None:
    got = _run(
        "import json, kubernetes\n"
        "from kubernetes.client.rest import RESTClientObject\n"
        "from serverless_nth.kube import transport\n"
        "print(json.dumps({'same': transport.RESTClientObject is RESTClientObject}))"
    )
    assert got == {"same": True}


def test_tracing_on_in_lambda_loads_powertools_tracer() -> None:
    got = _run(
        "import sys, json\n"
        "from serverless_nth.observability import tracer, tracing_enabled\n"
        "xray = 'aws_xray_sdk' in sys.modules\n"
        "print(json.dumps({'on': tracing_enabled(), 'type': type(tracer).__name__, 'xray': xray}))",
        LAMBDA_TASK_ROOT="/var/task",
        AWS_XRAY_CONTEXT_MISSING="LOG_ERROR",
    )
    assert got == {"on": True, "type": "Tracer", "xray": True}


def test_tracing_off_as_powertools_decides() -> None:
    code = (
        "import json\n"
        "from serverless_nth.observability import tracer, tracing_enabled\n"
        "with tracer.provider.in_subsegment('x'):\n"
        "    pass\n"
        "handler = tracer.capture_lambda_handler(capture_response=False)(len)\n"
        "print(json.dumps({'on': tracing_enabled(), 'same': handler is len}))"
    )
    off = {"on": False, "same": True}
    assert _run(code) == off  # outside Lambda
    assert _run(code, LAMBDA_TASK_ROOT="/var/task", AWS_SAM_LOCAL="true") == off
    assert _run(code, LAMBDA_TASK_ROOT="/var/task", POWERTOOLS_TRACE_DISABLED="true") == off
