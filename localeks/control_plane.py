"""One cluster's control plane, as the supervisor (localeks/supervisor.py) starts it: its own CA
and serving certificate, admin token, EKS token webhook (given this cluster's name, so a token
signed for another cluster is refused) with its own access-entry table, kube-apiserver,
kube-controller-manager, kube-scheduler, CSI external-attacher and kwok, and k8s/rbac.yaml.

The home cluster keeps its files where they always were (the state directory: ``pki/``,
``admin.kubeconfig``, ``access-entries.json``, ``logs/``); any other cluster has the same layout
under ``<state>/clusters/<name>/``. Every cluster stores its objects in the one etcd; the home
cluster under kube-apiserver's default prefix ``/registry``, any other under its own
``--etcd-prefix`` (local: EKS gives every cluster its own etcd).
"""

from __future__ import annotations

import json
import secrets
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localeks.accounts import ClusterSpec, moto_secret_lookup
from localeks.cluster import FUNCTION_GROUP, RBAC_MANIFEST, REPO, Paths, free_port

# (child name, argv, log file) -> the started process; the supervisor owns and watches it
Spawn = Callable[[str, list[str], Path], "subprocess.Popen[bytes]"]


def _kubeconfig(cluster: str, server: str, user: str, user_entry: dict[str, Any], ca: Path | None) -> str:
    cluster_entry: dict[str, Any] = {"server": server}
    if ca is not None:
        cluster_entry["certificate-authority"] = str(ca)
    context = "admin" if user == "localeks-admin" else "webhook"
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster, "cluster": cluster_entry}],
            "users": [{"name": user, "user": user_entry}],
            "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
            "current-context": context,
        }
    )


class ControlPlane:
    def __init__(self, paths: Paths, spec: ClusterSpec, home: bool, bin_dir: Path, speed: float, spawn: Spawn) -> None:
        self.paths = paths
        self.spec = spec
        self.home = home
        self.bin_dir = bin_dir
        self.speed = speed
        self._spawn_child = spawn
        self.api_port = free_port()
        self.api_url = f"https://127.0.0.1:{self.api_port}"
        self.admin_token = secrets.token_urlsafe(32)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.webhook: Any = None  # localeks.webhook.WebhookServer
        self.attacher: Any = None  # localeks.attacher.ExternalAttacher
        self.arn = ""
        self._apiserver_argv: list[str] = []
        self._lock = threading.Lock()
        self.stopped_on_purpose = False  # its API server, by a test (``apiserver``)

    def child_name(self, part: str) -> str:
        """The supervisor's name of this cluster's ``part``: the part alone for the home cluster
        (as before there were several), ``part-<cluster>`` for any other."""
        return part if self.home else f"{part}-{self.spec.name}"

    def _spawn(self, part: str, argv: list[str]) -> None:
        self.procs[part] = self._spawn_child(self.child_name(part), argv, self.paths.logs / f"{part}.log")

    def prepare(self, moto_url: str, function_role_arn: str) -> None:
        """Key material, tokens, the access entry, the token webhook and the kubeconfigs."""
        from localeks.pki import write_cluster_pki
        from localeks.webhook import EksTokenAuthenticator, serve

        paths = self.paths
        paths.logs.mkdir(parents=True, exist_ok=True)
        write_cluster_pki(paths.pki)
        (paths.state / "tokens.csv").write_text(f'{self.admin_token},localeks-admin,localeks-admin,"system:masters"\n')
        # the access entry (STANDARD, Kubernetes groups): the home account's function role, in
        # every cluster, whichever account the cluster is in
        entry = {"username": "serverless-nth:{{SessionName}}", "kubernetesGroups": [FUNCTION_GROUP]}
        paths.access_entries.write_text(json.dumps({function_role_arn: entry}, indent=2))
        self.webhook = serve(EksTokenAuthenticator(self.spec.name, moto_url, paths.access_entries, moto_secret_lookup))
        webhook_url = f"http://127.0.0.1:{self.webhook.server_address[1]}/authenticate"
        (paths.state / "webhook.kubeconfig").write_text(
            _kubeconfig("eks-token-webhook", webhook_url, "kube-apiserver", {}, None)
        )
        paths.kubeconfig.write_text(
            _kubeconfig(
                self.spec.name, self.api_url, "localeks-admin", {"token": self.admin_token}, paths.pki / "ca.crt"
            )
        )

    def start_apiserver(self, etcd_url: str) -> None:
        paths = self.paths
        prefix = [] if self.home else [f"--etcd-prefix=/localeks/{self.spec.name}"]
        self._apiserver_argv = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            *prefix,
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={paths.pki}",
            f"--tls-cert-file={paths.pki / 'apiserver.crt'}",
            f"--tls-private-key-file={paths.pki / 'apiserver.key'}",
            f"--client-ca-file={paths.pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            f"--token-auth-file={paths.state / 'tokens.csv'}",
            f"--authentication-token-webhook-config-file={paths.state / 'webhook.kubeconfig'}",
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
        ]
        self._spawn("kube-apiserver", self._apiserver_argv)

    def wait_ready(self, timeout: float = 120) -> None:
        context = ssl.create_default_context(cafile=str(self.paths.pki / "ca.crt"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["kube-apiserver"].poll() is not None:
                tail = (self.paths.logs / "kube-apiserver.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"kube-apiserver of {self.spec.name} exited; the end of its log:\n{tail}")
            request = urllib.request.Request(
                f"{self.api_url}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
            )
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"kube-apiserver of {self.spec.name} not ready after {timeout} s")

    def start_controllers(self) -> subprocess.Popen[bytes]:
        """kube-controller-manager, kube-scheduler, the external-attacher and kwok; returns the
        running ``kubectl apply`` of k8s/rbac.yaml (the caller waits for it)."""
        kubeconfig = self.paths.kubeconfig
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
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
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )
        from localeks.attacher import ExternalAttacher

        # local: the CSI external-attacher of one driver (attaches at once, detaches in 1 s x speed)
        self.attacher = ExternalAttacher(kubeconfig, detach_seconds=self.speed)
        self.attacher.start()
        stages = (REPO / "localeks" / "kwok" / "stages.yaml").read_text().replace("@SPEED@", repr(self.speed))
        (self.paths.state / "kwok.yaml").write_text(stages)
        self._spawn(
            "kwok",
            [
                str(self.bin_dir / "kwok"),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=true",
                f"--config={self.paths.state / 'kwok.yaml'}",
                "--server-address=",
                "--v=WARN",
            ],
        )
        return subprocess.Popen(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", "apply", "-f", str(RBAC_MANIFEST)],
            stdout=subprocess.DEVNULL,
        )

    # --- local: a test stops and starts this cluster's API server (localeks/control.py) -------
    def apiserver(self, action: str) -> None:
        """``stop`` (SIGKILL, as a crash: connections refused), ``start`` (the same flags, port and
        certificates; returns once ready), ``freeze`` (SIGSTOP: connections hang, as behind a
        black-holed network) or ``thaw`` (SIGCONT)."""
        with self._lock:
            proc = self.procs["kube-apiserver"]
            if action == "stop" and proc.poll() is None:
                self.stopped_on_purpose = True  # before it exits: the supervisor must not mind
                proc.kill()  # as a crash: SIGTERM's graceful shutdown took 15 s here
                proc.wait()
            elif action == "start" and proc.poll() is not None:
                self._spawn("kube-apiserver", self._apiserver_argv)
                self.stopped_on_purpose = False
                self.wait_ready()
            elif action in ("freeze", "thaw") and proc.poll() is None:
                proc.send_signal(signal.SIGSTOP if action == "freeze" else signal.SIGCONT)
            elif action not in ("stop", "start", "freeze", "thaw"):
                raise ValueError(f"unknown action {action!r}")

    def facts(self) -> dict[str, Any]:
        """What clusters.json says of this cluster (localeks/clusters.py reads it)."""
        return {
            "name": self.spec.name,
            "account": self.spec.account,
            "home": self.home,
            "arn": self.arn,
            "tags": self.spec.tags,
            "api_url": self.api_url,
            "kubeconfig": str(self.paths.kubeconfig),
            "ca_file": str(self.paths.pki / "ca.crt"),
            "admin_token": self.admin_token,
            "webhook_url": f"http://127.0.0.1:{self.webhook.server_address[1]}",
            "state": str(self.paths.state),
            "logs": str(self.paths.logs),
        }

    def stop_threads(self) -> None:
        if self.attacher is not None:
            self.attacher.stop()
