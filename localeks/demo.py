"""`make demo`: the handlers reacting to the sample events against the local EKS.

Builds a small, realistic cluster (Spot and On-Demand nodes, Deployments under PDBs, DaemonSets,
a mirror pod, pods with emptyDir or no controller), replays each file of events/ through the local
invoke, exactly as `make invoke` would, and prints what happened to each node and its pods. The
functions' log and metric lines are kept in .local/demo-output.jsonl.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from localeks import clusterview
from localeks.cluster import DEFAULT_STATE, Paths, up
from localeks.dashboard import render
from localeks.invoke import invoke, prepare_event
from localeks.node_group import NodeGroup
from localeks.scenes import NodeScene, Scenes

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Step:
    title: str
    function: str
    event_file: str
    scene: NodeScene | None  # None: an instance that is not a node of this cluster
    instance_id: str
    before: str = ""  # what happens to the instance in EC2 first: stop, terminate, start


def main() -> None:
    paths = Paths(Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)).resolve())
    print("Starting the local EKS (first run builds the control plane: a few minutes)...", flush=True)
    env = up(
        paths, os.environ.get("LOCALEKS_CLUSTER_NAME", "local-eks"), float(os.environ.get("LOCALEKS_SPEED", "0.1"))
    )
    scenes = Scenes(env)
    print(f"Cluster {env['CLUSTER_NAME']} at {env['LOCALEKS_API_URL']}; building the workloads...", flush=True)
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
        Step(
            "Spot interruption, node labelled serverless-nth/ignore=true",
            "SpotInterruptionFunction",
            "spot-interruption",
            opted_out,
            opted_out.instance_id,
        ),
        Step(
            "Spot interruption, another cluster's instance",
            "SpotInterruptionFunction",
            "spot-interruption",
            None,
            foreign.instance_id,
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
            before = len(scenes.pods_on(step.scene.node_name)) if step.scene else 0
            event = prepare_event(
                json.loads((REPO / "events" / f"{step.event_file}.json").read_text()), step.instance_id, now=True
            )
            if step.title.startswith("Malformed"):
                del event["detail"]["instance-action"]
            if step.before == "scale-in":
                event = group.scale_in()  # the event the group sends, with its action's token
            if step.event_file == "scheduled-change":
                starts = time.gmtime(time.time() + 3 * 3600)
                event["detail"]["startTime"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", starts)
            _change_instance(scenes, step)
            started = time.monotonic()
            result = invoke(step.function, event, env)
            took = time.monotonic() - started
            captured.write(result.output)
            if "operations" in result.result:  # a durable execution: its result, and the steps it took
                _print_execution(step, result.result, took, before, scenes)
            else:
                _print_step(step, result.result, result.exit_code, took, before, scenes)
    _print_nodes(
        scenes,
        [spot_a, spot_b, spot_custom, karpenter, od_stopping, od_terminated, od_returning, group_scene, od_retiring],
    )
    print(f"\nLogs and EMF metrics of every invocation: {output}")
    render(output, paths.state / "dashboard.png")
    print(f"The dashboard of template.yaml drawn from those metrics: {paths.state / 'dashboard.png'}")
    picture = clusterview.write(
        cluster_before, clusterview.snapshot(scenes.core, drawn_nodes), paths.state / "cluster-before-after.png"
    )
    print(f"The nodes and their pods before and after the events: {picture}")
    print(
        f"The cluster is still up: source {paths.env_file} and use $LOCALEKS_BIN/kubectl; make cluster-down stops it."
    )


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


def _print_step(step: Step, result: dict, exit_code: int, took: float, pods_before: int, scenes: Scenes) -> None:  # type: ignore[type-arg]
    print(f"\n== {step.title}  [{step.function} <- events/{step.event_file}.json]")
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


def _print_nodes(scenes: Scenes, scene_list: list[NodeScene]) -> None:
    print("\n== Nodes now")
    print(f"   {'node':36} {'capacity':10} {'schedulable':12} taints")
    for scene in scene_list:
        node = scenes.core.read_node(scene.node_name)
        taints = ", ".join(f"{t.key}:{t.effect}" for t in node.spec.taints or []) or "-"
        labels = node.metadata.labels or {}
        capacity = labels.get("eks.amazonaws.com/capacityType") or labels.get("karpenter.sh/capacity-type", "?")
        print(f"   {scene.node_name:36} {capacity:10} {'no' if node.spec.unschedulable else 'yes':12} {taints}")


if __name__ == "__main__":
    main()
