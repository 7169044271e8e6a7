"""One set of functions for three clusters in two accounts (issue #21): each event is routed by its
instance's own tags, through the member account's role for that account's instances, to its
cluster's own API server, token and settings; the node's identity proof stays; a cluster outside
the set, or an account outside the deployment, is a quiet no-op; one cluster's API server down does
not delay another cluster's drain."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from localeks.accounts import MEMBER_ACCOUNT_ID
from localeks.clusters import apiserver_down, scenes_for, session_in, tag_cluster
from localeks.invoke import Invocation, invoke
from localeks.scenes import Scenes
from tests.integration.long_drains import SCHEDULED, health_event
from tests.integration.multi import BETA, GAMMA, HOME, MultiEks, event_in
from tests.integration.support import node_state, run
from tests.integration.test_incomplete_drains import metrics_of

pytestmark = pytest.mark.xdist_group("local-clusters")

# the deployment: alpha (ClusterName), beta and gamma (Clusters), gamma's account a member
SERVED = {"Clusters": f"{BETA},{GAMMA}", "MemberAccounts": MEMBER_ACCOUNT_ID}
STRANGER = "999999999999"


def drained_scene(multi: MultiEks, cluster: str) -> tuple[Scenes, Any]:
    scenes = scenes_for(multi.env, multi.clusters[cluster])
    return scenes, scenes.worker_node()


def spot(multi: MultiEks, instance_id: str, account: str | None = None, **params: str) -> Invocation:
    event = event_in(account, "spot-interruption", instance_id) if account else None
    return run(multi.env, "spot-interruption", instance_id, params={**SERVED, **params}, event=event)


def untouched(scenes: Scenes, node: str) -> bool:
    return node_state(scenes, node) == (False, {})


def test_events_of_every_cluster_go_to_their_own_cluster_through_one_function(multi_eks: MultiEks) -> None:
    beta_scenes, beta_node = drained_scene(multi_eks, BETA)
    gamma_scenes, gamma_node = drained_scene(multi_eks, GAMMA)  # its instance in the member account
    _, alpha_node = drained_scene(multi_eks, HOME)

    in_beta = spot(multi_eks, beta_node.instance_id)
    assert in_beta.exit_code == 0, in_beta.output
    assert (in_beta.result["cluster"], in_beta.result["outcome"]) == (BETA, "drained"), in_beta.result
    assert node_state(beta_scenes, beta_node.node_name)[0] is True

    in_gamma = spot(multi_eks, gamma_node.instance_id, account=MEMBER_ACCOUNT_ID)
    assert in_gamma.exit_code == 0, in_gamma.output
    assert (in_gamma.result["cluster"], in_gamma.result["outcome"]) == (GAMMA, "drained"), in_gamma.result
    assert node_state(gamma_scenes, gamma_node.node_name)[0] is True

    in_alpha = spot(multi_eks, alpha_node.instance_id)
    assert (in_alpha.result["cluster"], in_alpha.result["outcome"]) == (HOME, "drained"), in_alpha.result
    # each metric carries its cluster, and in this multi-account deployment its account
    emf = [line for line in in_gamma.output.splitlines() if '"NodesCordoned"' in line]
    assert emf, in_gamma.output
    assert f'"cluster":"{GAMMA}"' in emf[0].replace(" ", "")
    assert f'"account":"{MEMBER_ACCOUNT_ID}"' in emf[0].replace(" ", "")


def test_a_cluster_outside_the_set_and_an_account_outside_the_deployment_change_nothing(
    multi_eks: MultiEks,
) -> None:
    gamma_scenes, gamma_node = drained_scene(multi_eks, GAMMA)
    only_beta = spot(multi_eks, gamma_node.instance_id, account=MEMBER_ACCOUNT_ID, Clusters=BETA)
    assert only_beta.exit_code == 0, only_beta.output
    assert only_beta.result["outcome"] == "not-this-cluster", only_beta.result
    assert metrics_of(only_beta).get("InstanceNotInCluster") == [1.0]
    assert untouched(gamma_scenes, gamma_node.node_name)

    stranger = spot(multi_eks, gamma_node.instance_id, account=STRANGER)
    assert stranger.exit_code == 0, stranger.output
    assert stranger.result["outcome"] == "other-account", stranger.result
    assert untouched(gamma_scenes, gamma_node.node_name)


def test_tags_that_name_the_wrong_cluster_do_not_reach_the_node_they_lie_about(multi_eks: MultiEks) -> None:
    """An instance tagged beta whose node is alpha's: routed to beta, where no node has its
    providerID; alpha's node, the instance's real one, is left alone (tags are user-writable)."""
    alpha_scenes, alpha_node = drained_scene(multi_eks, HOME)
    ec2 = session_in(multi_eks.env, multi_eks.clusters[HOME].account).client(
        "ec2", endpoint_url=multi_eks.env["AWS_ENDPOINT_URL"]
    )
    # the managed node group's tag rewritten (kubernetes.io/cluster/alpha stays: read only when no other names one)
    ec2.create_tags(Resources=[alpha_node.instance_id], Tags=[{"Key": "eks:cluster-name", "Value": BETA}])
    lied = spot(multi_eks, alpha_node.instance_id)
    assert lied.exit_code == 0, lied.output
    assert (lied.result["cluster"], lied.result["outcome"]) == (BETA, "node-not-found"), lied.result
    assert untouched(alpha_scenes, alpha_node.node_name)


def test_a_clusters_tags_set_its_own_settings_and_a_bad_one_keeps_the_stacks(multi_eks: MultiEks) -> None:
    beta = multi_eks.clusters[BETA]
    beta_scenes, beta_node = drained_scene(multi_eks, BETA)
    tag_cluster(multi_eks.env, beta, {"serverless-nth/dry-run": "true", "serverless-nth/karpenter-nodes": "some"})
    eks = session_in(multi_eks.env, beta.account).client("eks", endpoint_url=multi_eks.env["AWS_ENDPOINT_URL"])
    try:
        dry = spot(multi_eks, beta_node.instance_id)
    finally:
        eks.untag_resource(resourceArn=beta.arn, tagKeys=["serverless-nth/dry-run", "serverless-nth/karpenter-nodes"])
    assert dry.exit_code == 0, dry.output
    assert dry.result["outcome"] == "dry-run", dry.result
    assert untouched(beta_scenes, beta_node.node_name)
    assert metrics_of(dry).get("ClusterTagsInvalid") == [1.0]
    assert "serverless-nth/karpenter-nodes='some' ignored" in dry.output


def test_one_clusters_api_server_down_does_not_delay_another_clusters_drain(multi_eks: MultiEks) -> None:
    alpha_scenes = scenes_for(multi_eks.env, multi_eks.clusters[HOME])
    alpha_node = alpha_scenes.node_with_workloads(grace=2, long_grace=4)
    _, beta_node = drained_scene(multi_eks, BETA)
    results: dict[str, Invocation] = {}

    def handle(name: str, instance_id: str) -> None:
        results[name] = spot(multi_eks, instance_id)

    with apiserver_down(multi_eks.clusters, BETA):
        started = time.monotonic()
        beta = threading.Thread(target=handle, args=(BETA, beta_node.instance_id))
        beta.start()
        handle(HOME, alpha_node.instance_id)
        alpha_seconds = time.monotonic() - started
        beta.join(timeout=300)
    assert results[HOME].exit_code == 0, results[HOME].output
    assert results[HOME].result["outcome"] == "drained", results[HOME].result
    # inside the Spot deadline (120 s from the event): the drain itself took a few seconds
    assert alpha_seconds < 60, alpha_seconds
    assert results[BETA].exit_code != 0, results[BETA].result  # retried by Lambda, kept by the queue


def test_one_health_event_drains_each_instance_in_its_own_cluster_and_one_clusters_outage_stops_no_other(
    multi_eks: MultiEks,
) -> None:
    """A durable execution routes each instance on its own: alpha's and beta's nodes of one Health
    event drained in their clusters; then, with beta's API server down, alpha's node of the next
    event still drains, and the execution fails at its end for beta's (kept for a replay)."""
    alpha_scenes, alpha_node = drained_scene(multi_eks, HOME)
    beta_scenes, beta_node = drained_scene(multi_eks, BETA)
    params = {**SERVED, "ScheduledChangeLeadSeconds": "600"}
    both = health_event([alpha_node.instance_id, beta_node.instance_id], 60, "upcoming")
    result = invoke(SCHEDULED, both, multi_eks.env, params)
    assert result.exit_code == 0, result.output[-3000:]
    outcomes = result.result["result"]["outcomes"]
    assert outcomes == {alpha_node.instance_id: "drained", beta_node.instance_id: "drained"}, result.result
    assert node_state(alpha_scenes, alpha_node.node_name)[0] is True
    assert node_state(beta_scenes, beta_node.node_name)[0] is True

    _, alpha_next = drained_scene(multi_eks, HOME)
    _, beta_next = drained_scene(multi_eks, BETA)
    event = health_event([alpha_next.instance_id, beta_next.instance_id], 60, "upcoming")
    with apiserver_down(multi_eks.clusters, BETA):
        failed = invoke(SCHEDULED, event, multi_eks.env, params)
    assert failed.exit_code != 0, failed.result
    assert "ScheduledChangeFailed" in failed.output, failed.output[-3000:]
    assert node_state(alpha_scenes, alpha_next.node_name)[0] is True, failed.output[-3000:]
