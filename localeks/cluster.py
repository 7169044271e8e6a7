"""Starts and stops the local EKS: one supervisor process owns every part.

The supervisor (``python -m localeks serve``) runs moto's server and the token webhook in its own
process (the webhook needs moto's backend for the secret keys it issued, and DescribeCluster's
record is rewritten in place to point at the local API server), and starts etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok as children in its process group. ``up`` starts it detached and
waits for ``cluster.env``; ``down`` stops the group and removes the state.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from localeks.progress import Progress, duration

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE = REPO / ".local"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
FUNCTION_ROLE_NAME = "serverless-nth-function"
# The Kubernetes group that k8s/rbac.yaml binds; the access entry of the functions' role names it.
FUNCTION_GROUP = "serverless-nth"
RBAC_MANIFEST = REPO / "k8s" / "rbac.yaml"


@dataclass(frozen=True)
class Paths:
    state: Path

    @property
    def env_file(self) -> Path:
        return self.state / "cluster.env"

    @property
    def pid_file(self) -> Path:
        return self.state / "supervisor.pid"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def access_entries(self) -> Path:
        return self.state / "access-entries.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The README's cold build, measured on 2 cores with the Go modules already downloaded: 370 s for
# etcd, kwok, kube-apiserver, kube-controller-manager and kubectl, then 23 s for kube-scheduler.
COLD_BUILD_SECONDS = 370 + 23
COLD_BUILD_SOURCE = "README: 370 s + 23 s on 2 cores, Go modules downloaded, empty Go build cache"
BUILD_SCRIPT = REPO / "localeks" / "build.sh"


def build_binaries(stream: TextIO | None = None, every: float = 30.0, script: Path = BUILD_SCRIPT) -> Path:
    """Runs build.sh, which prints the bin directory; returns it. Silent when the binaries are
    cached. When it builds, says which binary, how long each took and how long the whole is
    likely to take (``BuildProgress``), on ``stream`` (stderr by default)."""
    watch = BuildProgress(Progress("localeks", stream, every), wanted_binaries(script))
    proc = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stderr is not None
    with watch.ticking():
        for line in proc.stderr:  # build.sh's own lines and go's (errors, "go: downloading")
            watch.line(line.rstrip("\n"))
    out = proc.stdout.read()
    code = proc.wait()
    watch.finish(code)
    if code:
        raise subprocess.CalledProcessError(code, proc.args, out)
    return Path(out.strip().splitlines()[-1])


def wanted_binaries(script: Path = BUILD_SCRIPT) -> list[str]:
    """The binaries build.sh builds (its ``want=(...)`` list)."""
    match = re.search(r"^want=\(([^)]*)\)", script.read_text(), re.MULTILINE)
    return match.group(1).split() if match else []


class BuildProgress:
    """Turns build.sh's stderr into progress. ``go build`` prints nothing while it compiles (only
    errors, and "go: downloading" lines while it fills the module cache), so the progress comes
    from build.sh's "localeks: building <binary>" lines and the clock: each binary when it starts
    and its time when the next starts, a line every ``every`` seconds, all against the README's
    cold build time. Nothing at all when build.sh builds nothing."""

    def __init__(self, progress: Progress, wanted: list[str]) -> None:
        self.progress = progress
        self.wanted = wanted
        self.started = time.monotonic()
        self.current: str | None = None
        self.current_since = 0.0
        self.count = 0
        self.downloads = 0
        self.built: dict[str, float] = {}

    def _overall(self, now: float) -> str:
        elapsed = now - self.started
        left = COLD_BUILD_SECONDS - elapsed
        if left > 0:
            return f"all: {duration(elapsed)}, about {duration(left)} left by the 2-core estimate"
        return f"all: {duration(elapsed)}, past the 2-core estimate of {duration(COLD_BUILD_SECONDS)}"

    def _close_current(self, now: float) -> None:
        if self.current is not None:
            self.built[self.current] = now - self.current_since
            self.progress.say(f"  {self.current} built in {duration(self.built[self.current])}")
            self.current = None

    def line(self, text: str) -> None:
        now = time.monotonic()
        if text.startswith("localeks: building "):
            if self.count == 0:
                self.progress.say(
                    f"building the local control plane ({', '.join(self.wanted)}) into the build cache, "
                    f"once: about {duration(COLD_BUILD_SECONDS)} on 2 cores ({COLD_BUILD_SOURCE})"
                )
            self._close_current(now)
            self.count += 1
            self.current, self.current_since = text.split()[2], now
            total = f"/{len(self.wanted)}" if len(self.wanted) >= self.count else ""
            self.progress.say(f"[{self.count}{total}] building {self.current} ({self._overall(now)})")
        elif text.startswith("go: downloading "):
            if self.downloads == 0:
                self.progress.say(
                    "  downloading Go modules first (1.4 GB into the Go module cache; not in the estimate)"
                )
            self.downloads += 1
        elif text.startswith("localeks: built in "):
            self._close_current(now)
            self.progress.say(text.removeprefix("localeks: "))
        else:
            self.progress.say(text.removeprefix("localeks: "))  # compiler errors, anything unforeseen

    def status(self, _elapsed: float) -> str:
        now = time.monotonic()
        if self.current is None:
            return f"  still working ({self._overall(now)})"
        downloaded = f", {self.downloads} Go modules downloaded" if self.downloads else ""
        return (
            f"  still building {self.current}: {duration(now - self.current_since)}{downloaded} ({self._overall(now)})"
        )

    def ticking(self) -> contextlib.AbstractContextManager[None]:
        """Ticks only once something is being built: a cached run prints nothing."""
        return self.progress.ticking(lambda elapsed: self.status(elapsed) if self.count else "")

    def finish(self, code: int) -> None:
        self._close_current(time.monotonic())
        if code and self.count:
            self.progress.say(f"build failed (exit {code}) after {duration(time.monotonic() - self.started)}")


def moto_client(cluster_env: dict[str, str], service: str) -> Any:
    """A boto3 client for moto with its dummy admin credentials (for setting scenes up)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=cluster_env["AWS_ENDPOINT_URL"],
        region_name=cluster_env["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def read_env(paths: Paths) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in paths.env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value.strip("'")
    return env


def supervisor_alive(paths: Paths) -> bool:
    try:
        pid = int(paths.pid_file.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return True


class Supervisor:
    """Runs in the foreground until SIGTERM/SIGINT; owns every process of the cluster."""

    def __init__(self, paths: Paths, cluster_name: str, speed: float) -> None:
        self.paths = paths
        self.cluster_name = cluster_name
        self.speed = speed
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.moto: Any = None  # moto.server.ThreadedMotoServer, once started
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start()
            while not self.stopping:
                for name, proc in self.children.items():
                    if proc.poll() is not None and not self.stopping:
                        tail = (self.paths.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"{name} exited with {proc.returncode}; the end of its log:\n{tail}")
                time.sleep(0.5)
        finally:
            self._stop()

    def _on_signal(self, *_: Any) -> None:
        self.stopping = True

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.paths.logs / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
        self.children[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _stop(self) -> None:
        self.paths.env_file.unlink(missing_ok=True)
        for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.children.get(name)
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.moto is not None:
            self.moto.stop()

    def _start(self) -> None:
        from localeks.pki import write_cluster_pki

        started = time.monotonic()
        paths = self.paths
        paths.logs.mkdir(parents=True, exist_ok=True)
        bin_dir = build_binaries()
        write_cluster_pki(paths.pki)
        admin_token = secrets.token_urlsafe(32)
        (paths.state / "tokens.csv").write_text(f'{admin_token},localeks-admin,localeks-admin,"system:masters"\n')

        moto_port, etcd_port, peer_port, api_port, webhook_port = (free_port() for _ in range(5))
        moto_url = f"http://127.0.0.1:{moto_port}"
        api_url = f"https://127.0.0.1:{api_port}"

        # AWS on moto, in this process so the webhook and DescribeCluster can reach its backends.
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
        from moto.server import ThreadedMotoServer

        from localeks import autoscaling, capacity_reservations, durable_lambda, ec2_states

        # stopping / shutting-down, as EC2 reports them, for long enough that a test can act meanwhile
        ec2_states.install(seconds=float(os.environ.get("LOCALEKS_EC2_TRANSITION_SECONDS", "8")))
        # instances launched into a Capacity Reservation, and the capacity-reservation-id filter
        capacity_reservations.install()
        # terminate lifecycle hooks: Terminating:Wait, CompleteLifecycleAction, heartbeats, expiry
        autoscaling.install()
        # durable executions: DurableConfig kept, Invoke of a durable function recorded, listed
        durable_lambda.install()

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        self.moto.start()
        role_arn = self._seed_aws(moto_url, api_url)

        from localeks.webhook import EksTokenAuthenticator, serve

        paths.access_entries.write_text(
            json.dumps(
                {role_arn: {"username": "serverless-nth:{{SessionName}}", "kubernetesGroups": [FUNCTION_GROUP]}},
                indent=2,
            )
        )
        serve(
            EksTokenAuthenticator(self.cluster_name, moto_url, paths.access_entries, _moto_secret_lookup),
            port=webhook_port,
        )
        webhook_kubeconfig = paths.state / "webhook.kubeconfig"
        webhook_kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "eks-token-webhook",
                            "cluster": {"server": f"http://127.0.0.1:{webhook_port}/authenticate"},
                        }
                    ],
                    "users": [{"name": "kube-apiserver", "user": {}}],
                    "contexts": [
                        {"name": "webhook", "context": {"cluster": "eks-token-webhook", "user": "kube-apiserver"}}
                    ],
                    "current-context": "webhook",
                }
            )
        )
        paths.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": self.cluster_name,
                            "cluster": {"server": api_url, "certificate-authority": str(paths.pki / "ca.crt")},
                        }
                    ],
                    "users": [{"name": "localeks-admin", "user": {"token": admin_token}}],
                    "contexts": [
                        {"name": "admin", "context": {"cluster": self.cluster_name, "user": "localeks-admin"}}
                    ],
                    "current-context": "admin",
                }
            )
        )

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
        )
        self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={paths.pki}",
                f"--tls-cert-file={paths.pki / 'apiserver.crt'}",
                f"--tls-private-key-file={paths.pki / 'apiserver.key'}",
                f"--client-ca-file={paths.pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                f"--token-auth-file={paths.state / 'tokens.csv'}",
                f"--authentication-token-webhook-config-file={webhook_kubeconfig}",
                "--authentication-token-webhook-version=v1",
                "--authentication-token-webhook-cache-ttl=5s",
                # TaintNodesByCondition would leave a not-ready taint that only the node-lifecycle
                # controller (not run: kwok sends no heartbeats) removes
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--allow-privileged=true",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={paths.pki / 'sa.pub'}",
                f"--service-account-signing-key-file={paths.pki / 'sa.key'}",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
        )
        self._wait_ready(api_url, admin_token)
        self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={paths.kubeconfig}",
                # disruption: real PDB status; replicaset: evicted pods get replacements, so a
                # PDB frees up again as in a real cluster; daemonset: DaemonSet pods with their
                # usual tolerations; taint-eviction-controller and pod-garbage-collector: what
                # the out-of-service taint sets off (pods that do not tolerate it are deleted)
                "--controllers=disruption,replicaset,daemonset,taint-eviction-controller,pod-garbage-collector-controller,namespace-controller",
                "--leader-elect=false",
                "--secure-port=0",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                f"--kubeconfig={paths.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )
        stages = (REPO / "localeks" / "kwok" / "stages.yaml").read_text().replace("@SPEED@", repr(self.speed))
        (paths.state / "kwok.yaml").write_text(stages)
        self._spawn(
            "kwok",
            [
                str(bin_dir / "kwok"),
                f"--kubeconfig={paths.kubeconfig}",
                "--manage-all-nodes=true",
                f"--config={paths.state / 'kwok.yaml'}",
                "--server-address=",
                "--v=WARN",
            ],
        )
        subprocess.run(
            [str(bin_dir / "kubectl"), f"--kubeconfig={paths.kubeconfig}", "apply", "-f", str(RBAC_MANIFEST)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        env = {
            "KUBECONFIG": str(paths.kubeconfig),
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "CLUSTER_NAME": self.cluster_name,
            "FUNCTION_ROLE_ARN": role_arn,
            "LOCALEKS_API_URL": api_url,
            "LOCALEKS_BIN": str(bin_dir),
            "LOCALEKS_SPEED": repr(self.speed),
        }
        tmp = paths.env_file.with_suffix(".tmp")
        tmp.write_text("".join(f"export {k}='{v}'\n" for k, v in env.items()))
        tmp.rename(paths.env_file)  # written last: its presence means "ready"
        print(f"localeks: up in {time.monotonic() - started:.1f} s", flush=True)

    def _seed_aws(self, moto_url: str, api_url: str) -> str:
        import boto3
        from moto.eks.models import eks_backends

        iam = boto3.client("iam", endpoint_url=moto_url)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role_arn = iam.create_role(RoleName=FUNCTION_ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]
        eks = boto3.client("eks", endpoint_url=moto_url)
        eks.create_cluster(
            name=self.cluster_name,
            version="1.34",
            roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/eks-cluster",
            resourcesVpcConfig={"subnetIds": []},
        )
        # moto invents an unreachable endpoint and a non-PEM CA; point the record at this cluster.
        record = eks_backends[ACCOUNT_ID][REGION].clusters[self.cluster_name]
        record.endpoint = api_url
        record.certificateAuthority = {"data": base64.b64encode((self.paths.pki / "ca.crt").read_bytes()).decode()}
        return str(role_arn)

    def _wait_ready(self, api_url: str, token: str, timeout: float = 120) -> None:
        context = ssl.create_default_context(cafile=str(self.paths.pki / "ca.crt"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.children["kube-apiserver"].poll() is not None:
                tail = (self.paths.logs / "kube-apiserver.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"kube-apiserver exited; the end of its log:\n{tail}")
            request = urllib.request.Request(f"{api_url}/readyz", headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"kube-apiserver not ready after {timeout} s")


def _moto_secret_lookup(access_key_id: str) -> tuple[str, str | None] | None:
    from moto.sts.models import sts_backends

    role = sts_backends[ACCOUNT_ID]["global"].get_assumed_role_from_access_key(access_key_id)
    if role is None:
        return None
    return str(role.secret_access_key), str(role.session_token)


def up(paths: Paths, cluster_name: str, speed: float, timeout: float = 1800) -> dict[str, str]:
    """Starts the supervisor detached, unless it already runs; returns the cluster.env values."""
    if supervisor_alive(paths) and paths.env_file.exists():
        return read_env(paths)
    if paths.state.exists():
        down(paths)
    build_binaries()  # here, where a person sees its progress; the supervisor then finds them built
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = open(paths.logs / "supervisor.log", "ab")  # noqa: SIM115 (owned by the child)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localeks",
            "serve",
            "--state",
            str(paths.state),
            "--name",
            cluster_name,
            "--speed",
            str(speed),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    paths.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while not paths.env_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (paths.logs / "supervisor.log").read_text()[-3000:]
            down(paths)
            raise RuntimeError(f"local EKS did not start:\n{tail}")
        time.sleep(0.3)
    return read_env(paths)


def down(paths: Paths) -> None:
    """Stops the supervisor's whole process group and removes the state directory."""
    try:
        pid = int(paths.pid_file.read_text())
    except (FileNotFoundError, ValueError):
        pid = 0
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.2)
        except ProcessLookupError:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # anything the supervisor left behind
    shutil.rmtree(paths.state, ignore_errors=True)
