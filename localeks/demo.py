"""`make demo`: the handlers reacting to the sample events against the local EKS.

Builds a small, realistic cluster (Spot and On-Demand nodes, Deployments under PDBs, DaemonSets,
a mirror pod, pods with emptyDir or no controller), replays each file of events/ through the local
invoke, exactly as `make invoke` would, and prints what happened to each node and its pods. The
functions' log and metric lines are kept in .local/demo-output.jsonl.

The local EKS runs a second cluster, ``beta``, with its own API server, in the same account, and
every invocation is of one deployment that serves both clusters (template parameter
``Clusters=beta``, docs/multi-cluster.md): the functions route each event by its instance's tags,
and the blocks for beta's nodes, and for an instance of a cluster not served, say where it went.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localeks import clusterview
from localeks.accounts import ClusterSpec
from localeks.cluster import ACCOUNT_ID, DEFAULT_STATE, Paths, up
from localeks.clusters import Clusters, scenes_for
from localeks.dashboard import render
from localeks.invoke import invoke, prepare_event
from localeks.node_group import NodeGroup
from localeks.scenes import NodeScene, Scenes

REPO = Path(__file__).resolve().parent.parent
# The demo's second cluster; one set of functions serves both. In the same account: a member
# account's cluster (ClusterSpec("beta", MEMBER_ACCOUNT_ID)) is routed as well, but its metrics then
# carry an `account` dimension that template.yaml's dashboard SEARCH expressions do not match.
SECOND = ClusterSpec("beta")
PARAMS = {  # every invocation's template parameters
    "Clusters": SECOND.name,
    **({"MemberAccounts": SECOND.account} if SECOND.account != ACCOUNT_ID else {}),
}


@dataclass
class Step:
    title: str
    function: str
    event_file: str
    scene: NodeScene | None  # None: an instance that is not a node of this cluster
    instance_id: str
    before: str = ""  # what happens to the instance in EC2 first: stop, terminate, start
    scenes: Scenes | None = None  # the cluster and account of the instance (None: the home ones)
    routed: bool = False  # print which cluster the function routed the event to


def main() -> None:
    paths = Paths(Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)).resolve())
    print("Starting the local EKS (first run builds the control plane: a few minutes)...", flush=True)
    env = up(
        paths,
        os.environ.get("LOCALEKS_CLUSTER_NAME", "local-eks"),
        float(os.environ.get("LOCALEKS_SPEED", "0.1")),
        more_clusters=[SECOND],
    )
    scenes = Scenes(env)
    print(f"Cluster {env['CLUSTER_NAME']} at {env['LOCALEKS_API_URL']}", flush=True)
    second = Clusters.load(env).handles.get(SECOND.name)
    if second is None:  # a local EKS started before, with one cluster: reused as it is
        print(f"   (no cluster {SECOND.name} in this local EKS: its blocks are left out; make cluster-down first)")
    else:
        print(
            f"Cluster {second.name} in account {second.account} at {second.api_url}; one set of functions "
            f"serves both ({' '.join(f'{k}={v}' for k, v in PARAMS.items())})"
        )
    print("Building the workloads...", flush=True)
    spot_a = scenes.node_with_workloads(spot=True, spare_nodes=2)
    spot_b = scenes.node_with_workloads(spot=True, spare_nodes=0)
    spot_custom = scenes.node_with_workloads(
        spot=True, custom_name=f"spot-worker-{uuid.uuid4().hex[:6]}", spare_nodes=0
    )
    od_stopping = scenes.node_with_workloads(spot=False, spare_nodes=0)
    od_terminated = scenes.node_with_workloads(spot=False, spare_nodes=0)
    od_returning = scenes.node_with_workloads(spot=False, spare_nodes=0)
    karpenter = scenes.karpenter_node(nodepool="spot-batch", labels={"serverless-nth/rebalance": "drain"})
    karpenter.namespace = scenes.namespace("karpenter")
    karpenter.pods["deployment"] = scenes.deployment(karpenter.namespace, "batch", karpenter.node_name, 2, grace=10)
    scenes.wait_pdbs(karpenter.namespace)
    od_retiring = scenes.node_with_workloads(spot=False, spare_nodes=0)
    group = NodeGroup(env, scenes)  # a self-managed node group with this stack's terminate hook
    group_scene = scenes.scene_for(group.instance, group.node_name)
    group_scene.namespace = scenes.namespace("asg")
    group_scene.pods["deployment"] = scenes.deployment(group_scene.namespace, "api", group.node_name, 2, grace=5)
    scenes.wait_pdbs(group_scene.namespace)
    opted_out = scenes.worker_node(labels={"serverless-nth/ignore": "true"})
    foreign = scenes.worker_node(cluster="another-cluster")
    second_steps, second_nodes = _second_cluster(env, second) if second else ([], [])
    steps = [
        Step("Spot interruption warning", "SpotInterruptionFunction", "spot-interruption", spot_a, spot_a.instance_id),
        Step(
            "Rebalance recommendation",
            "RebalanceRecommendationFunction",
            "rebalance-recommendation",
            spot_b,
            spot_b.instance_id,
        ),
        Step(
            "Spot interruption, custom node name",
            "SpotInterruptionFunction",
            "spot-interruption",
            spot_custom,
            spot_custom.instance_id,
        ),
        Step(
            "Rebalance recommendation, Karpenter node labelled serverless-nth/rebalance=drain",
            "RebalanceRecommendationFunction",
            "rebalance-recommendation",
            karpenter,
            karpenter.instance_id,
        ),
        Step(
            "State change: stopping",
            "StateChangeFunction",
            "state-change-stopping",
            od_stopping,
            od_stopping.instance_id,
            before="stop",
        ),
        Step(
            "State change: terminated",
            "StateChangeFunction",
            "state-change-terminated",
            od_terminated,
            od_terminated.instance_id,
            before="terminate",
        ),
        Step(
            "State change: stopped",
            "StateChangeFunction",
            "state-change-stopped",
            od_returning,
            od_returning.instance_id,
            before="stop",
        ),
        Step(
            "State change: running (the stopped node comes back)",
            "StateChangeFunction",
            "state-change-running",
            od_returning,
            od_returning.instance_id,
            before="start",
        ),
        Step(
            "A stopped event replayed after the node came back",
            "StateChangeFunction",
            "state-change-stopped",
            od_returning,
            od_returning.instance_id,
        ),
        Step(
            "Auto Scaling scale-in: the terminate lifecycle hook (a durable execution)",
            "LifecycleActionFunction",
            "asg-lifecycle-action",
            group_scene,
            group.instance_id,
            before="scale-in",
        ),
        Step(
            "AWS Health scheduled retirement in 3 h (a durable execution: the 2 h 50 min wait skipped)",
            "ScheduledChangeFunction",
            "scheduled-change",
            od_retiring,
            od_retiring.instance_id,
        ),
        *second_steps,
        Step(
            "Spot interruption, node labelled serverless-nth/ignore=true",
            "SpotInterruptionFunction",
            "spot-interruption",
            opted_out,
            opted_out.instance_id,
        ),
        Step(
            "Spot interruption, an instance of a cluster this deployment does not serve",
            "SpotInterruptionFunction",
            "spot-interruption",
            None,
            foreign.instance_id,
            routed=True,
        ),
        Step(
            "Malformed event (no instance-action)",
            "SpotInterruptionFunction",
            "spot-interruption",
            None,
            spot_b.instance_id,
        ),
    ]
    drawn_nodes = clusterview.nodes_created_since(scenes.core, spot_a.node_name)  # the demo's nodes
    cluster_before = clusterview.snapshot(scenes.core, drawn_nodes)
    output = paths.state / "demo-output.jsonl"
    with output.open("w") as captured:
        for step in steps:
            step_scenes = step.scenes or scenes
            before = len(step_scenes.pods_on(step.scene.node_name)) if step.scene else 0
            event = prepare_event(
                json.loads((REPO / "events" / f"{step.event_file}.json").read_text()), step.instance_id, now=True
            )
            if step.scenes is not None and second is not None and second.account != ACCOUNT_ID:
                # the event as the member account's bus has it, forwarded unchanged (its account, its ARNs)
                event = json.loads(json.dumps(event).replace(ACCOUNT_ID, second.account))
            if step.title.startswith("Malformed"):
                del event["detail"]["instance-action"]
            if step.before == "scale-in":
                event = group.scale_in()  # the event the group sends, with its action's token
            if step.event_file == "scheduled-change":
                starts = time.gmtime(time.time() + 3 * 3600)
                event["detail"]["startTime"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", starts)
            _change_instance(step_scenes, step)
            started = time.monotonic()
            result = invoke(step.function, event, env, params=PARAMS)
            took = time.monotonic() - started
            captured.write(result.output)
            if "operations" in result.result:  # a durable execution: its result, and the steps it took
                _print_execution(step, result.result, took, before, step_scenes)
            else:
                route = _route(env, event, result, step_scenes, step.instance_id) if step.routed else None
                _print_step(step, result.result, result.exit_code, took, before, step_scenes, route)
    home_nodes = [spot_a, spot_b, spot_custom, karpenter, od_stopping, od_terminated, od_returning, group_scene]
    _print_nodes([(scenes, n) for n in [*home_nodes, od_retiring]] + second_nodes)
    print(f"\nLogs and EMF metrics of every invocation: {output}")
    render(output, paths.state / "dashboard.png")
    print(f"The dashboard of template.yaml drawn from those metrics: {paths.state / 'dashboard.png'}")
    picture = clusterview.write(
        cluster_before, clusterview.snapshot(scenes.core, drawn_nodes), paths.state / "cluster-before-after.png"
    )
    print(f"The nodes and their pods before and after the events: {picture}")
    if second is None:
        print(
            f"The cluster is still up: source {paths.env_file} and use $LOCALEKS_BIN/kubectl; "
            "make cluster-down stops it."
        )
    else:
        print(
            f"The clusters are still up: source {paths.env_file} and use $LOCALEKS_BIN/kubectl "
            f"(for {second.name}: --kubeconfig {second.kubeconfig}); make cluster-down stops them."
        )


def _second_cluster(env: dict[str, str], second: Any) -> tuple[list[Step], list[tuple[Scenes, NodeScene]]]:
    """Beta's small scene: two Spot nodes of a managed node group, their instances (in beta's
    account) tagged for beta, a Deployment under a PDB on the first; and the two events for them,
    handled by the same functions as the home cluster's."""
    beta = scenes_for(env, second)
    tags = {"eks:eks-cluster-name": second.name}
    shop = beta.worker_node(spot=True, tags=tags)
    spare = beta.worker_node(spot=True, tags=tags)  # where the replacements go, then itself told
    shop.namespace = beta.namespace("shop")
    shop.pods["deployment"] = beta.deployment(shop.namespace, "shop", shop.node_name, 3, grace=5)
    beta.wait_pdbs(shop.namespace)
    where = f"a node of the second cluster, {second.name}"
    if second.account != ACCOUNT_ID:
        where += f" (account {second.account})"
    steps = [
        Step(
            f"Spot interruption, {where}",
            "SpotInterruptionFunction",
            "spot-interruption",
            shop,
            shop.instance_id,
            scenes=beta,
            routed=True,
        ),
        Step(
            f"Rebalance recommendation, {where}",
            "RebalanceRecommendationFunction",
            "rebalance-recommendation",
            spare,
            spare.instance_id,
            scenes=beta,
            routed=True,
        ),
    ]
    return steps, [(beta, shop), (beta, spare)]


def _route(env: dict[str, str], event: dict[str, Any], invocation: Any, scenes: Scenes, instance_id: str) -> str:
    """Where the function routed the event: the cluster the instance's tags name, if served."""
    reservations = scenes.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    tags = {t["Key"]: t["Value"] for t in reservations[0]["Instances"][0].get("Tags", [])}
    tagged = tags.get("eks:eks-cluster-name") or tags.get("eks:cluster-name") or "no cluster"
    served = ", ".join([env["CLUSTER_NAME"], *PARAMS["Clusters"].split(",")])
    source = f"event of account {event['account']}, " if event["account"] != ACCOUNT_ID else ""
    result = invocation.result
    if result.get("outcome") == "not-this-cluster":
        why = next((m for m in _said(invocation.output) if m.startswith("nothing to do: ")), "")
        to = f"none of the clusters served ({served}): {why.removeprefix('nothing to do: ') or '-'}"
    else:
        to = f"cluster {result.get('cluster')} (served: {served})"
    return f"routed: {source}the instance's tags name {tagged} -> {to}"


def _said(output: str) -> list[str]:
    """The messages of the function's JSON log lines."""
    messages = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record.get("message"), str):
                messages.append(record["message"])
    return messages


def _change_instance(scenes: Scenes, step: Step) -> None:
    """What EC2 does before it sends the event: the handlers read the instance's state."""
    ids = [step.instance_id]
    final = {"stop": "stopping", "terminate": "shutting-down", "start": "running"}.get(step.before)
    if step.before == "stop":
        scenes.ec2.stop_instances(InstanceIds=ids)
    elif step.before == "terminate":
        scenes.ec2.terminate_instances(InstanceIds=ids)
    elif step.before == "start":
        scenes.ec2.start_instances(InstanceIds=ids)
    if final and step.event_file in ("state-change-stopped", "state-change-terminated"):
        final = step.event_file.removeprefix("state-change-")  # wait until EC2 reports it
    deadline = time.monotonic() + 30
    while final and time.monotonic() < deadline:
        state = scenes.ec2.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"][0]["State"]["Name"]
        if state == final:
            return
        time.sleep(0.2)


def _print_step(
    step: Step,
    result: dict[str, Any],
    exit_code: int,
    took: float,
    pods_before: int,
    scenes: Scenes,
    route: str | None = None,
) -> None:
    print(f"\n== {step.title}  [{step.function} <- events/{step.event_file}.json]")
    if route:
        print(f"   {route}")
    if exit_code:
        print(f"   handler raised {result['errorType']}: {result['errorMessage']}")
        print("   (in AWS: retried by Lambda, then kept in the on-failure queue for replay; nothing was changed)")
        return
    print(
        f"   instance {step.instance_id} ({result.get('instance_state') or '?'} in EC2) -> node "
        f"{result.get('node') or '-'}: outcome {result['outcome']} ({result.get('basis') or '-'}) in {took:.1f} s"
    )
    if result.get("undone"):
        print(f"   undone: {', '.join(result['undone'])}")
    if result.get("taints_added"):
        print(f"   cordoned: {result['cordoned']}; taints added: {', '.join(result['taints_added'])}")
    drain = result.get("drain")
    if drain:
        skipped = ", ".join(f"{n} {k}" for k, n in drain["skipped"].items()) or "none"
        print(
            f"   drain: {drain['evicted']} evicted (all sent after {drain['evictions_sent_seconds']} s), "
            f"{drain['pdb_refusals']} PDB refusals retried, skipped {skipped}, "
            f"{len(drain['remaining'])} remaining, done in {drain['duration_seconds']} s"
        )
    if step.scene:
        after = scenes.pods_on(step.scene.node_name)
        names = sorted(p.metadata.name for p in after)
        print(f"   pods on the node: {pods_before} before, {len(after)} after ({', '.join(names)})")


def _print_execution(step: Step, execution: dict, took: float, pods_before: int, scenes: Scenes) -> None:  # type: ignore[type-arg]
    print(f"\n== {step.title}  [{step.function} <- events/{step.event_file}.json]")
    result = execution.get("result") or {}
    outcome = result.get("outcome") or ", ".join(f"{i}: {o}" for i, o in result.get("outcomes", {}).items())
    print(f"   durable execution {execution['status']} in {took:.1f} s: {outcome or execution.get('error')}")
    names = [op["name"] for op in execution["operations"]]
    print(f"   steps: {' -> '.join(names)}")
    if step.scene:
        after = scenes.pods_on(step.scene.node_name)
        print(f"   pods on the node: {pods_before} before, {len(after)} after")


def _print_nodes(scene_list: list[tuple[Scenes, NodeScene]]) -> None:
    print("\n== Nodes now")
    print(f"   {'cluster':10} {'node':36} {'capacity':10} {'schedulable':12} taints")
    for scenes, scene in scene_list:
        node = scenes.core.read_node(scene.node_name)
        taints = ", ".join(f"{t.key}:{t.effect}" for t in node.spec.taints or []) or "-"
        labels = node.metadata.labels or {}
        capacity = labels.get("eks.amazonaws.com/capacityType") or labels.get("karpenter.sh/capacity-type", "?")
        schedulable = "no" if node.spec.unschedulable else "yes"
        print(f"   {scenes.cluster_name:10} {scene.node_name:36} {capacity:10} {schedulable:12} {taints}")


if __name__ == "__main__":
    main()
