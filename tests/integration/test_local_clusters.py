"""The local EKS with several clusters in two accounts (local only): three API servers with their
own CAs and controllers, each in its account's EKS, the member account's role, tokens bound to
their cluster, and one API server down while another serves."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client, config

from localeks.accounts import FUNCTION_ROLE_ARN, MEMBER_ACCOUNT_ID, MEMBER_ROLE_NAME, ClusterSpec, parse_clusters
from localeks.cluster import ACCOUNT_ID
from localeks.clusters import (
    ClusterHandle,
    apiserver_down,
    eks_token,
    env_for,
    scenes_for,
    tag_cluster,
    worker_node_in,
)
from tests.integration.multi import BETA, GAMMA, HOME, MultiEks, event_in
from tests.integration.support import node_state, run

pytestmark = pytest.mark.xdist_group("local-clusters")


def api_get(handle: ClusterHandle, path: str, token: str, ca_file: str | None = None, timeout: float = 10) -> int:
    context = ssl.create_default_context(cafile=ca_file or handle.ca_file)
    request = urllib.request.Request(handle.api_url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def core_api(handle: ClusterHandle) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(handle.kubeconfig))


def last_verdict(handle: ClusterHandle) -> dict[str, Any]:
    with urllib.request.urlopen(handle.webhook_url + "/verdicts", timeout=10) as response:
        verdicts: list[dict[str, Any]] = json.loads(response.read())
    return verdicts[-1]


def test_the_more_clusters_spec() -> None:
    specs = parse_clusters("beta, gamma@210987654321:env=prod:team=web")
    assert specs == [
        ClusterSpec("beta", ACCOUNT_ID),
        ClusterSpec("gamma", MEMBER_ACCOUNT_ID, {"env": "prod", "team": "web"}),
    ]
    assert parse_clusters(",".join(s.as_arg() for s in specs)) == specs
    for wrong, why in (
        ("-x", "not an EKS cluster name"),
        ("b@12345", "not a 12-digit account"),
        ("b:env", "key=value"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_clusters(wrong)


def test_three_clusters_each_with_its_own_api_server_ca_and_controllers(multi_eks: MultiEks) -> None:
    handles = multi_eks.clusters.handles
    assert sorted(handles) == [HOME, BETA, GAMMA]
    assert multi_eks.env["CLUSTER_NAME"] == HOME
    assert multi_eks.env["KUBECONFIG"] == handles[HOME].kubeconfig
    assert len({h.api_url for h in handles.values()}) == 3
    assert len({h.ca_pem for h in handles.values()}) == 3
    for handle in handles.values():
        assert api_get(handle, "/version", handle.admin_token) == 200
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # alpha's CA does not vouch for beta
        api_get(handles[BETA], "/version", handles[BETA].admin_token, ca_file=handles[HOME].ca_file)
    # their own objects: a namespace of gamma's is not beta's
    namespace = scenes_for(multi_eks.env, handles[GAMMA]).namespace("own")
    assert core_api(handles[GAMMA]).read_namespace(namespace).metadata.name == namespace
    with pytest.raises(client.ApiException) as missing:
        core_api(handles[BETA]).read_namespace(namespace)
    assert missing.value.status == 404
    # gamma's own replicaset controller, scheduler and kwok: a ReplicaSet's pods made, placed, Running
    node = worker_node_in(multi_eks.env, handles[GAMMA], spot=False)
    apps = client.AppsV1Api(config.new_client_from_config(handles[GAMMA].kubeconfig))
    labels = {"app": "made-here"}
    spec = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    apps.create_namespaced_replica_set(
        namespace,
        {
            "metadata": {"name": "made-here"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": spec},
            },
        },
    )
    deadline = time.monotonic() + 60
    while True:
        pods = core_api(handles[GAMMA]).list_namespaced_pod(namespace).items
        running = [p for p in pods if p.status.phase == "Running" and p.spec.node_name == node.node_name]
        if len(running) == 2:
            break
        assert time.monotonic() < deadline, [(p.metadata.name, p.status.phase, p.spec.node_name) for p in pods]
        time.sleep(0.5)
    assert all(p.metadata.owner_references[0].kind == "ReplicaSet" for p in running)


def test_each_account_lists_and_describes_its_own_clusters(multi_eks: MultiEks) -> None:
    url = multi_eks.env["AWS_ENDPOINT_URL"]
    home_eks = multi_eks.session().client("eks", endpoint_url=url)
    member_eks = multi_eks.session(MEMBER_ACCOUNT_ID).client("eks", endpoint_url=url)
    assert sorted(home_eks.list_clusters()["clusters"]) == [HOME, BETA]
    assert member_eks.list_clusters()["clusters"] == [GAMMA]
    for eks, name in ((home_eks, HOME), (home_eks, BETA), (member_eks, GAMMA)):
        handle = multi_eks.clusters[name]
        cluster = eks.describe_cluster(name=name)["cluster"]
        assert cluster["endpoint"] == handle.api_url
        assert base64.b64decode(cluster["certificateAuthority"]["data"]) == handle.ca_pem
        assert cluster["arn"] == f"arn:aws:eks:us-east-1:{handle.account}:cluster/{name}" == handle.arn
    with pytest.raises(home_eks.exceptions.ResourceNotFoundException):
        home_eks.describe_cluster(name=GAMMA)
    # tags: from the spec, and added through TagResource
    assert member_eks.describe_cluster(name=GAMMA)["cluster"]["tags"] == {"env": "prod"}
    tag_cluster(multi_eks.env, multi_eks.clusters[BETA], {"serverless-nth/drain": "true"})
    assert home_eks.list_tags_for_resource(resourceArn=multi_eks.clusters[BETA].arn)["tags"] == {
        "serverless-nth/drain": "true"
    }


def test_a_token_is_good_only_for_the_cluster_it_was_signed_for(multi_eks: MultiEks) -> None:
    """The function signs with its own (home) credentials; every cluster's access entry names
    the home account's function role, gamma's in the member account too."""
    session, url = multi_eks.function_session(), multi_eks.env["AWS_ENDPOINT_URL"]
    handles = multi_eks.clusters.handles
    for name, handle in handles.items():  # k8s/rbac.yaml applied: the function's group may list nodes
        assert api_get(handle, "/api/v1/nodes?limit=1", eks_token(session, url, name)) == 200, name
    for_alpha = eks_token(session, url, HOME)
    assert api_get(handles[BETA], "/api/v1/nodes?limit=1", for_alpha) == 401
    refused = last_verdict(handles[BETA])
    assert refused["outcome"] == "rejected"
    assert "SignatureDoesNotMatch" in refused["detail"]
    assert api_get(handles[GAMMA], "/api/v1/nodes?limit=1", for_alpha) == 401
    # the member role has no access entry: the function's own role it is, in every cluster
    member_token = eks_token(multi_eks.session(MEMBER_ACCOUNT_ID), url, GAMMA)
    assert api_get(handles[GAMMA], "/api/v1/nodes?limit=1", member_token) == 401
    assert "no access entry" in last_verdict(handles[GAMMA])["detail"]


def test_the_member_role_sees_only_the_member_accounts_instances(multi_eks: MultiEks) -> None:
    env, url = multi_eks.env, multi_eks.env["AWS_ENDPOINT_URL"]
    member = multi_eks.session(MEMBER_ACCOUNT_ID)
    identity = member.client("sts", endpoint_url=url).get_caller_identity()
    assert identity["Arn"].startswith(f"arn:aws:sts::{MEMBER_ACCOUNT_ID}:assumed-role/{MEMBER_ROLE_NAME}/")
    trust = member.client("iam", endpoint_url=url).get_role(RoleName=MEMBER_ROLE_NAME)["Role"]
    assert trust["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"AWS": FUNCTION_ROLE_ARN}

    in_gamma = worker_node_in(env, multi_eks.clusters[GAMMA])
    in_alpha = worker_node_in(env, multi_eks.clusters[HOME])
    node = core_api(multi_eks.clusters[GAMMA]).read_node(in_gamma.node_name)
    assert node.spec.provider_id == f"aws:///{in_gamma.availability_zone}/{in_gamma.instance_id}"

    def instances(session: Any) -> dict[str, dict[str, str]]:
        reply = session.client("ec2", endpoint_url=url).describe_instances()
        return {
            i["InstanceId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            for r in reply["Reservations"]
            for i in r["Instances"]
        }

    seen_by_member, seen_at_home = instances(member), instances(multi_eks.session())
    assert in_gamma.instance_id in seen_by_member
    assert in_alpha.instance_id not in seen_by_member
    assert in_alpha.instance_id in seen_at_home
    assert in_gamma.instance_id not in seen_at_home
    tags = seen_by_member[in_gamma.instance_id]
    assert tags["kubernetes.io/cluster/gamma"] == "owned"
    assert tags["eks:eks-cluster-name"] == GAMMA
    event = event_in(MEMBER_ACCOUNT_ID, "spot-interruption", in_gamma.instance_id)  # as the member's bus has it
    assert event["account"] == MEMBER_ACCOUNT_ID
    assert event["detail"]["instance-id"] == in_gamma.instance_id


def test_beta_api_server_down_leaves_alpha_serving(multi_eks: MultiEks) -> None:
    clusters, env = multi_eks.clusters, multi_eks.env
    alpha, beta = clusters[HOME], clusters[BETA]
    kept = scenes_for(env, beta).namespace("kept")
    node = worker_node_in(env, alpha, spot=False)
    with apiserver_down(clusters, BETA):
        with pytest.raises(urllib.error.URLError, match="Connection refused"):
            api_get(beta, "/version", beta.admin_token)
        started = time.monotonic()
        assert api_get(alpha, "/version", alpha.admin_token) == 200
        core_api(alpha).patch_node(node.node_name, {"spec": {"unschedulable": True}})
        assert core_api(alpha).read_node(node.node_name).spec.unschedulable is True
        assert time.monotonic() - started < 5
    assert api_get(beta, "/version", beta.admin_token) == 200
    assert core_api(beta).read_namespace(kept).metadata.name == kept  # etcd kept beta's objects
    with apiserver_down(clusters, BETA, frozen=True):  # SIGSTOP: beta's clients hang until their timeout
        with pytest.raises(urllib.error.URLError, match="timed out"):
            api_get(beta, "/version", beta.admin_token, timeout=2)
        started = time.monotonic()
        assert api_get(alpha, "/version", alpha.admin_token) == 200
        assert time.monotonic() - started < 2
    assert api_get(beta, "/version", beta.admin_token) == 200


def test_the_spot_function_drains_a_node_of_beta_through_beta_api_server(multi_eks: MultiEks) -> None:
    """Today's single-cluster function pointed at beta (CLUSTER_NAME=beta): DescribeCluster in the
    home account, a token for beta, beta's webhook and RBAC; the pods go, alpha is untouched."""
    env = env_for(multi_eks.env, multi_eks.clusters[BETA])
    scenes = scenes_for(multi_eks.env, multi_eks.clusters[BETA])
    scene = scenes.node_with_workloads(grace=2, long_grace=4)
    result = run(env, "spot-interruption", scene.instance_id)
    assert result.exit_code == 0, result.output
    assert result.result["outcome"] == "drained", result.result
    assert node_state(scenes, scene.node_name)[0] is True
    alpha = core_api(multi_eks.clusters[HOME])
    assert scene.node_name not in {n.metadata.name for n in alpha.list_node().items}
