"""`make demo`'s two clusters: the route line a block of the second cluster (or of a cluster not
served) prints, from the function's result and log, is the one README.md and docs/local-eks.md show;
and every invocation is of the same deployment, which serves both clusters."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from localeks import demo
from localeks.cluster import ACCOUNT_ID
from localeks.invoke import Invocation

REPO = Path(__file__).resolve().parents[2]
ENV = {"CLUSTER_NAME": "local-eks"}
NOT_SERVED = "the instance belongs to another-cluster, which this deployment does not serve"


class FakeEc2:
    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def describe_instances(self, InstanceIds: list[str]) -> dict[str, Any]:  # noqa: N803 (boto3's spelling)
        tags = [{"Key": k, "Value": v} for k, v in self.tags.items()]
        return {"Reservations": [{"Instances": [{"InstanceId": InstanceIds[0], "Tags": tags}]}]}


class FakeScenes:
    def __init__(self, cluster: str) -> None:
        self.ec2 = FakeEc2({f"kubernetes.io/cluster/{cluster}": "owned", "eks:eks-cluster-name": cluster})


def log_line(message: str) -> str:
    return json.dumps({"level": "INFO", "message": message, "service": "serverless-nth"})


def route(cluster: str, result: dict[str, Any], output: str = "", account: str = ACCOUNT_ID) -> str:
    invocation = Invocation(0, result, output)
    return demo._route(ENV, {"account": account}, invocation, FakeScenes(cluster), "i-0123")  # type: ignore[arg-type]


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = re.search(r"^#{1,3} ", text[start + len(heading) :], re.MULTILINE)
    return text[start : start + len(heading) + following.start()] if following else text[start:]


def test_every_invocation_serves_both_clusters_from_one_deployment() -> None:
    assert demo.SECOND.name == "beta"
    assert demo.PARAMS["Clusters"] == demo.SECOND.name
    assert ("MemberAccounts" in demo.PARAMS) == (demo.SECOND.account != ACCOUNT_ID)


def test_the_route_lines_are_those_the_readme_and_the_local_eks_page_show() -> None:
    served = route("beta", {"outcome": "drained", "cluster": "beta"})
    not_served = route(
        "another-cluster",
        {"outcome": "not-this-cluster", "cluster": "local-eks"},
        log_line("a line before") + "\nnot json\n" + log_line(f"nothing to do: {NOT_SERVED}"),
    )
    assert served == "routed: the instance's tags name beta -> cluster beta (served: local-eks, beta)"
    assert not_served == (
        "routed: the instance's tags name another-cluster -> none of the clusters served (local-eks, beta): "
        + NOT_SERVED
    )
    readme = section((REPO / "README.md").read_text(), "## What the demo prints")
    local_eks = section((REPO / "docs" / "local-eks.md").read_text(), "**`make demo` runs two clusters.**")
    for text in (readme, local_eks):
        assert f"   {served}\n" in text
        assert f"   {not_served}\n" in text
        assert "== Spot interruption, a node of the second cluster, beta  [SpotInterruptionFunction" in text
        assert "== Spot interruption, an instance of a cluster this deployment does not serve  [" in text
    assert "== Rebalance recommendation, a node of the second cluster, beta  [" in local_eks


def test_a_member_accounts_event_says_its_account() -> None:
    line = route("beta", {"outcome": "cordoned", "cluster": "beta"}, account="210987654321")
    assert line.startswith("routed: event of account 210987654321, the instance's tags name beta -> cluster beta")
