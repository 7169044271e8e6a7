"""The supervisor of the local EKS (``python -m localeks serve``, started detached by
``localeks.cluster.up``): one process that serves moto and the token webhooks itself and owns
etcd and each cluster's kube-apiserver, kube-controller-manager, kube-scheduler and kwok as its
children; see localeks/cluster.py for the whole and localeks/control_plane.py for one cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from localeks.accounts import ClusterSpec, create_member_role, member_accounts, register_cluster
from localeks.binaries import build_binaries
from localeks.cluster import (
    ACCOUNT_ID,
    FUNCTION_ROLE_NAME,
    REGION,
    Paths,
    free_port,
)
from localeks.control_plane import ControlPlane

# the order in which the parts of every cluster stop; etcd, which they share, last
_STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver")


class Supervisor:
    """Runs in the foreground until SIGTERM/SIGINT; owns every process of every cluster.
    ``more_clusters``: clusters besides the home one (``cluster_name``, in the home account)."""

    def __init__(
        self, paths: Paths, cluster_name: str, speed: float, more_clusters: list[ClusterSpec] | None = None
    ) -> None:
        self.paths = paths
        self.cluster_name = cluster_name
        self.speed = speed
        self.more_clusters = list(more_clusters or [])
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.planes: dict[str, ControlPlane] = {}
        self.moto: Any = None  # moto.server.ThreadedMotoServer, once started
        self.control: Any = None  # localeks.control's server, once started
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start()
            while not self.stopping:
                for name, proc in list(self.children.items()):
                    if proc.poll() is not None and not self.stopping and not self._stopped_on_purpose(name):
                        tail = self.logs[name].read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"{name} exited with {proc.returncode}; the end of its log:\n{tail}")
                time.sleep(0.5)
        finally:
            self._stop()

    def _stopped_on_purpose(self, name: str) -> bool:
        return any(p.stopped_on_purpose and p.child_name("kube-apiserver") == name for p in self.planes.values())

    def _on_signal(self, *_: Any) -> None:
        self.stopping = True

    def _spawn(self, name: str, argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
        log = open(log_file, "ab")  # noqa: SIM115 (owned by the child)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.children[name], self.logs[name] = proc, log_file
        return proc

    def _stop(self) -> None:
        self.paths.env_file.unlink(missing_ok=True)
        for plane in self.planes.values():
            plane.stop_threads()
        for part in _STOP_ORDER:  # each part of every cluster at once, then the next part
            self._end([p for plane in self.planes.values() if (p := plane.procs.get(part)) is not None])
        self._end([p for p in [self.children.get("etcd")] if p is not None])
        if self.moto is not None:
            self.moto.stop()

    @staticmethod
    def _end(procs: list[subprocess.Popen[bytes]]) -> None:
        running = [proc for proc in procs if proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGCONT)  # a frozen API server (localeks/control.py) cannot act on SIGTERM
            proc.terminate()
        deadline = time.monotonic() + 15
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _start(self) -> None:
        started = time.monotonic()
        paths = self.paths
        paths.logs.mkdir(parents=True, exist_ok=True)
        bin_dir = build_binaries()
        moto_port, etcd_port, peer_port = (free_port() for _ in range(3))
        moto_url = f"http://127.0.0.1:{moto_port}"
        self._start_moto(moto_port)

        import boto3

        iam = boto3.client("iam", endpoint_url=moto_url)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role_arn = str(
            iam.create_role(RoleName=FUNCTION_ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        )
        members = member_accounts(self.more_clusters)
        for account in members:
            create_member_role(moto_url, account)

        home = ControlPlane(paths, ClusterSpec(self.cluster_name), True, bin_dir, self.speed, self._spawn)
        self.planes[self.cluster_name] = home
        for spec in self.more_clusters:
            cluster_paths = Paths(paths.state / "clusters" / spec.name)
            self.planes[spec.name] = ControlPlane(cluster_paths, spec, False, bin_dir, self.speed, self._spawn)
        for plane in self.planes.values():
            plane.prepare(moto_url, role_arn)
            plane.arn = register_cluster(moto_url, plane.spec, plane.api_url, plane.paths.pki / "ca.crt")

        self._spawn(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=localeks",
                f"--data-dir={paths.state / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=localeks=http://127.0.0.1:{peer_port}",
                "--quota-backend-bytes=8589934592",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            paths.logs / "etcd.log",
        )
        # every API server starts at once, then each cluster's controllers once it is ready
        for plane in self.planes.values():
            plane.start_apiserver(f"http://127.0.0.1:{etcd_port}")
        rbac = []
        for plane in self.planes.values():
            plane.wait_ready()
            rbac.append(plane.start_controllers())
        for apply in rbac:
            if apply.wait() != 0:
                raise subprocess.CalledProcessError(apply.returncode, apply.args)

        env = {
            "KUBECONFIG": str(paths.kubeconfig),
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "CLUSTER_NAME": self.cluster_name,
            "FUNCTION_ROLE_ARN": role_arn,
            "LOCALEKS_API_URL": home.api_url,
            "LOCALEKS_BIN": str(bin_dir),
            "LOCALEKS_SPEED": repr(self.speed),
        }
        if self.more_clusters:
            from localeks.accounts import MEMBER_ROLE_NAME
            from localeks.control import serve_control

            self.control = serve_control(self.planes)
            env.update(
                LOCALEKS_CLUSTERS_FILE=str(paths.clusters_file),
                CLUSTERS=",".join(self.planes),
                MEMBER_ACCOUNTS=",".join(members),
                MEMBER_ROLE_NAME=MEMBER_ROLE_NAME,
            )
        self._write_clusters_file(moto_url, role_arn, members)
        tmp = paths.env_file.with_suffix(".tmp")
        tmp.write_text("".join(f"export {k}='{v}'\n" for k, v in env.items()))
        tmp.rename(paths.env_file)  # written last: its presence means "ready"
        print(f"localeks: up in {time.monotonic() - started:.1f} s", flush=True)

    def _start_moto(self, moto_port: int) -> None:
        # AWS on moto, in this process so the webhooks and DescribeCluster can reach its backends.
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
        from moto.server import ThreadedMotoServer

        from localeks import (
            autoscaling,
            capacity_reservations,
            describe_cache,
            durable_lambda,
            ec2_states,
            instance_status,
        )

        # stopping / shutting-down, as EC2 reports them, for long enough that a test can act meanwhile
        ec2_states.install(seconds=float(os.environ.get("LOCALEKS_EC2_TRANSITION_SECONDS", "8")))
        # terminate lifecycle hooks: Terminating:Wait, CompleteLifecycleAction, heartbeats, expiry
        autoscaling.install()
        # durable executions: DurableConfig kept, Invoke of a durable function recorded, listed
        durable_lambda.install()
        # instances launched into a Capacity Reservation, and the capacity-reservation-id filter
        capacity_reservations.install()
        # DescribeInstanceStatus with scheduled events, failed checks, its filters and paging
        instance_status.install()
        # DescribeInstances by id answered from moto's own answer while nothing changed (a wave of
        # 1,000 events: the local EC2 is one process)
        describe_cache.install()

        # a wave of events: werkzeug's listen queue of 128 overflowed (448 of 1,000 cordons failed
        # at DescribeInstances in make bench, connect timeouts)
        import werkzeug.serving

        from localeks.webhook import LISTEN_BACKLOG

        werkzeug.serving.BaseWSGIServer.request_queue_size = LISTEN_BACKLOG
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        self.moto.start()

    def _write_clusters_file(self, moto_url: str, role_arn: str, members: list[str]) -> None:
        """clusters.json: every cluster's facts, for tests (localeks/clusters.py reads it)."""
        facts = {
            "home_account": ACCOUNT_ID,
            "region": REGION,
            "moto_url": moto_url,
            "function_role_arn": role_arn,
            "member_accounts": members,
            "control_url": f"http://127.0.0.1:{self.control.server_address[1]}" if self.control else None,
            "clusters": [plane.facts() for plane in self.planes.values()],
        }
        self.paths.clusters_file.write_text(json.dumps(facts, indent=2))
