"""The phases of `make bench` (bench/run.py runs them and says what each measures): each a function
that takes the local EKS and the sizes and returns its figures."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, function_environment, handle, median, warm_service
from localeks.cluster import Paths, supervisor_alive, up
from localeks.scenes import Scenes

HANDLERS = ["spot_interruption", "rebalance_recommendation", "state_change"]


def child_json(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=REPO).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH "))
    return dict(json.loads(line[len("BENCH ") :]))


def child_env(cluster_env: dict[str, str]) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(REPO),
        **function_environment(cluster_env),
    }


def bench_imports(cluster_env: dict[str, str], repeats: int) -> dict[str, Any]:
    env = child_env(cluster_env)
    layer = str(REPO / "layers" / "core" / "python")
    per_handler = {}
    for name in HANDLERS:
        argv = [sys.executable, "-m", "bench.cold_child", str(REPO / "handlers" / name), layer]
        child_json(argv, env)  # first run compiles .pyc files; Lambda ships them compiled too
        per_handler[name] = median([child_json(argv, env)["import_s"] for _ in range(repeats)])
    modules_argv = [
        sys.executable,
        "-m",
        "bench.cold_child",
        str(REPO / "handlers" / HANDLERS[0]),
        layer,
        "--modules-only",
    ]
    modules = median([child_json(modules_argv, env)["import_s"] for _ in range(repeats)])
    naive_argv = [sys.executable, "-m", "bench.naive_import"]
    child_json(naive_argv, env)
    naive = median([child_json(naive_argv, env)["import_s"] for _ in range(repeats)])
    return {
        "per_handler_s": per_handler,
        "handler_import_s": max(per_handler.values()),  # import + init, as Lambda's init phase runs it
        "handler_modules_import_s": modules,  # the same imports without the init
        "naive_import_s": naive,
    }


def bench_reaction(cluster_env: dict[str, str], scenes: Scenes, service: Any, repeats: int) -> dict[str, Any]:
    """Handler start -> node cordoned, for a rebalance recommendation (cordon and taint only)."""
    from bench.drain import spot_event
    from serverless_nth.events.model import EventKind

    warm, warm_requests, cold, cold_requests = [], [], [], []
    for _ in range(repeats):
        scene = scenes.worker_node(spot=True)
        event = spot_event(scene.instance_id)
        event = type(event)(
            EventKind.REBALANCE_RECOMMENDATION,
            event.event_id,
            event.instance_id,
            event.region,
            event.account,
            event.time,
        )
        result = handle(service, event)
        warm.append(result.cordoned_after_seconds)
        warm_requests.append(result.requests_to_cordon)
    layer = str(REPO / "layers" / "core" / "python")
    for _ in range(repeats):
        scene = scenes.worker_node(spot=True)
        from tests.eventfiles import load_event

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(load_event("rebalance-recommendation", instance_id=scene.instance_id, now=True), f)
        argv = [
            sys.executable,
            "-m",
            "bench.cold_child",
            str(REPO / "handlers" / "rebalance_recommendation"),
            layer,
            f.name,
        ]
        out = child_json(argv, child_env(cluster_env))
        os.unlink(f.name)
        cold.append(out["import_s"] + out["cordoned_after_s"])
        cold_requests.append(out["requests_to_cordon"])
    return {
        "cordon_warm_s": median(warm),
        "cordon_cold_s": median(cold),
        "api_calls_before_cordon": int(median(warm_requests)),
        "api_calls_before_cordon_cold": int(median(cold_requests)),
    }


def bench_drain(cluster_env: dict[str, str], scenes: Scenes, service: Any, sizes: dict[int, int]) -> dict[str, Any]:
    from bench.drain import kubectl, ours, seed_node

    out: dict[str, Any] = {}
    for size, repeats in sizes.items():
        runs: dict[str, list[float]] = {
            "evictions_sent_s": [],
            "evictions_answered_s": [],
            "complete_s": [],
            "kubectl_s": [],
            "api_requests": [],
        }
        for _ in range(repeats):
            ours_node, kubectl_node = seed_node(scenes, size), seed_node(scenes, size)
            for _node in (ours_node, kubectl_node):  # replacements need room: a spare node per node drained
                scenes.worker_node(spot=False)
            mine = ours(service, ours_node)
            runs["evictions_sent_s"].append(mine["evictions_sent_s"])
            runs["evictions_answered_s"].append(mine["evictions_answered_s"])
            runs["complete_s"].append(mine["complete_s"])
            runs["api_requests"].append(mine["api_requests"])
            runs["kubectl_s"].append(kubectl(cluster_env, kubectl_node))
        out[str(size)] = {k: median(v) for k, v in runs.items()}
        out[str(size)]["repeats"] = repeats
        out[str(size)]["speedup"] = round(out[str(size)]["kubectl_s"] / out[str(size)]["complete_s"], 2)
        print(f"bench: drain {size} pods: {out[str(size)]}", flush=True)
    return out


def speed1_paths(state: Path) -> Paths:
    """The state of the kwok-speed-1 cluster the real-grace drain runs on: in the temp directory,
    named after the main cluster's state (LOCALEKS_SPEED1_STATE says otherwise)."""
    digest = hashlib.sha256(str(state).encode()).hexdigest()[:8]
    default = Path(tempfile.gettempdir()) / f"localeks-speed1-{digest}"
    return Paths(Path(os.environ.get("LOCALEKS_SPEED1_STATE", default)).resolve())


class Speed1:
    """The kwok-speed-1 local EKS the real-grace drain runs on (``speed1_paths``): ``start`` brings
    it up in a thread of this process unless one runs already, ``ready`` waits for it and says how
    long it took, ``stop`` stops it in the background (it takes up to half a minute) if it was
    started here. ``--smoke`` starts it with the run, so that its start overlaps the other phases;
    the full run starts it with its phase, so that no phase it times shares the CPU with a
    control plane that is starting."""

    def __init__(self, state: Path) -> None:
        self.paths = speed1_paths(state)
        self.started_here = False
        self.up_s = 0.0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> Speed1:
        if self._thread is None:
            self.started_here = not (supervisor_alive(self.paths) and self.paths.env_file.exists())
            self._thread = threading.Thread(target=self._up, name="speed1-up", daemon=True)
            self._thread.start()
        return self

    def _up(self) -> None:
        began = time.monotonic()
        try:
            up(self.paths, "local-eks", 1.0)
        except BaseException as exc:  # raised again by ready()
            self._error = exc
        self.up_s = time.monotonic() - began

    def ready(self) -> float:
        self.start()
        assert self._thread is not None
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"the kwok-speed-1 local EKS did not start: {self._error}") from self._error
        return self.up_s

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self.started_here:
            self.started_here = False
            subprocess.Popen(
                [sys.executable, "-m", "localeks", "down", "--state", str(self.paths.state)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )


def bench_real_grace(state: Path, pods: int, repeats: int, speed1: Speed1 | None = None) -> dict[str, Any]:
    """The 110-pod drain at real grace periods, on a second local EKS whose kwok runs at speed 1
    (``speed1``, or one started for this phase; either is stopped after it if started here), from
    a process of its own: the function's AWS session there is that cluster's."""
    cluster = speed1 or Speed1(state)
    try:
        up_s = cluster.ready()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "bench.drain", str(cluster.paths.state), str(pods), str(repeats)]
        try:
            out = child_json(argv, env)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"the real-grace drain failed: {exc.stderr[-3000:]}") from exc
        out["cluster_up_s"] = round(up_s, 1)
        print(f"bench: real grace: {out}", flush=True)
        return out
    finally:
        cluster.stop()


def bench_pdb(
    cluster_env: dict[str, str], scenes: Scenes, service: Any, blocked_s: float, rounds: int
) -> dict[str, Any]:
    from bench import pdb

    results = pdb.compare(cluster_env, scenes, service, blocked_s, rounds)
    print(f"bench: PDB freed -> eviction: ours {results['ours']}, kubectl {results['kubectl']}", flush=True)
    return results


def bench_burst(cluster_env: dict[str, str], state: Path, size: dict[str, Any]) -> dict[str, Any]:
    """Per cluster size: every node's rebalance recommendation in flight at once (cordon only);
    a sample of Spot interruptions, one per worker (the per-event requests and CPU with little
    else running); on the large cluster a burst of Spot interruptions at ``workers x threads`` in
    flight (cordon, taint, drain), then the same burst on as many other nodes with the optional
    k8s/flowcontrol.yaml applied. And the harness alone: the same release of every thread with
    no handler. Each burst reports the API server's own view (bench/apiserver.py)."""
    from bench.burst import Workers, cluster_nodes, seed_pool
    from localeks import flowcontrol

    results: dict[str, Any] = {}
    workers = Workers(cluster_env, str(state), size["workers"])
    results["workers"] = workers.startup
    probe = warm_service(cluster_env).kube()  # a request as the functions, to see their flow schema
    try:
        for label in ("small", "large"):
            cordon_n, sample_n, drain_n = size[f"burst_{label}"]
            started = time.monotonic()
            with_pods = sample_n + 2 * drain_n
            pool = seed_pool(cluster_env, with_pods + cordon_n, size["burst_pods"], label, with_pods)
            sample, drained = pool[:sample_n], pool[sample_n : sample_n + drain_n]
            drained_apf, cordoned = pool[sample_n + drain_n : with_pods], pool[with_pods:]
            seed_s = round(time.monotonic() - started, 1)
            workers.warm_ec2(pool)
            per_worker = -(-cordon_n // size["workers"])  # every event in flight
            out: dict[str, Any] = {"cluster_nodes": cluster_nodes(cluster_env), "seed_s": seed_s}
            out["harness_only"] = workers.burst("noop", cordoned, per_worker)
            out["cordon"] = workers.burst("cordon", cordoned, per_worker)
            out["sample"] = workers.burst("drain", sample, 1)
            if drained:
                out["drain"] = workers.burst("drain", drained, size["threads"])
                flowcontrol.apply(cluster_env)
                try:
                    flowcontrol.wait_classified(cluster_env, lambda: probe.request("GET", "/version"), flowcontrol.OURS)
                    out["drain_flowcontrol"] = workers.burst("drain", drained_apf, size["threads"])
                finally:
                    flowcontrol.remove(cluster_env)
            results[label] = out
            brief = {
                k: {x: y for x, y in v.items() if x not in ("handler_cpu_ms", "apiserver_view")}
                if isinstance(v, dict)
                else v
                for k, v in out.items()
            }
            print(f"bench: burst {label}: {brief}", flush=True)
    finally:
        workers.close()
    return results


def unzipped_mb() -> float:
    build = REPO / ".aws-sam" / "build"
    if not build.exists():
        subprocess.run(
            [str(REPO / ".venv-sam" / "bin" / "sam"), "build"], cwd=REPO, check=True, stdout=subprocess.DEVNULL
        )
    total = sum(p.stat().st_size for p in build.rglob("*") if p.is_file() and p.name != "template.yaml")
    return round(total / 1e6, 1)


def cpu_percentiles(bursts: list[dict[str, Any]]) -> tuple[float, float]:
    """Median and p99 of the handler CPU per event over ``bursts``; the per-event lists are then
    taken out of the details (thousands of numbers)."""
    from bench.burst import percentile

    values = [v for b in bursts for v in b.pop("handler_cpu_ms")]
    return round(percentile(values, 0.5), 2), round(percentile(values, 0.99), 2)


def bench_cold_start(
    cluster_env: dict[str, str], scenes: Scenes, imports: dict[str, Any], repeats: int, functions: int | None = None
) -> dict[str, Any]:
    """``first_event_vs_naive`` (the first event handled by a built function, init included,
    against the naive import) and ``deployment_unzipped_mb``, from bench/size.py. Should it be
    missing or fail, the import-with-init ratio above and the unzipped build stand in, and
    ``error`` says why."""
    fallback = {
        "first_event_vs_naive": round(imports["handler_import_s"] / imports["naive_import_s"], 3),
        "deployment_unzipped_mb": unzipped_mb(),
    }
    try:
        from bench.size import cold_start_and_size

        return dict(cold_start_and_size(cluster_env, scenes, repeats, functions=functions))
    except Exception as exc:  # the rest of the run still counts; the error is recorded
        stderr = getattr(exc, "stderr", "") or ""
        print(f"bench: cold start from the build failed, figures from the imports phase: {exc} {stderr[-1500:]}")
        return {**fallback, "error": f"{type(exc).__name__}: {exc}"[:500] + stderr[-1000:]}
