"""The supervisor of the local EKS (``python -m localeks serve``, started detached by
``localeks.cluster.up``): one process that serves moto and the token webhook itself and owns
etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as its children; see
localeks/cluster.py for the whole."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import ssl
import subprocess
import time
import urllib.request
from typing import Any

from localeks.binaries import build_binaries
from localeks.cluster import (
    ACCOUNT_ID,
    FUNCTION_GROUP,
    FUNCTION_ROLE_NAME,
    RBAC_MANIFEST,
    REGION,
    REPO,
    Paths,
    free_port,
)


class Supervisor:
    """Runs in the foreground until SIGTERM/SIGINT; owns every process of the cluster."""

    def __init__(self, paths: Paths, cluster_name: str, speed: float) -> None:
        self.paths = paths
        self.cluster_name = cluster_name
        self.speed = speed
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.moto: Any = None  # moto.server.ThreadedMotoServer, once started
        self.attacher: Any = None  # localeks.attacher.ExternalAttacher, once started
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
        if self.attacher is not None:
            self.attacher.stop()
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
                # the out-of-service taint sets off (pods that do not tolerate it are deleted);
                # the attach/detach controller and the PV binder: VolumeAttachments of CSI volumes
                # (the driver's external-attacher is localeks/attacher.py)
                "--controllers=disruption,replicaset,daemonset,taint-eviction-controller,pod-garbage-collector-controller,"
                "namespace-controller,persistentvolume-attach-detach-controller,persistentvolume-binder-controller",
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
        from localeks.attacher import ExternalAttacher

        # local: the CSI external-attacher of one driver (attaches at once, detaches in 1 s x speed)
        self.attacher = ExternalAttacher(paths.kubeconfig, detach_seconds=self.speed)
        self.attacher.start()
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
