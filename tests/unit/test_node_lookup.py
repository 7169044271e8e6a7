"""Instance -> node: what is read from a Node object, how it is looked up (one GET by name, then one
narrow LIST by zone and instance type, pages followed), and the instance's cluster tags."""

from __future__ import annotations

from typing import Any

import pytest

from serverless_nth.config import TaintEffect
from serverless_nth.instance import InstanceFacts
from serverless_nth.kube.client import KubePermanentError, NotFound
from serverless_nth.kube.nodes import Node, find_node
from serverless_nth.policy import Taint
from tests.unit.fake_api import FakeApi

INSTANCE = InstanceFacts("i-0123456789abcdef0", "ip-10-0-1-5.ec2.internal", "us-east-1b", "m5.large", "running", "spot")
PROVIDER_ID = "aws:///us-east-1b/i-0123456789abcdef0"
BY_NAME = ("GET", "/api/v1/nodes/ip-10-0-1-5.ec2.internal")
LIST = ("GET", "/api/v1/nodes")


def node_object(name: str = "ip-10-0-1-5.ec2.internal", provider_id: str | None = PROVIDER_ID, **spec: Any) -> dict:  # type: ignore[type-arg]
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "7"},
        "spec": {**({"providerID": provider_id} if provider_id is not None else {}), **spec},
    }


def test_every_field_is_read_from_the_node_object() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    obj = {
        "metadata": {
            "name": "n1",
            "uid": "u1",
            "resourceVersion": "42",
            "labels": {"zone": "b", "count": 3},
            "annotations": {"serverless-nth/cordoned-by": "e1", "n": 1},
        },
        "spec": {"providerID": PROVIDER_ID, "unschedulable": True, "taints": [taint]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "10.0.1.5"},
                {"type": "ExternalIP", "address": "3.3.3.3"},
                {"type": "InternalIP", "address": "10.0.2.5"},
            ]
        },
    }
    assert Node.from_api(obj) == Node(
        name="n1",
        uid="u1",
        resource_version="42",
        provider_id=PROVIDER_ID,
        unschedulable=True,
        taints=(taint,),
        labels={"zone": "b", "count": "3"},
        annotations={"serverless-nth/cordoned-by": "e1", "n": "1"},
    )
    assert Node.from_api(obj).cordoned_by == "e1"


def test_a_bare_node_object_reads_as_empty_fields() -> None:
    node = Node.from_api({"metadata": {"name": "n1"}})
    assert node == Node("n1", "", "", "", False, (), {}, {})
    assert node.cordoned_by == ""
    nulls = Node.from_api(
        {"metadata": {"name": "n1", "labels": None, "annotations": None}, "spec": {"taints": None}, "status": None}
    )
    assert (nulls.labels, nulls.annotations, nulls.taints) == ({}, {}, ())


@pytest.mark.parametrize(
    ("taints", "expected"),
    [
        ([{"key": "serverless-nth/spot-interruption", "effect": "NoSchedule"}], True),
        ([{"key": "serverless-nth/spot-interruption", "effect": "NoExecute"}], False),  # another effect
        ([{"key": "serverless-nth/rebalance", "effect": "NoSchedule"}], False),
        ([{"effect": "NoSchedule"}], False),
        ([], False),
    ],
)
def test_a_taint_is_there_only_with_its_key_and_effect(taints: list[dict[str, str]], expected: bool) -> None:
    node = Node("n", "u", "1", "", False, tuple(taints))
    assert node.has_taint(Taint("serverless-nth/spot-interruption", "terminate", TaintEffect.NO_SCHEDULE)) is expected


def test_the_node_named_after_the_instance_with_its_provider_id_costs_one_get() -> None:
    api = FakeApi({BY_NAME: [node_object()]})
    node = find_node(api, INSTANCE)
    assert node is not None
    assert (node.name, node.uid, node.resource_version) == (
        "ip-10-0-1-5.ec2.internal",
        "uid-ip-10-0-1-5.ec2.internal",
        "7",
    )
    assert [(r.method, r.path, r.query, r.stage) for r in api.sent] == [(*BY_NAME, None, "node-lookup")]


def test_a_node_with_the_name_but_another_instance_is_passed_over_for_the_lookup_by_provider_id() -> None:
    other = node_object(provider_id="aws:///us-east-1b/i-0fffffffffffffff0")
    ours = node_object(name="custom-name")
    api = FakeApi({BY_NAME: [other], LIST: [{"items": [other, ours], "metadata": {}}]})
    node = find_node(api, INSTANCE)
    assert node is not None
    assert node.name == "custom-name"
    assert [(r.path, r.query, r.stage) for r in api.sent] == [
        (BY_NAME[1], None, "node-lookup"),
        (
            "/api/v1/nodes",
            {
                "labelSelector": "topology.kubernetes.io/zone=us-east-1b,node.kubernetes.io/instance-type=m5.large",
                "limit": "500",
            },
            "node-lookup",
        ),
    ]


def test_no_node_of_that_name_means_the_narrow_list_pages_are_followed() -> None:
    ours = node_object(name="custom-name")
    api = FakeApi(
        {
            BY_NAME: [NotFound(404, "not found")],
            LIST: [
                {
                    "items": [node_object(name="a", provider_id="aws:///us-east-1b/i-0aaaaaaaaaaaaaaaa")],
                    "metadata": {"continue": "page2"},
                },
                {"items": [ours]},
            ],
        }
    )
    node = find_node(api, INSTANCE)
    assert node is not None
    assert node.name == "custom-name"
    assert [r.query for r in api.sent[1:]] == [
        {
            "labelSelector": "topology.kubernetes.io/zone=us-east-1b,node.kubernetes.io/instance-type=m5.large",
            "limit": "500",
        },
        {
            "labelSelector": "topology.kubernetes.io/zone=us-east-1b,node.kubernetes.io/instance-type=m5.large",
            "limit": "500",
            "continue": "page2",
        },
    ]
    assert {r.stage for r in api.sent} == {"node-lookup"}


def test_no_node_anywhere_is_none_after_the_last_page() -> None:
    api = FakeApi({BY_NAME: [NotFound(404, "not found")], LIST: [{"items": [node_object(provider_id="")]}]})
    assert find_node(api, INSTANCE) is None
    assert len(api.sent) == 2


def test_an_error_other_than_not_found_is_not_taken_for_a_missing_node() -> None:
    api = FakeApi({BY_NAME: [KubePermanentError(403, "forbidden")]})
    with pytest.raises(KubePermanentError):
        find_node(api, INSTANCE)


def test_an_instance_without_a_private_dns_name_or_facts_is_looked_up_by_what_it_has() -> None:
    bare = InstanceFacts("i-0123456789abcdef0", "", "us-east-1b", "", "running", "spot")
    api = FakeApi({LIST: [{"items": [node_object(name="x")]}]})
    node = find_node(api, bare)
    assert node is not None
    assert node.name == "x"
    assert [(r.path, r.query) for r in api.sent] == [
        ("/api/v1/nodes", {"labelSelector": "topology.kubernetes.io/zone=us-east-1b", "limit": "500"})
    ]


@pytest.mark.parametrize(
    ("tags", "names"),
    [
        ({}, set()),
        ({"kubernetes.io/cluster/prod": "owned", "Name": "x"}, {"prod"}),
        ({"eks:cluster-name": "a", "aws:eks:cluster-name": "b", "eks:eks-cluster-name": "c"}, {"a", "b", "c"}),
        ({"kubernetes.io/cluster/prod": "shared", "eks:cluster-name": "prod"}, {"prod"}),
        ({"other:cluster-name": "x", "kubernetes.io/clusters": "y"}, set()),
    ],
)
def test_the_clusters_an_instance_belongs_to_come_from_its_tags(tags: dict[str, str], names: set[str]) -> None:
    facts = InstanceFacts("i-0123456789abcdef0", "", "us-east-1b", "m5.large", "running", "spot", tags=tags)
    assert facts.cluster_names() == names
    assert facts.provider_id == PROVIDER_ID


def test_a_list_answer_without_items_or_an_item_without_spec_finds_nothing_and_does_not_fail() -> None:
    api = FakeApi(
        {
            BY_NAME: [NotFound(404, "not found")],
            LIST: [{"metadata": {"continue": "more"}}, {"items": [{"metadata": {"name": "half-made"}}]}],
        }
    )
    assert find_node(api, INSTANCE) is None
    assert len(api.sent) == 3
