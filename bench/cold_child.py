"""Run in a fresh process: import one handler module (Lambda's init) and, with --invoke, handle
one event; prints the timings as JSON. The environment is the function's (see common.py)."""

from __future__ import annotations

import importlib
import json
import sys
import time


def main() -> None:
    handler_dir, layer, event_file = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""
    sys.path[:0] = [handler_dir, layer]
    if event_file == "--modules-only":
        # what the handler imports, without its init (settings, AWS clients, tracer): the part
        # comparable with the naive import, which does no init either
        t0 = time.perf_counter()
        importlib.import_module("serverless_nth.entrypoint")
        for name in ("spot_interruption", "rebalance_recommendation", "state_change"):
            importlib.import_module(f"serverless_nth.events.{name}")
        print("BENCH " + json.dumps({"import_s": time.perf_counter() - t0}))
        return
    t0 = time.perf_counter()
    app = importlib.import_module("app")
    imported = time.perf_counter() - t0
    out: dict[str, object] = {"import_s": imported}
    if event_file:
        from localeks.lambda_runtime import LocalContext

        with open(event_file) as f:
            event = json.load(f)
        result = app.lambda_handler(event, LocalContext("bench", 120, "512"))
        out.update(cordoned_after_s=result["cordoned_after_seconds"], requests_to_cordon=result["requests_to_cordon"])
    print("BENCH " + json.dumps(out))


if __name__ == "__main__":
    main()
