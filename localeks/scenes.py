"""Realistic scenes in one call, for tests, benchmarks and the demo.

An EC2 instance in moto (Spot or On-Demand, tagged as EKS tags its nodes) with its Node (named by
private DNS name, or a custom name; ``spec.providerID`` = ``aws:///<az>/<instance-id>``; the usual
well-known labels), and workloads bound to it: Deployment-owned pods under a PDB, DaemonSet pods,
a mirror pod, a pod with emptyDir, a pod with no controller, pods with long grace periods.

Deployment pods are created bound to the node and owned by a real ReplicaSet, so the replicaset
controller replaces an evicted pod on another node (the scheduler places it) and the PDB frees up
again, as in a real cluster.
"""

from __future__ import annotations

import itertools
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config

from localeks.cluster import moto_client

_counter = itertools.count(1)


@dataclass
class NodeScene:
    instance_id: str
    node_name: str
    private_dns_name: str
    availability_zone: str
    provider_id: str
    namespace: str
    pods: dict[str, list[str]] = field(default_factory=dict)  # role -> pod names

    def all_pods(self) -> list[str]:
        return [p for names in self.pods.values() for p in names]


class Scenes:
    def __init__(self, cluster_env: dict[str, str], ec2: Any = None) -> None:
        """``ec2``: a client of another account (localeks/clusters.py ``scenes_for``); moto's
        admin client of the home account by default."""
        self.cluster_name = cluster_env["CLUSTER_NAME"]
        self.ec2 = ec2 if ec2 is not None else moto_client(cluster_env, "ec2")
        api_client = config.new_client_from_config(cluster_env["KUBECONFIG"])
        api_client.configuration.connection_pool_maxsize = 32
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self._image = self._ensure_image()

    def _ensure_image(self) -> str:
        images = self.ec2.describe_images(Owners=["amazon"])["Images"]
        return str(images[0]["ImageId"])

    # --- AWS side -------------------------------------------------------------------------
    def instance(
        self,
        *,
        spot: bool = True,
        cluster: str | None = "",
        instance_type: str = "m5.large",
        az: str = "us-east-1b",
        nodegroup: str = "workers",
        tags: dict[str, str] | None = None,
        capacity_reservation: str | None = None,
    ) -> dict[str, Any]:
        """An EC2 instance tagged as EKS tags its nodes. ``cluster=""`` means this cluster,
        ``None`` no cluster tags at all (a plain EC2 box), any other name another cluster.
        ``tags`` replace the node group's tags (a Karpenter instance has its own).
        ``capacity_reservation``: launched into that reservation (a Capacity Block's, say; the local
        extension localeks/capacity_reservations.py records it)."""
        cluster = self.cluster_name if cluster == "" else cluster
        tags_list = [{"Key": "Name", "Value": f"{nodegroup}-node"}]
        if tags is not None:
            tags_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        elif cluster is not None:
            tags_list += [
                {"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"},
                {"Key": "eks:cluster-name", "Value": cluster},
                {"Key": "eks:nodegroup-name", "Value": nodegroup},
                {"Key": "aws:autoscaling:groupName", "Value": f"eks-{nodegroup}-{uuid.uuid4().hex[:8]}"},
            ]
        kwargs: dict[str, Any] = {
            "ImageId": self._image,
            "MinCount": 1,
            "MaxCount": 1,
            "InstanceType": instance_type,
            "Placement": {"AvailabilityZone": az},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags_list}],
        }
        if capacity_reservation:
            target = {"CapacityReservationId": capacity_reservation}
            kwargs["CapacityReservationSpecification"] = {"CapacityReservationTarget": target}
        elif spot:
            kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}}
        return dict(self.ec2.run_instances(**kwargs)["Instances"][0])

    # --- Kubernetes side --------------------------------------------------------------------
    def node(
        self,
        instance: dict[str, Any],
        name: str | None = None,
        spot: bool = True,
        nodegroup: str = "workers",
        labels: dict[str, str] | None = None,
    ) -> str:
        """The Node of ``instance``: a managed node group's labels, or ``labels`` instead of the
        node group's (a Karpenter node has its own)."""
        az = instance["Placement"]["AvailabilityZone"]
        node_name = name or instance["PrivateDnsName"]
        own = (
            labels
            if labels is not None
            else {
                "eks.amazonaws.com/capacityType": "SPOT" if spot else "ON_DEMAND",
                "eks.amazonaws.com/nodegroup": nodegroup,
            }
        )
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node_name,
                "labels": {
                    "kubernetes.io/hostname": node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "arm64",
                    "topology.kubernetes.io/zone": az,
                    "topology.kubernetes.io/region": az[:-1],
                    "node.kubernetes.io/instance-type": instance["InstanceType"],
                    **own,
                },
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"providerID": f"aws:///{az}/{instance['InstanceId']}"},
        }
        self.core.create_node(body)
        return node_name

    def namespace(self, prefix: str = "scene") -> str:
        name = f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:5]}"
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def deployment(
        self,
        namespace: str,
        name: str,
        node_name: str,
        replicas: int,
        *,
        grace: int = 30,
        pdb_max_unavailable: int | None = 1,
        emptydir: bool = False,
        priority_class: str | None = None,
    ) -> list[str]:
        """A Deployment whose ReplicaSet's pods all sit on ``node_name``, optionally under a PDB
        (and of a priority class: the API server's Priority admission sets their priority)."""
        labels = {"app": name}
        template = {
            "metadata": {"labels": {**labels, "pod-template-hash": "h1"}},
            "spec": {
                "terminationGracePeriodSeconds": grace,
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                "tolerations": [],
                **({"volumes": [{"name": "scratch", "emptyDir": {}}]} if emptydir else {}),
                **({"priorityClassName": priority_class} if priority_class else {}),
            },
        }
        deployment = self.apps.create_namespaced_deployment(
            namespace,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": template,
                    "strategy": {"type": "RollingUpdate"},
                },
            },
        )
        # Pods first, then their ReplicaSet: the replicaset controller adopts them. Had it not
        # seen them yet when the ReplicaSet appears, it would create pods of its own and then
        # delete the surplus, so the ReplicaSet comes only once kwok has made them Running and
        # the controllers' pod cache holds them (_wait_cached).
        pods = [f"{name}-h1-{i:03d}" for i in range(replicas)]
        bodies = [_pod(p, node_name, {**labels, "pod-template-hash": "h1"}, grace, None, emptydir) for p in pods]
        for body in bodies:
            body["spec"].update(template["spec"])  # what the ReplicaSet that adopts them would make
        self._create_pods(namespace, bodies)
        self.wait_running(namespace, pods)
        self._wait_cached(namespace, labels, replicas)
        self.apps.create_namespaced_replica_set(
            namespace,
            {
                "metadata": {
                    "name": f"{name}-h1",
                    "labels": {**labels, "pod-template-hash": "h1"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": name,
                            "uid": deployment.metadata.uid,
                            "controller": True,
                        }
                    ],
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {**labels, "pod-template-hash": "h1"}},
                    "template": template,
                },
            },
        )
        self._wait_adopted(namespace, f"app={name}", replicas)
        if pdb_max_unavailable is not None:
            self.policy.create_namespaced_pod_disruption_budget(
                namespace,
                {
                    "metadata": {"name": name},
                    "spec": {"maxUnavailable": pdb_max_unavailable, "selector": {"matchLabels": labels}},
                },
            )
        return pods

    def _wait_cached(self, namespace: str, labels: dict[str, str], count: int, timeout: float = 30) -> None:
        """Until kube-controller-manager's pod cache, which its replicaset controller lists when a
        ReplicaSet appears, holds the ``count`` pods: a PodDisruptionBudget (minAvailable 0, deleted
        after) is counted from that same shared cache by the disruption controller. On a loaded
        machine the cache can lag the API server by seconds after the pods are Running. Gives up
        quietly after ``timeout`` (``_wait_adopted`` then tells what happened)."""
        name = f"cache-probe-{uuid.uuid4().hex[:6]}"
        body = {"metadata": {"name": name}, "spec": {"minAvailable": 0, "selector": {"matchLabels": labels}}}
        self.policy.create_namespaced_pod_disruption_budget(namespace, body)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                status = self.policy.read_namespaced_pod_disruption_budget_status(name, namespace).status
                if status is not None and (status.expected_pods or 0) >= count:
                    return
                time.sleep(0.1)
        finally:
            self.policy.delete_namespaced_pod_disruption_budget(name, namespace)

    def _wait_adopted(self, namespace: str, selector: str, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
            if len(pods) > count:
                raise RuntimeError(f"the replicaset controller made pods of its own for {selector} in {namespace}")
            if len(pods) == count and all(p.metadata.owner_references for p in pods):
                return
            time.sleep(0.1)
        raise TimeoutError(f"ReplicaSet did not adopt the pods {selector} in {namespace}")

    def daemonset_pod(self, namespace: str, name: str, node_name: str, priority_class: str | None = None) -> str:
        """A DaemonSet (limited to this node, so scenes stay independent); the daemonset controller
        creates its pod, with the tolerations DaemonSet pods get."""
        self.apps.create_namespaced_daemon_set(
            namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "selector": {"matchLabels": {"ds": name}},
                    "template": {
                        "metadata": {"labels": {"ds": name}},
                        "spec": {
                            "nodeSelector": {"kubernetes.io/hostname": node_name},
                            "containers": [{"name": "agent", "image": "registry.k8s.io/pause:3.10"}],
                            **({"priorityClassName": priority_class} if priority_class else {}),
                        },
                    },
                },
            },
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pods = self.core.list_namespaced_pod(namespace, label_selector=f"ds={name}").items
            if pods:
                return str(pods[0].metadata.name)
            time.sleep(0.1)
        raise TimeoutError(f"the daemonset controller made no pod for {namespace}/{name}")

    def mirror_pod(self, namespace: str, node_name: str) -> str:
        name = f"static-web-{node_name.split('.')[0]}"
        body = _pod(name, node_name, {"tier": "static"}, 30, None)
        body["metadata"]["annotations"] = {
            "kubernetes.io/config.mirror": uuid.uuid4().hex,
            "kubernetes.io/config.source": "file",
        }
        node = self.core.read_node(node_name)
        body["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node.metadata.uid, "controller": True}
        ]
        self._create_pods(namespace, [body])
        return name

    def bare_pod(self, namespace: str, name: str, node_name: str, grace: int = 30, emptydir: bool = False) -> str:
        self._create_pods(namespace, [_pod(name, node_name, {"bare": name}, grace, None, emptydir)])
        return name

    def _create_pods(self, namespace: str, bodies: list[dict[str, Any]]) -> None:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda b: self.core.create_namespaced_pod(namespace, b), bodies))

    # --- whole scenes -----------------------------------------------------------------------
    def worker_node(
        self,
        *,
        spot: bool = True,
        cluster: str | None = "",
        custom_name: str | None = None,
        instance_type: str = "m5.large",
        az: str = "us-east-1b",
        labels: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        capacity_reservation: str | None = None,
    ) -> NodeScene:
        """A managed node group's node; ``labels`` are added to the node group's (per-node policy),
        ``tags`` to the instance's (the managed tag); ``capacity_reservation``: a Capacity Block's node."""
        instance = self.instance(
            spot=spot, cluster=cluster, instance_type=instance_type, az=az, capacity_reservation=capacity_reservation
        )
        if tags:
            self.ec2.create_tags(
                Resources=[instance["InstanceId"]], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )
        node_name = instance["PrivateDnsName"]
        if cluster is not None or custom_name:
            group = {
                "eks.amazonaws.com/capacityType": (
                    "CAPACITY_BLOCK" if capacity_reservation else "SPOT" if spot else "ON_DEMAND"
                ),
                "eks.amazonaws.com/nodegroup": "workers",
            }
            node_name = self.node(instance, name=custom_name, spot=spot, labels={**group, **(labels or {})})
        return self.scene_for(instance, node_name)

    def karpenter_node(
        self, nodepool: str = "default", spot: bool = True, labels: dict[str, str] | None = None
    ) -> NodeScene:
        """A node as Karpenter makes it: its NodeClaim's name, the labels Karpenter puts on the
        node, and the instance tags it sets on the EC2 instance."""
        claim = f"{nodepool}-{uuid.uuid4().hex[:5]}"
        capacity = "spot" if spot else "on-demand"
        instance = self.instance(
            spot=spot,
            tags={
                "Name": f"{nodepool}/{claim}",
                f"kubernetes.io/cluster/{self.cluster_name}": "owned",
                "eks:eks-cluster-name": self.cluster_name,
                "karpenter.sh/nodepool": nodepool,
                "karpenter.sh/nodeclaim": claim,
                "karpenter.k8s.aws/ec2nodeclass": "default",
            },
        )
        karpenter_labels = {
            "karpenter.sh/nodepool": nodepool,
            "karpenter.sh/capacity-type": capacity,
            "karpenter.sh/registered": "true",
            "karpenter.sh/initialized": "true",
            "karpenter.k8s.aws/ec2nodeclass": "default",
            "karpenter.k8s.aws/instance-category": "m",
            "karpenter.k8s.aws/instance-family": "m5",
            "karpenter.k8s.aws/instance-generation": "5",
            "karpenter.k8s.aws/instance-size": "large",
            **(labels or {}),
        }
        node_name = self.node(instance, labels=karpenter_labels)
        return self.scene_for(instance, node_name)

    def scene_for(self, instance: dict[str, Any], node_name: str) -> NodeScene:
        az = instance["Placement"]["AvailabilityZone"]
        return NodeScene(
            instance_id=instance["InstanceId"],
            node_name=node_name,
            private_dns_name=instance["PrivateDnsName"],
            availability_zone=az,
            provider_id=f"aws:///{az}/{instance['InstanceId']}",
            namespace="",
        )

    def node_with_workloads(
        self,
        *,
        spot: bool = True,
        custom_name: str | None = None,
        web_replicas: int = 3,
        grace: int = 10,
        long_grace: int = 60,
        spare_nodes: int = 1,
        capacity_reservation: str | None = None,
    ) -> NodeScene:
        """The standard scene: a worker node with every kind of pod the drain must tell apart, plus
        ``spare_nodes`` On-Demand nodes where replacements can be scheduled."""
        scene = self.worker_node(spot=spot, custom_name=custom_name, capacity_reservation=capacity_reservation)
        for _ in range(spare_nodes):
            self.worker_node(spot=False)
        ns = self.namespace()
        scene.namespace = ns
        scene.pods["deployment"] = self.deployment(
            ns, "web", scene.node_name, web_replicas, grace=grace, pdb_max_unavailable=1
        )
        scene.pods["long-grace"] = self.deployment(
            ns, "batch", scene.node_name, 1, grace=long_grace, pdb_max_unavailable=None
        )
        scene.pods["daemonset"] = [self.daemonset_pod(ns, "node-agent", scene.node_name)]
        scene.pods["mirror"] = [self.mirror_pod(ns, scene.node_name)]
        scene.pods["emptydir"] = self.deployment(
            ns, "cache", scene.node_name, 1, grace=grace, pdb_max_unavailable=None, emptydir=True
        )
        scene.pods["bare"] = [self.bare_pod(ns, "debug-shell", scene.node_name, grace=grace)]
        self.wait_running(ns, scene.all_pods())
        self.wait_pdbs(ns)
        return scene

    def wait_running(self, namespace: str, pods: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.core.list_namespaced_pod(namespace).items
            running = {p.metadata.name for p in items if p.status.phase == "Running"}
            if set(pods) <= running:
                return
            time.sleep(0.2)
        raise TimeoutError(f"pods in {namespace} not Running after {timeout} s")

    def wait_pdbs(self, namespace: str, timeout: float = 30) -> None:
        """Until the disruption controller has computed every PDB of the namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pdbs = self.policy.list_namespaced_pod_disruption_budget(namespace).items
            if all(
                (p.status.observed_generation or 0) >= p.metadata.generation and p.status.expected_pods for p in pdbs
            ):
                return
            time.sleep(0.2)
        raise TimeoutError(f"PDBs in {namespace} not observed after {timeout} s")

    def pods_on(self, node_name: str) -> list[Any]:
        return list(self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node_name}").items)


def _pod(
    name: str, node_name: str, labels: dict[str, str], grace: int, owner: dict[str, Any] | None, emptydir: bool = False
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": node_name,
        "terminationGracePeriodSeconds": grace,
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
    }
    if emptydir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
