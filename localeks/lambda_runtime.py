"""The child side of the local invoke: imports the handler as Lambda's runtime does (its import is
the init phase) and calls it once with the event and a LambdaContext-like object."""

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
        result = entry(json.loads(Path(event_file).read_text()), context)
        reply = {"ok": True, "result": result}
    except Exception as exc:  # what Lambda reports as the invocation's error
        traceback.print_exc()
        reply = {"ok": False, "result": {"errorType": type(exc).__name__, "errorMessage": str(exc)}}
    Path(result_file).write_text(json.dumps(reply, default=str))


if __name__ == "__main__":
    main()
