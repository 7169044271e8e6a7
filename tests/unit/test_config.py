import pytest

from serverless_nth.config import BlockedPodPolicy, ConfigError, KarpenterNodes, Settings, TaintEffect


def test_defaults_are_the_safe_ones() -> None:
    s = Settings.from_env({"CLUSTER_NAME": "prod-eu"})
    assert s.cluster_name == "prod-eu"
    assert s.dry_run is False
    assert s.drain_on_rebalance is False
    assert s.taint_effect is TaintEffect.NO_SCHEDULE
    assert s.blocked_pod_policy is BlockedPodPolicy.DELETE_BEFORE_DEADLINE
    assert 1 <= s.eviction_concurrency <= 256
    assert s.karpenter_nodes is KarpenterNodes.HANDLE_ALL
    assert s.exclude_from_load_balancers is True
    assert s.managed_tag == ""
    assert s.skip_wait_for_delete_seconds == 30


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "CLUSTER_NAME": "c1",
            "DRY_RUN": "true",
            "DRAIN_ON_REBALANCE": "1",
            "TAINT_EFFECT": "NoExecute",
            "EVICTION_CONCURRENCY": "8",
            "BLOCKED_POD_POLICY": "respect-pdb",
            "POLL_INTERVAL_SECONDS": "0.5",
        }
    )
    assert (s.dry_run, s.drain_on_rebalance, s.taint_effect) == (True, True, TaintEffect.NO_EXECUTE)
    assert s.eviction_concurrency == 8
    assert s.blocked_pod_policy is BlockedPodPolicy.RESPECT_PDB
    assert s.poll_interval_seconds == 0.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "CLUSTER_NAME"),
        ({"CLUSTER_NAME": "has space"}, "CLUSTER_NAME"),
        ({"CLUSTER_NAME": "c", "DRY_RUN": "maybe"}, "DRY_RUN must be true or false"),
        ({"CLUSTER_NAME": "c", "TAINT_EFFECT": "NoRun"}, "TAINT_EFFECT must be one of"),
        ({"CLUSTER_NAME": "c", "EVICTION_CONCURRENCY": "0"}, "between 1 and 256"),
        ({"CLUSTER_NAME": "c", "EVICTION_CONCURRENCY": "ten"}, "must be an integer"),
        ({"CLUSTER_NAME": "c", "STATE_CHANGE_DRAIN_SECONDS": "3600"}, "between 5 and 900"),
        ({"CLUSTER_NAME": "c", "BLOCKED_POD_POLICY": "yolo"}, "BLOCKED_POD_POLICY"),
        ({"CLUSTER_NAME": "c", "KARPENTER_NODES": "some"}, "KARPENTER_NODES must be one of"),
        ({"CLUSTER_NAME": "c", "EXCLUDE_FROM_LOAD_BALANCERS": "perhaps"}, "EXCLUDE_FROM_LOAD_BALANCERS"),
        ({"CLUSTER_NAME": "c", "MANAGED_TAG": "x" * 129}, "MANAGED_TAG must be an EC2 tag key"),
        ({"CLUSTER_NAME": "c", "MANAGED_TAG": "a,b"}, "MANAGED_TAG must be an EC2 tag key"),
        ({"CLUSTER_NAME": "c", "SKIP_WAIT_FOR_DELETE_SECONDS": "0"}, "between 1 and 3600"),
        ({"CLUSTER_NAME": "c", "AWS_REGION": "moon"}, "AWS_REGION must be a region name"),
    ],
)
def test_wrong_values_fail_loudly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
