"""Run in a fresh process: import one handler module (Lambda's init) and, with an event file,
handle one event; prints the timings as JSON. The environment is the function's (see common.py).

    python -m bench.cold_child <handler dir> <core layer python/> [<event file> | --modules-only] [--deps=<dir>]

``--deps=<dir>``: the deps layer's python/ directory, after the core layer, as Lambda's /opt/python
merges the layers (bench/size.py passes the built function, the built core layer and the deps
layer built for this machine, and runs this with ``python -S``: no site-packages, the layers only).
Without it, third-party packages come from the interpreter's environment (.venv).
"""

from __future__ import annotations

import importlib
import json
import sys
import time


def main() -> None:
    deps = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--deps=")]
    args = [a for a in sys.argv[1:] if not a.startswith("--deps=")]
    handler_dir, layer, event_file = args[0], args[1], args[2] if len(args) > 2 else ""
    sys.path[:0] = [handler_dir, layer, *deps]
    if event_file == "--modules-only":
        # what the handler imports, without its init (settings, AWS clients, tracer): the part
        # comparable with the naive import, which does no init either
        t0 = time.perf_counter()
        importlib.import_module("serverless_nth.entrypoint")
        for name in ("spot_interruption", "rebalance_recommendation", "state_change"):
            importlib.import_module(f"serverless_nth.events.{name}")
        print("BENCH " + json.dumps({"import_s": time.perf_counter() - t0}))
        return
    t0, c0 = time.perf_counter(), time.process_time()
    app = importlib.import_module("app")
    imported = time.perf_counter() - t0
    # CPU time (user + sys) beside the wall time: less sensitive to other work on the machine
    out: dict[str, object] = {"import_s": imported, "import_cpu_s": time.process_time() - c0}
    if event_file:
        from localeks.lambda_runtime import LocalContext

        with open(event_file) as f:
            event = json.load(f)
        t1, c1 = time.perf_counter(), time.process_time()
        result = app.lambda_handler(event, LocalContext("bench", 120, "512"))
        # the whole first invocation, from the handler's call to its return
        out.update(handled_s=time.perf_counter() - t1, handled_cpu_s=time.process_time() - c1)
        out.update(cordoned_after_s=result["cordoned_after_seconds"], requests_to_cordon=result["requests_to_cordon"])
    out.update(modules=len(sys.modules))
    print("BENCH " + json.dumps(out))


if __name__ == "__main__":
    main()
