"""Docker-free local invoke: runs one function of template.yaml with an event file, against the
local EKS, as Lambda would run it.

The function runs in a fresh Python process with the environment template.yaml gives it
(parameters resolved, CLUSTER_NAME from the local cluster), its code directory and each layer's
``python/`` directory on sys.path as Lambda mounts them at /opt/python, the third-party layer's
packages from the project's virtual environment, and the credentials of the function's IAM role
(assumed on moto). The handler's result is printed; the exit status is 1 when the handler raised.

    python -m localeks.invoke SpotInterruptionFunction events/spot-interruption.json \
        [--instance-id i-...] [--now] [--param DryRun=true]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localeks.cluster import DEFAULT_STATE, Paths, moto_client, read_env
from localeks.template import FunctionSpec, function_spec

_PASSED_THROUGH = ("PATH", "HOME", "LANG", "TZ", "SYSTEMROOT")


@dataclass
class Invocation:
    exit_code: int
    result: Any  # the handler's return value, or {"errorType", "errorMessage"}
    output: str  # what the function printed (logs and EMF lines)


def prepare_event(event: dict[str, Any], instance_id: str | None = None, now: bool = False) -> dict[str, Any]:
    """The sample event, pointed at another instance and/or stamped with the current time (a new
    id too, as EventBridge gives every event its own)."""
    event = json.loads(json.dumps(event))
    detail = event["detail"]
    if instance_id and "affectedEntities" in detail:  # AWS Health: the instances are entities
        detail["affectedEntities"] = [{"entityValue": instance_id}]
        event["resources"] = [instance_id]
    elif instance_id and "EC2InstanceId" in detail:  # Auto Scaling: the group is the resource
        detail["EC2InstanceId"] = instance_id
    elif instance_id:
        detail["instance-id"] = instance_id
        event["resources"] = [r.rsplit("/", 1)[0] + "/" + instance_id for r in event.get("resources", [])]
    if now:
        restamp(event, datetime.datetime.now(datetime.UTC))
        event["id"] = str(uuid.uuid4())
    return event


def restamp(event: dict[str, Any], when: datetime.datetime) -> None:
    """Sets the event's ``time``; the times the detail names (a capacity reservation's
    instance-termination-time, a Capacity Block's end-date, a Health event's startTime and
    endTime, the instance-status backstop's scheduled event's not-before) move with it, keeping their distance."""
    stamp, rfc1123 = "%Y-%m-%dT%H:%M:%SZ", "%a, %d %b %Y %H:%M:%S GMT"
    was = _rfc3339(event["time"])
    detail = event.get("detail", {})
    for key, form in (
        ("instance-termination-time", stamp),
        ("end-date", stamp),
        ("not-before", stamp),
        ("startTime", rfc1123),
        ("endTime", rfc1123),
    ):
        if detail.get(key):
            then = _rfc3339(detail[key]) if form == stamp else _rfc1123(detail[key])
            detail[key] = (when + (then - was)).strftime(form)
    event["time"] = when.strftime(stamp)


def _rfc3339(text: str) -> datetime.datetime:
    """An RFC 3339 time, with or without fractional seconds (EventBridge writes none; events
    written by hand or by other tools may)."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(datetime.UTC)


def _rfc1123(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=datetime.UTC)


def role_credentials(cluster_env: dict[str, str]) -> dict[str, str]:
    sts = moto_client(cluster_env, "sts")
    creds = sts.assume_role(RoleArn=cluster_env["FUNCTION_ROLE_ARN"], RoleSessionName="local-invoke")["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }


def invoke(
    function: str,
    event: dict[str, Any],
    cluster_env: dict[str, str],
    params: dict[str, str] | None = None,
    env_overrides: dict[str, str] | None = None,
) -> Invocation:
    spec = function_spec(function, {"ClusterName": cluster_env["CLUSTER_NAME"], **(params or {})})
    region = cluster_env["AWS_DEFAULT_REGION"]
    layer_paths = [str(d / "python") for d in spec.layer_dirs if (d / "python").is_dir()]
    env = {k: os.environ[k] for k in _PASSED_THROUGH if k in os.environ}
    env.update(spec.environment)
    env.update(role_credentials(cluster_env))
    env.update(
        AWS_REGION=region,
        AWS_DEFAULT_REGION=region,
        AWS_ENDPOINT_URL=cluster_env["AWS_ENDPOINT_URL"],
        AWS_LAMBDA_FUNCTION_NAME=spec.logical_id,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(spec.memory),
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_SAM_LOCAL="true",  # as sam local invoke: Powertools Tracer stays off without X-Ray
        PYTHONPATH=os.pathsep.join([str(spec.code_dir), *layer_paths]),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if spec.durable:
        env["LOCALEKS_DURABLE"] = "1"
    env.update(env_overrides or {})
    with tempfile.TemporaryDirectory() as tmp:
        event_file, result_file = Path(tmp) / "event.json", Path(tmp) / "result.json"
        event_file.write_text(json.dumps(event))
        argv = [
            sys.executable,
            "-m",
            "localeks.lambda_runtime",
            spec.handler,
            str(event_file),
            str(result_file),
            str(spec.timeout),
        ]
        runtime_env = {
            **env,
            "PYTHONPATH": env["PYTHONPATH"] + os.pathsep + str(Path(__file__).resolve().parent.parent),
        }
        try:
            proc = subprocess.run(
                argv, env=runtime_env, cwd=spec.code_dir, capture_output=True, text=True, timeout=_wall(spec, env)
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return Invocation(
                1, {"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {spec.timeout} s"}, out
            )
        output = proc.stdout + proc.stderr
        if not result_file.exists():
            return Invocation(1, {"errorType": "Runtime.ExitError", "errorMessage": f"exit {proc.returncode}"}, output)
        reply = json.loads(result_file.read_text())
    return Invocation(0 if reply["ok"] else 1, reply["result"], output)


def _wall(spec: FunctionSpec, env: dict[str, str]) -> float:
    """How long the local invoke may take: one invocation, or a whole durable execution."""
    if spec.durable:
        return int(env.get("LOCALEKS_DURABLE_WALL_SECONDS", "600")) + 30
    return spec.timeout + 10


def main() -> None:
    parser = argparse.ArgumentParser(prog="localeks.invoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("function", help="logical ID of the function in template.yaml")
    parser.add_argument("event", type=Path, help="event file, e.g. events/spot-interruption.json")
    parser.add_argument("--instance-id", help="point the event at this instance")
    parser.add_argument("--now", action="store_true", help="stamp the event with the current time and a new id")
    parser.add_argument(
        "--param", action="append", default=[], metavar="Name=Value", help="template parameter override"
    )
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)))
    args = parser.parse_args()
    paths = Paths(args.state.resolve())
    if not paths.env_file.exists():
        raise SystemExit(f"the local cluster is not up ({paths.env_file} missing): run make cluster-up")
    params = dict(p.split("=", 1) for p in args.param)
    event = prepare_event(json.loads(args.event.read_text()), args.instance_id, args.now)
    invocation = invoke(args.function, event, read_env(paths), params)
    sys.stdout.write(invocation.output)
    print(json.dumps(invocation.result, indent=2))
    sys.exit(invocation.exit_code)


if __name__ == "__main__":
    main()
