"""The functions as `sam build` made them (.aws-sam/build), each run once as Lambda lays them out.

Each built function's directory is the task root (/var/task); the core layer's and the deps
layer's python/ directories stand for /opt/python (the core's first, as Lambda merges layers in
order); the interpreter runs with ``-S``, so no site-packages: every third-party module must come
from the layers. Each function imports its handler module (its init) and handles one event against
the local EKS, with the environment template.yaml gives it and its role's credentials on moto.

One difference from Lambda, on purpose: the deps layer used to run them is built for this machine
(the same layers/deps/Makefile, requirements and slimming, with the platform overridden to this
CPU and Python: bench.size.host_deps_layer, cached in ~/.cache/eks-nth-deps-host), because the
built layer's arm64 extension modules (pydantic-core, PyYAML, wrapt) cannot load on x86_64, and
the Python is this machine's (3.11), not Lambda's 3.13. Everything else is the `sam build` output.
The built arm64 deps layer is checked as it is: its botocore data holds exactly the services of
AWS_SERVICES (a stale build cache would show here) and its extension modules are aarch64.

Durable functions run under aws-durable-execution-sdk-python-testing's runner, the stand-in for
Lambda's durable execution service that `make invoke` uses: that package alone is added to the
path, after the layers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from bench.size import BUILD, built_functions, deployment_unzipped_mb, host_deps_layer
from localeks.invoke import role_credentials
from localeks.scenes import Scenes
from localeks.template import function_spec, load_template
from serverless_nth.aws.clients import AWS_SERVICES
from tests.eventfiles import load_event, schedule_payload

REPO = Path(__file__).resolve().parents[2]
DURABLE_RUNNER = "aws_durable_execution_sdk_python_testing"


@pytest.fixture(scope="module")
def build() -> Path:
    if not (BUILD / "CoreLayer" / "python" / "serverless_nth").is_dir():
        pytest.fail(f"no sam build output in {BUILD}: run `make build` first")
    return BUILD


@pytest.fixture(scope="module")
def deps(build: Path) -> Path:
    return host_deps_layer()


def test_every_function_of_the_template_is_built(build: Path) -> None:
    template = load_template()
    functions = {k for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert set(built_functions(build)) == functions


def test_the_built_deps_layer_is_for_lambda_and_slim(build: Path) -> None:
    site = build / "DepsLayer" / "python"
    data = site / "botocore" / "data"
    services = {p.name for p in data.iterdir() if p.is_dir()}
    assert services == set(AWS_SERVICES), "stale deps layer? `sam build --no-cached` rebuilds it"
    for service, operations in AWS_SERVICES.items():
        (version,) = [p for p in (data / service).iterdir() if p.is_dir()]
        if operations is not None:
            model = json.loads(_read(version / "service-2.json.gz"))
            assert set(model["operations"]) == set(operations), service
    extensions = list(site.rglob("*.so"))
    assert extensions
    assert all("x86_64" not in p.name for p in extensions)
    assert any("aarch64" in p.name for p in extensions)
    assert not (site / "kubernetes" / "aio").exists()
    assert not (site / "aiohttp").exists()
    assert deployment_unzipped_mb(build) <= 60


def _read(path: Path) -> bytes:
    import gzip

    return gzip.decompress(path.read_bytes())


def _durable_runner_dir(tmp: Path) -> Path:
    """A directory holding only the durable runner package (a link to .venv's copy)."""
    spec = importlib.util.find_spec(DURABLE_RUNNER)
    assert spec is not None
    assert spec.submodule_search_locations is not None
    only = tmp / "durable-runner"
    only.mkdir()
    (only / DURABLE_RUNNER).symlink_to(Path(next(iter(spec.submodule_search_locations))))
    return only


def invoke_built(
    function: str, event: dict[str, Any], cluster_env: dict[str, str], build: Path, deps: Path
) -> dict[str, Any]:
    """One invocation of a built function in a fresh interpreter, as localeks.invoke does for the
    source tree, but from .aws-sam/build and with ``-S``."""
    spec = function_spec(function, {"ClusterName": cluster_env["CLUSTER_NAME"]})
    task_root = build / function
    region = cluster_env["AWS_DEFAULT_REGION"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = [task_root, build / "CoreLayer" / "python", deps]
        if spec.durable:
            path.append(_durable_runner_dir(tmp))
        path.append(REPO)  # localeks.lambda_runtime, the local runtime interface (standard library only)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            **spec.environment,
            **role_credentials(cluster_env),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": cluster_env["AWS_ENDPOINT_URL"],
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_SAM_LOCAL": "true",  # tracing off, as `sam local invoke` (no X-Ray daemon here)
            "PYTHONPATH": os.pathsep.join(map(str, path)),
            "PYTHONDONTWRITEBYTECODE": "1",  # as on Lambda's read-only /opt
            **({"LOCALEKS_DURABLE": "1", "LOCALEKS_DURABLE_WALL_SECONDS": "120"} if spec.durable else {}),
        }
        event_file, result_file = tmp / "event.json", tmp / "result.json"
        event_file.write_text(json.dumps(event))
        code = (
            "import sys\n"
            "import localeks.lambda_runtime\n"
            "localeks.lambda_runtime.main()\n"
            "import json\n"
            "print('MODULES ' + json.dumps({n: getattr(m, '__file__', None) for n, m in list(sys.modules.items())}))\n"
        )
        argv = [sys.executable, "-S", "-c", code, spec.handler, str(event_file), str(result_file), str(spec.timeout)]
        proc = subprocess.run(argv, env=env, cwd=task_root, capture_output=True, text=True, timeout=180)
        output = proc.stdout + proc.stderr
        assert result_file.exists(), output[-3000:]
        reply = json.loads(result_file.read_text())
        assert reply["ok"], (reply, output[-3000:])
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES "))
        modules: dict[str, str | None] = json.loads(line[len("MODULES ") :])
    # third-party code came from the layers (or the durable runner), never from elsewhere
    allowed = [str(p) for p in path[:-1]] + [sys.base_prefix, str(REPO / "localeks")]
    strays = {n: f for n, f in modules.items() if f and not any(f.startswith(a) for a in allowed)}
    assert not strays, strays
    assert any((f or "").startswith(str(deps)) for f in modules.values())
    return dict(reply["result"])


def _node_event(scenes: Scenes, name: str) -> dict[str, Any]:
    return load_event(name, instance_id=scenes.worker_node(spot=True).instance_id, now=True)


def test_spot_interruption_function(cluster_env: dict[str, str], scenes: Scenes, build: Path, deps: Path) -> None:
    result = invoke_built(
        "SpotInterruptionFunction", _node_event(scenes, "spot-interruption"), cluster_env, build, deps
    )
    assert result["cordoned"], result


def test_rebalance_recommendation_function(
    cluster_env: dict[str, str], scenes: Scenes, build: Path, deps: Path
) -> None:
    event = _node_event(scenes, "rebalance-recommendation")
    result = invoke_built("RebalanceRecommendationFunction", event, cluster_env, build, deps)
    assert result["cordoned"], result


def test_state_change_function(cluster_env: dict[str, str], scenes: Scenes, build: Path, deps: Path) -> None:
    node = scenes.worker_node(spot=True)
    scenes.ec2.stop_instances(InstanceIds=[node.instance_id])
    event = load_event("state-change-stopping", instance_id=node.instance_id, now=True)
    result = invoke_built("StateChangeFunction", event, cluster_env, build, deps)
    assert result["cordoned"], result


def test_lifecycle_action_function(cluster_env: dict[str, str], scenes: Scenes, build: Path, deps: Path) -> None:
    from localeks.node_group import NodeGroup

    group = NodeGroup(cluster_env, scenes, node=False)  # no node: continued at once
    result = invoke_built("LifecycleActionFunction", group.scale_in(), cluster_env, build, deps)
    assert result["status"] == "SUCCEEDED", result
    assert result["result"]["outcome"] == "node-not-found", result


def test_scheduled_change_function(cluster_env: dict[str, str], scenes: Scenes, build: Path, deps: Path) -> None:
    unknown = "i-0123456789abcdef0"  # an instance EC2 does not know: nothing to wait for
    event = load_event("scheduled-change", now=True)
    event["detail"]["startTime"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3 * 3600))
    event["detail"]["affectedEntities"] = [{"entityValue": unknown}]
    event["resources"] = [unknown]
    result = invoke_built("ScheduledChangeFunction", event, cluster_env, build, deps)
    assert result["status"] == "SUCCEEDED", result
    assert result["result"]["outcomes"] == {unknown: "instance-not-found"}, result


def test_capacity_block_expiry_function(cluster_env: dict[str, str], build: Path, deps: Path) -> None:
    event = load_event("capacity-block-expiry", now=True)  # a reservation with no instance: nothing to drain
    result = invoke_built("CapacityBlockExpiryFunction", event, cluster_env, build, deps)
    assert result["status"] == "SUCCEEDED", result
    assert result["result"]["outcomes"] == {}, result


def test_long_drain_start_function(cluster_env: dict[str, str], build: Path, deps: Path) -> None:
    from localeks import durable_lambda
    from localeks.cluster import moto_client

    client = moto_client(cluster_env, "lambda")
    for name in ("LifecycleActionFunction", "ScheduledChangeFunction"):
        durable_lambda.create_durable_function(client, name, cluster_env["FUNCTION_ROLE_ARN"])
    try:
        event = load_event("asg-lifecycle-action", now=True)
        result = invoke_built("LongDrainStartFunction", event, cluster_env, build, deps)
        assert result["outcome"] == "started", result
        assert result["version"] == "1", result
    finally:
        for name in ("LifecycleActionFunction", "ScheduledChangeFunction"):
            client.delete_function(FunctionName=name)


def test_instance_status_function(cluster_env: dict[str, str], build: Path, deps: Path) -> None:
    """The backstop, built: its three DescribeInstanceStatus queries on the layer's cut-down EC2 model
    (a cluster where no instance is impaired or has an event: nothing else is called)."""
    result = invoke_built("InstanceStatusFunction", schedule_payload(), cluster_env, build, deps)
    assert (result["statuses"], result["ec2_requests"], result["outcomes"]) == (0, 3, {}), result
