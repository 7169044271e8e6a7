"""The child side of the local invoke: imports the handler as Lambda's runtime does (its import is
the init phase) and calls it once with the event and a LambdaContext-like object.

A durable function (``LOCALEKS_DURABLE=1``) runs under aws-durable-execution-sdk-python-testing's
in-process runner instead: it stands in for Lambda's durable execution service (checkpoints,
re-invocations after a wait or a step's retry), with a clock that skips waits unless
``LOCALEKS_DURABLE_REAL_TIME=1``. Every invocation of the execution runs the real handler in this
process; the reply is the execution's status, result and operations (name, type, status, attempt,
start and end), so tests can check what ran, in which order, and how often."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any


class LocalContext:
    def __init__(self, function_name: str, timeout_seconds: int, memory_mb: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{function_name}"  # moto's account
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    handler, event_file, result_file, timeout = sys.argv[1:5]
    module_name, _, function_name = handler.rpartition(".")
    sys.path[:0] = list(os.environ["PYTHONPATH"].split(os.pathsep))
    reply: dict[str, Any]
    try:
        module = importlib.import_module(module_name)
        entry = getattr(module, function_name)
        context = LocalContext(
            os.environ["AWS_LAMBDA_FUNCTION_NAME"],
            int(timeout),
            os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        )
        event = json.loads(Path(event_file).read_text())
        if os.environ.get("LOCALEKS_DURABLE") == "1":
            reply = _run_durable(entry, event, context.function_name, int(timeout))
        else:
            reply = {"ok": True, "result": entry(event, context)}
    except Exception as exc:  # what Lambda reports as the invocation's error
        traceback.print_exc()
        reply = {"ok": False, "result": {"errorType": type(exc).__name__, "errorMessage": str(exc)}}
    Path(result_file).write_text(json.dumps(reply, default=str))


def _run_durable(entry: Any, event: Any, function_name: str, timeout: int) -> dict[str, Any]:
    from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner

    wall = int(os.environ.get("LOCALEKS_DURABLE_WALL_SECONDS", "600"))
    skip_time = os.environ.get("LOCALEKS_DURABLE_REAL_TIME") != "1"
    region = os.environ.get("AWS_REGION", "us-east-1")
    with DurableFunctionTestRunner(
        handler=entry, skip_time=skip_time, invocation_timeout=timeout, region=region
    ) as runner:
        done = runner.run(
            input=json.dumps(event), execution_timeout=wall, function_name=function_name, account_id="123456789012"
        )
    operations = [
        {
            "name": op.name,
            "type": op.operation_type.value,
            "status": op.status.value,
            "attempt": getattr(op, "attempt", None),
            "started": _seconds(op.start_timestamp),
            "ended": _seconds(op.end_timestamp),
            "result": json.loads(op.result) if getattr(op, "result", None) else None,
            "scheduled_end": _seconds(getattr(op, "scheduled_end_timestamp", None)),
        }
        for op in sorted(done.operations, key=lambda o: (o.start_timestamp is None, o.start_timestamp))
    ]
    result = json.loads(done.result) if done.result else None
    status = done.status.value
    error = None if done.error is None else {"errorType": done.error.type, "errorMessage": done.error.message}
    return {
        "ok": status == "SUCCEEDED",
        "result": {"status": status, "result": result, "error": error, "operations": operations},
    }


def _seconds(moment: Any) -> float | None:
    return None if moment is None else float(moment.timestamp())


if __name__ == "__main__":
    main()
