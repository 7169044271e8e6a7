"""A node is the instance only with proof: its providerID, or, without one, its InternalIP."""

import pytest

from serverless_nth.instance import InstanceFacts
from serverless_nth.kube.nodes import Node

INSTANCE = InstanceFacts(
    "i-0123456789abcdef0", "ip-10-0-1-5.ec2.internal", "us-east-1b", "m5.large", "running", "spot", "10.0.1.5"
)


def node(provider_id: str = "", internal_ips: tuple[str, ...] = ()) -> Node:
    return Node("ip-10-0-1-5.ec2.internal", "uid", "1", provider_id, False, (), internal_ips)


@pytest.mark.parametrize(
    ("candidate", "is_it"),
    [
        (node("aws:///us-east-1b/i-0123456789abcdef0"), True),
        (node("aws:///us-east-1b/i-0fffffffffffffff0", ("10.0.1.5",)), False),  # the IP does not outweigh it
        (node("", ("10.0.1.5",)), True),  # no providerID yet: the InternalIP proves it
        (node("", ("10.0.9.9",)), False),  # the same name in another VPC
        (node(""), False),  # a name alone proves nothing
    ],
)
def test_a_node_is_the_instance_only_with_proof(candidate: Node, is_it: bool) -> None:
    assert candidate.is_instance(INSTANCE) is is_it


def test_an_instance_without_a_private_ip_matches_no_node_without_provider_id() -> None:
    no_ip = InstanceFacts(INSTANCE.instance_id, INSTANCE.private_dns_name, "us-east-1b", "m5.large", "running", "spot")
    assert not node("", ("",)).is_instance(no_ip)


def test_internal_ips_are_read_from_the_node_status() -> None:
    obj = {
        "metadata": {"name": "n", "uid": "u", "resourceVersion": "1"},
        "spec": {},
        "status": {"addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "10.0.1.5"}]},
    }
    assert Node.from_api(obj).internal_ips == ("10.0.1.5",)
