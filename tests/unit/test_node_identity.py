"""A node is the instance only with proof: its providerID (issue 25, item 6). Its name, and an
InternalIP that matches, are the private DNS name and the address it is made of: both repeat in
other VPCs, so a node without a providerID is reported as unproven and left alone."""

import pytest

from serverless_nth.instance import InstanceFacts
from serverless_nth.kube.client import NotFound
from serverless_nth.kube.nodes import Node, UnprovenNode, find_node
from tests.unit.fake_api import FakeApi

INSTANCE = InstanceFacts("i-0123456789abcdef0", "ip-10-0-1-5.ec2.internal", "us-east-1b", "m5.large", "running", "spot")
NAME = "ip-10-0-1-5.ec2.internal"
BY_NAME = ("GET", f"/api/v1/nodes/{NAME}")
LIST = ("GET", "/api/v1/nodes")


def node_object(provider_id: str = "", name: str = NAME) -> dict:  # type: ignore[type-arg]
    return {
        "metadata": {"name": name, "uid": "uid", "resourceVersion": "1"},
        "spec": {"providerID": provider_id} if provider_id else {},
        # the address the default name is made of: no proof of anything
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.5"}]},
    }


@pytest.mark.parametrize(
    ("provider_id", "is_it"),
    [
        ("aws:///us-east-1b/i-0123456789abcdef0", True),
        ("aws:///us-east-1b/i-0fffffffffffffff0", False),
        ("", False),  # a name (and the address it is made of) proves nothing
    ],
)
def test_a_node_is_the_instance_only_by_its_provider_id(provider_id: str, is_it: bool) -> None:
    assert Node.from_api(node_object(provider_id)).is_instance(INSTANCE) is is_it


def test_a_namesake_without_provider_id_is_reported_unproven_not_taken() -> None:
    api = FakeApi({BY_NAME: [node_object()], LIST: [{"items": [node_object()]}]})
    assert find_node(api, INSTANCE) == UnprovenNode(NAME)


def test_a_node_with_the_instances_provider_id_wins_over_an_unproven_namesake() -> None:
    proven = node_object("aws:///us-east-1b/i-0123456789abcdef0", name="custom-name")
    api = FakeApi({BY_NAME: [node_object()], LIST: [{"items": [node_object(), proven]}]})
    found = find_node(api, INSTANCE)
    assert isinstance(found, Node)
    assert found.name == "custom-name"


def test_no_node_by_name_and_none_by_provider_id_is_not_found() -> None:
    api = FakeApi({BY_NAME: [NotFound(404, "not found")], LIST: [{"items": []}]})
    assert find_node(api, INSTANCE) is None
