"""Proof that the local EKS is real: the built release, EKS token authentication, the shipped
ClusterRole, PodDisruptionBudgets computed by the disruption controller, DescribeCluster with TLS."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

from localeks.cluster import Paths, down, up
from localeks.pki import write_cluster_pki
from localeks.scenes import Scenes
from localeks.webhook import token_digest
from serverless_nth.aws.eks import EksAccess


def eks_access(cluster_env: dict[str, str], session: boto3.Session, cluster_name: str | None = None) -> EksAccess:
    endpoint = cluster_env["AWS_ENDPOINT_URL"]
    return EksAccess(
        cluster_name or cluster_env["CLUSTER_NAME"],
        session.client("eks", endpoint_url=endpoint),
        session.client("sts", endpoint_url=endpoint),
    )


def api_get(cluster_env: dict[str, str], path: str, token: str | None) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(Path(cluster_env["KUBECONFIG"]).parent / "pki" / "ca.crt"))
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(cluster_env["LOCALEKS_API_URL"] + path, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def admin_token(cluster_env: dict[str, str]) -> str:
    kubeconfig = json.loads(Path(cluster_env["KUBECONFIG"]).read_text())
    return str(kubeconfig["users"][0]["user"]["token"])


def test_version_reports_the_built_release(cluster_env: dict[str, str]) -> None:
    status, body = api_get(cluster_env, "/version", admin_token(cluster_env))
    assert status == 200
    assert body["gitVersion"] == "v1.34.4"
    assert (body["major"], body["minor"]) == ("1", "34")


def test_describe_cluster_gives_an_endpoint_and_ca_that_verify(
    cluster_env: dict[str, str], function_session: boto3.Session
) -> None:
    cluster = function_session.client("eks", endpoint_url=cluster_env["AWS_ENDPOINT_URL"]).describe_cluster(
        name=cluster_env["CLUSTER_NAME"]
    )["cluster"]
    assert cluster["endpoint"] == cluster_env["LOCALEKS_API_URL"]
    ca_pem = base64.b64decode(cluster["certificateAuthority"]["data"])
    token = eks_access(cluster_env, function_session).token()
    with tempfile.NamedTemporaryFile(suffix=".crt") as ca_file:
        ca_file.write(ca_pem)
        ca_file.flush()
        config = client.Configuration(host=cluster["endpoint"], api_key={"authorization": f"Bearer {token}"})
        config.ssl_ca_cert = ca_file.name
        config.verify_ssl = True
        api = client.CoreV1Api(client.ApiClient(config))
        assert api.list_node(limit=1).kind == "NodeList"
    # TLS is really verified: a CA that did not sign the server's certificate fails.
    with tempfile.TemporaryDirectory() as other:
        write_cluster_pki(Path(other))
        config = client.Configuration(host=cluster["endpoint"], api_key={"authorization": f"Bearer {token}"})
        config.ssl_ca_cert = str(Path(other) / "ca.crt")
        with pytest.raises(MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
            client.CoreV1Api(client.ApiClient(config)).list_node(limit=1, _request_timeout=5)


def test_a_valid_token_of_the_function_role_is_accepted(
    cluster_env: dict[str, str], function_session: boto3.Session
) -> None:
    token = eks_access(cluster_env, function_session).token()
    status, _body = api_get(cluster_env, "/apis/authentication.k8s.io/v1/selfsubjectreviews", None)
    assert status == 401
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    reply = _post(cluster_env, "/apis/authentication.k8s.io/v1/selfsubjectreviews", request, token)
    user = reply["status"]["userInfo"]
    assert user["username"].startswith("serverless-nth:")
    assert "serverless-nth" in user["groups"]
    assert user["extra"]["arn"][0].startswith("arn:aws:sts::123456789012:assumed-role/serverless-nth-function/")


def _post(cluster_env: dict[str, str], path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(Path(cluster_env["KUBECONFIG"]).parent / "pki" / "ca.crt"))
    request = urllib.request.Request(
        cluster_env["LOCALEKS_API_URL"] + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return dict(json.loads(response.read()))


def clock_minutes_ago(minutes: int) -> Any:
    """A stand-in for botocore's clock, to sign a token as if made ``minutes`` ago."""
    then = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=minutes)
    return lambda: then


def test_bad_tokens_are_rejected(
    cluster_env: dict[str, str], function_session: boto3.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = eks_access(cluster_env, function_session).token()
    other_cluster = eks_access(cluster_env, function_session, cluster_name="someone-elses-cluster").token()
    # An IAM identity that STS on moto never issued (no access key of an assumed role).
    stranger = eks_access(
        cluster_env, boto3.Session(aws_access_key_id="AKIASTRANGER", aws_secret_access_key="x", region_name="us-east-1")
    ).token()
    monkeypatch.setattr(botocore.auth, "get_current_datetime", clock_minutes_ago(16))
    expired = eks_access(cluster_env, function_session).token()
    monkeypatch.undo()
    body = good[len("k8s-aws-v1.") :]
    cases = {
        "no credentials": None,
        "not a token": "hello",
        "missing prefix": body,
        "padded base64": good + "==",
        "tampered signature": good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB"),
        "expired": expired,
        "another cluster": other_cluster,
        "unknown access key": stranger,
    }
    for name, token in cases.items():
        status, _ = api_get(cluster_env, "/api/v1/nodes", token)
        assert status == 401, f"{name}: expected 401, got {status}"
    assert api_get(cluster_env, "/api/v1/nodes", good)[0] == 200
    # A 401 is also what a crashed webhook gets: the webhook must have judged each token itself.
    verdicts = webhook_verdicts(cluster_env)
    judged = {name: verdicts.get(token_digest(token)) for name, token in cases.items() if token is not None}
    assert judged == {name: {"rejected"} for name in judged}, judged
    assert verdicts.get(token_digest(good)) == {"authenticated"}


def webhook_verdicts(cluster_env: dict[str, str]) -> dict[str, set[str]]:
    """Token digest -> the outcomes the local token webhook recorded for it (its GET /verdicts)."""
    webhook = json.loads((Path(cluster_env["KUBECONFIG"]).parent / "webhook.kubeconfig").read_text())
    url = webhook["clusters"][0]["cluster"]["server"].rsplit("/", 1)[0] + "/verdicts"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            verdicts = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(
            f"the local EKS's token webhook has no GET /verdicts ({exc.code}): it was started before "
            "localeks/webhook.py recorded them; restart the local EKS"
        ) from exc
    found: dict[str, set[str]] = {}
    for verdict in verdicts:
        found.setdefault(verdict["token"], set()).add(verdict["outcome"])
    return found


# verb, resource, subresource, API group, expected answer for the shipped ClusterRole
PERMISSIONS = [
    ("get", "nodes", "", "", True),
    ("list", "nodes", "", "", True),
    ("patch", "nodes", "", "", True),
    ("list", "pods", "", "", True),
    ("create", "pods", "eviction", "", True),
    ("delete", "pods", "", "", True),
    ("create", "events", "", "events.k8s.io", True),
    ("get", "daemonsets", "", "apps", True),
    ("list", "poddisruptionbudgets", "", "policy", True),
    ("watch", "poddisruptionbudgets", "", "policy", True),
    ("list", "volumeattachments", "", "storage.k8s.io", True),
    ("get", "volumeattachments", "", "storage.k8s.io", False),
    ("watch", "volumeattachments", "", "storage.k8s.io", False),
    ("delete", "volumeattachments", "", "storage.k8s.io", False),
    ("patch", "volumeattachments", "", "storage.k8s.io", False),
    ("get", "poddisruptionbudgets", "", "policy", False),
    ("list", "daemonsets", "", "apps", False),
    ("watch", "nodes", "", "", False),
    ("watch", "pods", "", "", False),
    ("update", "pods", "", "", False),
    ("patch", "events", "", "events.k8s.io", False),
    ("create", "events", "", "", False),
    ("delete", "nodes", "", "", False),
    ("update", "nodes", "", "", False),
    ("create", "nodes", "", "", False),
    ("get", "pods", "", "", False),
    ("create", "pods", "", "", False),
    ("patch", "pods", "", "", False),
    ("get", "secrets", "", "", False),
    ("list", "secrets", "", "", False),
    ("get", "configmaps", "", "", False),
    ("create", "pods", "exec", "", False),
    ("patch", "deployments", "", "apps", False),
    ("delete", "poddisruptionbudgets", "", "policy", False),
    ("create", "clusterrolebindings", "", "rbac.authorization.k8s.io", False),
    ("impersonate", "users", "", "", False),
]


def test_function_role_has_exactly_the_shipped_cluster_role(
    cluster_env: dict[str, str], function_session: boto3.Session
) -> None:
    token = eks_access(cluster_env, function_session).token()
    wrong = []
    for verb, resource, sub, group, expected in PERMISSIONS:
        review = _post(
            cluster_env,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "verb": verb,
                        "resource": resource,
                        "subresource": sub,
                        "group": group,
                        "namespace": "default",
                    }
                },
            },
            token,
        )
        if review["status"]["allowed"] is not expected:
            wrong.append((verb, resource, sub, group, review["status"]["allowed"]))
    assert wrong == []


RBAC_MANIFEST = Path(__file__).resolve().parents[2] / "k8s" / "rbac.yaml"
Rule = tuple[str, str, str]  # API group, resource[/subresource], verb


def expand(rules: list[dict[str, Any]]) -> set[Rule]:
    """Resource rules (a ClusterRole's, or a SelfSubjectRulesReview's) as one tuple per verb."""
    found = set()
    for rule in rules:
        assert not rule.get("resourceNames"), rule  # none is shipped; one would need its own column
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                found |= {(group, resource, verb) for verb in rule.get("verbs") or []}
    return found


def shipped_cluster_role() -> dict[str, Any]:
    roles = [d for d in yaml.safe_load_all(RBAC_MANIFEST.read_text()) if d and d["kind"] == "ClusterRole"]
    assert len(roles) == 1
    return dict(roles[0])


def test_function_role_is_granted_exactly_the_rules_of_the_shipped_cluster_role(
    cluster_env: dict[str, str], function_session: boto3.Session, scenes: Scenes
) -> None:
    """The API server's own list of what the function's identity may do (SelfSubjectRulesReview,
    asked with its token) is the shipped ClusterRole's rules plus what the cluster grants every
    authenticated user, nothing more: a verb or a binding added in the cluster shows here. And the
    shipped rules are exactly the allowed rows of PERMISSIONS, the least the code needs: a verb
    added to k8s/rbac.yaml (watch, update, ...) shows here even once the cluster has applied it."""
    token = eks_access(cluster_env, function_session).token()
    review = _post(
        cluster_env,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}},
        token,
    )["status"]
    assert review["incomplete"] is False, review.get("evaluationError")
    # what every authenticated user gets (system:basic-user, system:discovery, ...), read from the
    # cluster's own bindings, not listed here
    rbac = client.RbacAuthorizationV1Api(scenes.api)
    everyone_rules: list[dict[str, Any]] = [
        rule
        for b in rbac.list_cluster_role_binding().items
        if b.role_ref.kind == "ClusterRole"
        and any(s.kind == "Group" and s.name == "system:authenticated" for s in b.subjects or [])
        for rule in scenes.api.sanitize_for_serialization(rbac.read_cluster_role(b.role_ref.name)).get("rules", [])
    ]
    assert everyone_rules
    everyone = expand([r for r in everyone_rules if r.get("resources")])
    everyone_urls = {(url, v) for r in everyone_rules for url in r.get("nonResourceURLs") or [] for v in r["verbs"]}
    shipped = expand(shipped_cluster_role()["rules"])
    granted = expand(review["resourceRules"])
    assert granted - everyone - shipped == set(), "granted beyond the shipped ClusterRole"
    assert shipped - granted == set(), "shipped but not granted"
    assert {(url, v) for r in review["nonResourceRules"] for url in r["nonResourceURLs"] for v in r["verbs"]} == (
        everyone_urls
    )
    least = {(group, f"{res}/{sub}" if sub else res, verb) for verb, res, sub, group, allowed in PERMISSIONS if allowed}
    assert shipped == least, f"k8s/rbac.yaml adds {shipped - least}, lacks {least - shipped}"


def test_pdb_refuses_eviction_with_429_and_allowed_eviction_removes_the_pod(
    cluster_env: dict[str, str], scenes: Scenes
) -> None:
    node = scenes.worker_node(spot=False)
    ns = scenes.namespace("pdb")
    pods = scenes.deployment(ns, "db", node.node_name, replicas=2, grace=20, pdb_max_unavailable=None)
    scenes.policy.create_namespaced_pod_disruption_budget(
        ns,
        {
            "metadata": {"name": "db"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}},
        },
    )
    scenes.wait_running(ns, pods)
    scenes.wait_pdbs(ns)
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pods[0], "namespace": ns}}
    with pytest.raises(ApiException) as refused:
        scenes.core.create_namespaced_pod_eviction(pods[0], ns, eviction)
    assert refused.value.status == 429
    assert "disruption budget" in refused.value.body

    scenes.policy.patch_namespaced_pod_disruption_budget("db", ns, {"spec": {"minAvailable": 1}})
    scenes.wait_pdbs(ns)
    deadline = time.monotonic() + 10
    while True:  # the disruption controller may still be catching up with the new spec
        try:
            scenes.core.create_namespaced_pod_eviction(pods[0], ns, eviction)
            break
        except ApiException as exc:
            assert exc.status == 429
            assert time.monotonic() < deadline
            time.sleep(0.2)
    evicted_at = time.monotonic()
    pod = scenes.core.read_namespaced_pod(pods[0], ns)
    assert pod.metadata.deletion_timestamp is not None  # terminating, for its grace period
    while True:
        try:
            scenes.core.read_namespaced_pod(pods[0], ns)
        except ApiException as exc:
            assert exc.status == 404
            break
        assert time.monotonic() - evicted_at < 20, "pod still there after 20 s"
        time.sleep(0.1)
    gone_after = time.monotonic() - evicted_at
    speed = float(cluster_env["LOCALEKS_SPEED"])
    assert gone_after >= 20 * speed * 0.8, f"gone after {gone_after:.1f} s: kwok did not wait for the grace period"


def test_cluster_down_leaves_no_process_and_no_state() -> None:
    state = Path(tempfile.mkdtemp(prefix="localeks-down-")) / "state"
    paths = Paths(state)
    env = up(paths, "down-test", 0.1)
    assert env["CLUSTER_NAME"] == "down-test"
    pid = int(paths.pid_file.read_text())
    children = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    assert len(children) >= 6  # supervisor, etcd, apiserver, controller-manager, scheduler, kwok
    down(paths)
    assert not state.exists()
    left = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    assert left == []
