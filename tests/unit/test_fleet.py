"""Routing an event to its cluster's Service (fleet.py), the cluster's own settings from its EKS
tags (cluster_settings.py), the deployment's reach in Settings, and the tags' reading order."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest

from serverless_nth import fleet as fleet_module
from serverless_nth.aws.notify import Notifier
from serverless_nth.cluster_settings import for_cluster
from serverless_nth.config import BlockedPodPolicy, ConfigError, KarpenterNodes, Settings
from serverless_nth.events.model import EventKind, InterruptionEvent
from serverless_nth.fleet import CLUSTER_REFRESH_SECONDS, Fleet
from serverless_nth.instance import InstanceFacts

HOME, MEMBER, STRANGER = "123456789012", "210987654321", "999999999999"
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()


class FakeEc2:
    def __init__(self, instances: dict[str, dict[str, str]]) -> None:
        self.instances = instances  # id -> tags
        self.calls = 0

    def describe_instances(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        wanted = kwargs["InstanceIds"]
        found = [
            {
                "InstanceId": i,
                "State": {"Name": "running"},
                "Placement": {"AvailabilityZone": "us-east-1a"},
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            }
            for i, tags in self.instances.items()
            if i in wanted
        ]
        return {"Reservations": [{"Instances": found}] if found else []}


class FakeEks:
    def __init__(self, clusters: dict[str, dict[str, str]]) -> None:
        self.clusters = clusters  # name -> tags
        self.listed = 0
        self.described: list[str] = []

    def list_clusters(self, **kwargs: Any) -> dict[str, Any]:
        self.listed += 1
        return {"clusters": sorted(self.clusters)}

    def describe_cluster(self, name: str) -> dict[str, Any]:
        self.described.append(name)
        return {
            "cluster": {
                "endpoint": f"https://{name}.example",
                "certificateAuthority": {"data": CA},
                "tags": self.clusters[name],
            }
        }


class FakeAccounts:
    """AccountClients' interface over fakes: per account, EC2 and EKS."""

    def __init__(self, accounts: dict[str | None, tuple[FakeEc2, FakeEks]]) -> None:
        self.accounts = accounts
        self.asked: list[tuple[str | None, str]] = []

    def in_account(self, account: str | None, service: str) -> Any:
        self.asked.append((account, service))
        ec2, eks = self.accounts[account]
        return {"ec2": ec2, "eks": eks, "autoscaling": object()}[service]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(instance_id: str, account: str = HOME, kind: EventKind = EventKind.SPOT_INTERRUPTION) -> InterruptionEvent:
    when = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)
    return InterruptionEvent(kind, "e-1", instance_id, "us-east-1", account, when)


def make_fleet(
    env: dict[str, str], home: tuple[FakeEc2, FakeEks], member: tuple[FakeEc2, FakeEks] | None = None
) -> tuple[Fleet, FakeAccounts, Clock]:
    settings = Settings.from_env({"CLUSTER_NAME": "alpha", "AWS_REGION": "us-east-1", **env})
    accounts = FakeAccounts({None: home, MEMBER: member or (FakeEc2({}), FakeEks({}))})
    clock = Clock()
    built = Fleet(settings, accounts, Notifier("", None), clock=clock)  # type: ignore[arg-type]
    return built, accounts, clock


@pytest.fixture
def quiet_sts(monkeypatch: pytest.MonkeyPatch) -> None:
    """EksAccess registers handlers on an STS client; any botocore client will do, no request is sent."""
    import botocore.session

    sts = botocore.session.get_session().create_client("sts", region_name="us-east-1")
    monkeypatch.setattr(fleet_module, "aws_client", lambda service: sts)


def test_a_single_cluster_deployment_routes_without_a_request(quiet_sts: None) -> None:
    ec2, eks = FakeEc2({"i-1": {"eks:eks-cluster-name": "beta"}}), FakeEks({"alpha": {}})
    fleet, _accounts, _ = make_fleet({}, (ec2, eks))
    route = fleet.route(event("i-1"), HOME)
    assert route.service is fleet.home()
    assert route.described is None
    assert (ec2.calls, eks.listed, eks.described) == (0, 0, [])


def test_an_instance_is_routed_to_the_served_cluster_its_tags_name_with_that_clusters_settings(
    quiet_sts: None,
) -> None:
    ec2 = FakeEc2({"i-1": {"eks:eks-cluster-name": "beta", "kubernetes.io/cluster/beta": "owned"}})
    eks = FakeEks({"alpha": {}, "beta": {"serverless-nth/karpenter-nodes": "rebalance-only"}})
    fleet, _, _ = make_fleet({"CLUSTERS": "beta"}, (ec2, eks))
    route = fleet.route(event("i-1"), HOME)
    assert route.service.settings.cluster_name == "beta"
    assert route.service.settings.karpenter_nodes is KarpenterNodes.REBALANCE_ONLY
    assert route.described is not None
    assert route.described.facts is not None
    assert route.described.facts.instance_id == "i-1"
    assert ec2.calls == 1
    assert eks.described == ["beta"]
    # the same instance again: the route is kept, EC2 is not asked to route it
    assert fleet.route(event("i-1"), HOME).service is route.service
    assert ec2.calls == 1


def test_a_cluster_outside_the_set_goes_to_the_stacks_own_service_which_says_so(quiet_sts: None) -> None:
    ec2 = FakeEc2({"i-1": {"eks:cluster-name": "delta"}})
    fleet, _, _ = make_fleet({"CLUSTERS": "beta"}, (ec2, FakeEks({"alpha": {}, "beta": {}, "delta": {}})))
    route = fleet.route(event("i-1"), HOME)
    assert route.service is fleet.home()
    assert route.described is not None
    assert route.described.facts is not None


def test_every_cluster_is_served_with_a_star_but_only_clusters_the_account_has(quiet_sts: None) -> None:
    ec2 = FakeEc2({"i-1": {"eks:cluster-name": "beta"}, "i-2": {"eks:cluster-name": "ghost"}})
    eks = FakeEks({"alpha": {}, "beta": {}})
    fleet, _, clock = make_fleet({"CLUSTERS": "*"}, (ec2, eks))
    assert fleet.route(event("i-1"), HOME).service.settings.cluster_name == "beta"
    assert fleet.route(event("i-2"), HOME).service is fleet.home()
    assert eks.listed == 1  # the miss within a minute of the listing lists nothing again
    clock.now += 61
    fleet.route(event("i-2"), HOME)
    assert eks.listed == 2
    assert fleet.routing_requests() == 2


def test_a_member_accounts_instance_is_read_and_served_through_that_account(quiet_sts: None) -> None:
    home = (FakeEc2({}), FakeEks({"alpha": {}}))
    member = (
        FakeEc2({"i-9": {"aws:eks:cluster-name": "gamma"}}),
        FakeEks({"gamma": {"serverless-nth/dry-run": "true"}}),
    )
    fleet, accounts, _ = make_fleet({"CLUSTERS": "*", "MEMBER_ACCOUNTS": MEMBER}, home, member)
    route = fleet.route(event("i-9", MEMBER), HOME)
    assert route.service.settings.cluster_name == "gamma"
    assert route.service.settings.dry_run
    assert (MEMBER, "ec2") in accounts.asked
    assert (MEMBER, "eks") in accounts.asked
    assert home[0].calls == 0
    assert member[0].calls == 1


def test_an_account_outside_the_deployment_is_not_read(quiet_sts: None) -> None:
    home = (FakeEc2({}), FakeEks({"alpha": {}}))
    fleet, accounts, _ = make_fleet({"MEMBER_ACCOUNTS": MEMBER}, home)
    route = fleet.route(event("i-9", STRANGER), HOME)
    assert route.service is fleet.home()
    assert route.described is None
    assert [a for a in accounts.asked if a[0] == STRANGER] == []
    assert route.service.foreign(event("i-9", STRANGER), HOME)
    assert route.service.foreign(event("i-9", MEMBER), HOME) is None


def test_tags_that_disagree_route_nowhere(quiet_sts: None) -> None:
    ec2 = FakeEc2({"i-1": {"eks:cluster-name": "beta", "eks:eks-cluster-name": "alpha"}})
    fleet, _, _ = make_fleet({"CLUSTERS": "beta"}, (ec2, FakeEks({"alpha": {}, "beta": {}})))
    assert fleet.route(event("i-1"), HOME).service is fleet.home()


def test_an_untagged_instance_is_the_stacks_own_clusters_in_its_own_account_only(quiet_sts: None) -> None:
    home = (FakeEc2({"i-1": {}}), FakeEks({"alpha": {}}))
    member = (FakeEc2({"i-2": {}}), FakeEks({}))
    fleet, _, _ = make_fleet({"MEMBER_ACCOUNTS": MEMBER}, home, member)
    own = fleet.route(event("i-1"), HOME).service
    assert own.settings.cluster_name == "alpha"
    assert own is not fleet.home()
    assert fleet.route(event("i-2", MEMBER), HOME).service is fleet.home()


def test_a_clusters_service_is_built_again_after_the_refresh_time(quiet_sts: None) -> None:
    ec2 = FakeEc2({"i-1": {"eks:cluster-name": "beta"}})
    eks = FakeEks({"alpha": {}, "beta": {}})
    fleet, _, clock = make_fleet({"CLUSTERS": "beta"}, (ec2, eks))
    first = fleet.route(event("i-1"), HOME).service
    eks.clusters["beta"] = {"serverless-nth/drain-on-rebalance": "true"}
    clock.now += CLUSTER_REFRESH_SECONDS - 1
    assert fleet.route(event("i-1"), HOME).service is first
    clock.now += 2
    again = fleet.route(event("i-1"), HOME).service
    assert again is not first
    assert again.settings.drain_on_rebalance
    assert eks.described == ["beta", "beta"]


def test_cluster_tags_override_the_stack_and_a_bad_value_keeps_the_stacks() -> None:
    stack = Settings.from_env({"CLUSTER_NAME": "alpha", "BLOCKED_POD_POLICY": "respect-pdb", "MANAGED_TAG": "nth"})
    tags = {
        "serverless-nth/karpenter-nodes": "rebalance-only",
        "serverless-nth/blocked-pod-policy": "ignore-pdbs-please",
        "serverless-nth/managed-tag": "",
        "serverless-nth/dry-run": "maybe",
        "team": "infra",
    }
    settings, problems = for_cluster(stack, "beta", tags)
    assert settings.cluster_name == "beta"
    assert settings.karpenter_nodes is KarpenterNodes.REBALANCE_ONLY
    assert settings.blocked_pod_policy is BlockedPodPolicy.RESPECT_PDB  # the stack's: the tag was bad
    assert settings.dry_run is False
    assert settings.managed_tag == ""  # an empty tag lifts the managed tag for this cluster
    assert len(problems) == 2
    assert all("ignored, the stack's value stays" in p for p in problems)


def test_every_cluster_takes_the_stacks_hook_name_which_the_rule_matches() -> None:
    """The lifecycle rule matches one hook name (template.yaml): a cluster of its own hook name
    would never see its events, and its actions would wait for their timeout."""
    default = Settings.from_env({"CLUSTER_NAME": "alpha", "LIFECYCLE_HOOK_NAME": "serverless-nth-alpha"})
    tags = {"serverless-nth/lifecycle-hook-name": "mine"}
    assert for_cluster(default, "beta", tags)[0].lifecycle_hook_name == "serverless-nth-alpha"


def test_the_deployments_reach_is_validated_at_init() -> None:
    base = {"CLUSTER_NAME": "alpha"}
    assert Settings.from_env(base).serves_many is False
    assert Settings.from_env({**base, "CLUSTERS": "*"}).clusters is None
    assert Settings.from_env({**base, "CLUSTERS": " beta, gamma "}).clusters == {"beta", "gamma"}
    assert Settings.from_env({**base, "MEMBER_ACCOUNTS": MEMBER}).serves_many
    with pytest.raises(ConfigError, match="MEMBER_ACCOUNTS"):
        Settings.from_env({**base, "MEMBER_ACCOUNTS": "12345"})
    with pytest.raises(ConfigError, match="CLUSTERS"):
        Settings.from_env({**base, "CLUSTERS": "beta,-bad"})
    with pytest.raises(ConfigError, match="ORGANIZATION_ID"):
        Settings.from_env({**base, "ORGANIZATION_ID": "org-1"})
    org = Settings.from_env({**base, "ORGANIZATION_ID": "o-abcdefghij"})
    assert org.accepts_account(STRANGER, HOME)
    assert not Settings.from_env(base).accepts_account(STRANGER, HOME)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"aws:eks:cluster-name": "a", "eks:cluster-name": "a", "kubernetes.io/cluster/b": "owned"}, ("a", ["a"])),
        ({"eks:eks-cluster-name": "a", "eks:cluster-name": "b"}, (None, ["a", "b"])),
        ({"kubernetes.io/cluster/a": "owned"}, ("a", ["a"])),
        ({"kubernetes.io/cluster/a": "owned", "kubernetes.io/cluster/b": "owned"}, (None, ["a", "b"])),
        ({"kubernetes.io/cluster/a": "shared"}, (None, [])),
        ({"Name": "web"}, (None, [])),
    ],
)
def test_the_tags_are_read_in_their_documented_order(
    tags: dict[str, str], expected: tuple[str | None, list[str]]
) -> None:
    facts = InstanceFacts("i-1", "", "us-east-1a", "m5.large", "running", "on-demand", tags)
    assert facts.cluster_of() == expected


def test_the_backstop_looks_in_this_account_and_in_each_listed_member_account(quiet_sts: None) -> None:
    from serverless_nth.instance_status import Backstop

    class StatusEc2(FakeEc2):
        def __init__(self) -> None:
            super().__init__({})
            self.status_calls = 0

        def describe_instance_status(self, **kwargs: Any) -> dict[str, Any]:
            self.status_calls += 1
            return {"InstanceStatuses": []}

    home, member = StatusEc2(), StatusEc2()
    fleet, _, _ = make_fleet({"MEMBER_ACCOUNTS": MEMBER}, (home, FakeEks({})), (member, FakeEks({})))
    summary = Backstop(fleet, starter=None).run(HOME, stop_by=2e9)  # type: ignore[arg-type]
    assert (home.status_calls, member.status_calls) == (3, 3)  # one query per filter, in each account
    assert summary["ec2_requests"] == 6


def test_a_member_account_is_one_role_session_for_its_clients_and_assumes_the_named_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serverless_nth.aws.clients import AccountClients

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    class FakeSts:
        def __init__(self) -> None:
            self.roles: list[str] = []

        def assume_role(self, RoleArn: str, RoleSessionName: str) -> dict[str, Any]:  # noqa: N803 (botocore's names)
            self.roles.append(RoleArn)
            expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
            return {
                "Credentials": {
                    "AccessKeyId": "ASIA0000",
                    "SecretAccessKey": "secret",
                    "SessionToken": "token",
                    "Expiration": expires,
                }
            }

    sts = FakeSts()
    accounts = AccountClients("serverless-nth-member", "us-east-1", sts_client=sts)
    clients = [accounts.in_account(MEMBER, service) for service in ("ec2", "eks", "autoscaling")]
    for client in clients:
        assert client._request_signer._credentials.get_frozen_credentials().access_key == "ASIA0000"
    assert sts.roles == [f"arn:aws:iam::{MEMBER}:role/serverless-nth-member"]
    assert accounts.in_account(MEMBER, "ec2") is clients[0]
    with pytest.raises(ValueError, match="member account"):
        accounts.in_account(MEMBER, "sns")


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [("ThrottlingException", 429, "Temporary"), ("AccessDeniedException", 403, "Permanent")],
)
def test_a_failed_listing_is_typed_by_what_a_retry_can_do(code: str, status: int, error: str) -> None:
    from botocore.exceptions import ClientError

    from serverless_nth.aws.eks import ClusterDirectory
    from serverless_nth.errors import PermanentError, TemporaryError

    class Refusing:
        def list_clusters(self, **kwargs: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "ListClusters")

    expected = TemporaryError if error == "Temporary" else PermanentError
    with pytest.raises(expected, match=f"ListClusters: {code}") as raised:
        ClusterDirectory(Refusing()).has("beta")
    assert raised.value.stage == "list-clusters"


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("eu-isoe-west-1", "aws-iso-e"),
        ("", "aws"),
    ],
)
def test_the_member_role_is_named_in_the_regions_partition_as_botocore_knows_it(region: str, partition: str) -> None:
    from serverless_nth.aws.clients import AccountClients

    assert AccountClients("serverless-nth-member", region).role_arn(MEMBER) == (
        f"arn:{partition}:iam::{MEMBER}:role/serverless-nth-member"
    )
