"""Every setting, read from its environment variable: the documented default when it is unset or
blank, the value when it is set, both ends of its range accepted and one step past them refused,
and a message that names the variable and what it must be."""

from __future__ import annotations

import dataclasses

import pytest

from serverless_nth.config import BlockedPodPolicy, ConfigError, KarpenterNodes, Settings, TaintEffect

TOPIC = "arn:aws:sns:eu-west-1:123456789012:nth-alerts"

# (variable, field, a value other than the default, what it reads as)
EVERY_SETTING = [
    ("DRY_RUN", "dry_run", "true", True),
    ("DRAIN_ON_REBALANCE", "drain_on_rebalance", "true", True),
    ("TAINT_EFFECT", "taint_effect", "PreferNoSchedule", TaintEffect.PREFER_NO_SCHEDULE),
    ("OUT_OF_SERVICE_TAINT", "out_of_service_taint", "false", False),
    ("STATE_CHANGE_DRAIN_SECONDS", "state_change_drain_seconds", "45", 45),
    ("REBALANCE_DRAIN_SECONDS", "rebalance_drain_seconds", "120", 120),
    ("DEADLINE_MARGIN_SECONDS", "deadline_margin_seconds", "9", 9),
    ("EVICTION_CONCURRENCY", "eviction_concurrency", "16", 16),
    ("BLOCKED_POD_POLICY", "blocked_pod_policy", "respect-pdb", BlockedPodPolicy.RESPECT_PDB),
    ("POLL_INTERVAL_SECONDS", "poll_interval_seconds", "2.5", 2.5),
    ("REQUEST_TIMEOUT_SECONDS", "request_timeout_seconds", "4.5", 4.5),
    ("SKIP_WAIT_FOR_DELETE_SECONDS", "skip_wait_for_delete_seconds", "120", 120),
    ("NOTIFICATION_TOPIC_ARN", "notification_topic_arn", TOPIC, TOPIC),
    ("AWS_REGION", "region", "eu-west-1", "eu-west-1"),
    ("KARPENTER_NODES", "karpenter_nodes", "rebalance-only", KarpenterNodes.REBALANCE_ONLY),
    ("EXCLUDE_FROM_LOAD_BALANCERS", "exclude_from_load_balancers", "false", False),
    ("MANAGED_TAG", "managed_tag", "aws-node-termination-handler/managed", "aws-node-termination-handler/managed"),
    ("CRITICAL_POD_PRIORITY", "critical_pod_priority", "1000000000", 1_000_000_000),
    ("CRITICAL_POD_SHARE", "critical_pod_share", "25", 25),
    ("VOLUME_DETACH_SECONDS", "volume_detach_seconds", "90", 90),
    ("IMPAIRED_SECONDS", "impaired_seconds", "300", 300),
    ("DRAIN_ON_IMPAIRED", "drain_on_impaired", "true", True),
    (
        "LONG_DRAIN_START_FUNCTION",
        "long_drain_start_function",
        "stack-LongDrainStart-1A2B",
        "stack-LongDrainStart-1A2B",
    ),
]

# (variable, lowest, highest, one step below, one step above, the kind the message names)
RANGES = [
    ("STATE_CHANGE_DRAIN_SECONDS", "5", "900", "4", "901", "an integer"),
    ("REBALANCE_DRAIN_SECONDS", "5", "900", "4", "901", "an integer"),
    ("DEADLINE_MARGIN_SECONDS", "0", "60", "-1", "61", "an integer"),
    ("EVICTION_CONCURRENCY", "1", "256", "0", "257", "an integer"),
    ("POLL_INTERVAL_SECONDS", "0.05", "10", "0.04", "10.01", "a number"),
    ("REQUEST_TIMEOUT_SECONDS", "1", "60", "0.99", "60.01", "a number"),
    ("SKIP_WAIT_FOR_DELETE_SECONDS", "1", "3600", "0", "3601", "an integer"),
    # up to system-node-critical's priority, the highest a pod has
    ("CRITICAL_POD_PRIORITY", "1", "2000001000", "0", "2000001001", "an integer"),
    ("CRITICAL_POD_SHARE", "0", "90", "-1", "91", "an integer"),
    # one step of a durable function, within its 180 s Timeout
    ("VOLUME_DETACH_SECONDS", "0", "120", "-1", "121", "an integer"),
    ("IMPAIRED_SECONDS", "0", "86400", "-1", "86401", "an integer"),
]


def settings(**env: str) -> Settings:
    return Settings.from_env({"CLUSTER_NAME": "prod", **env})


def test_unset_means_every_documented_default() -> None:
    assert settings() == Settings("prod")
    assert Settings("prod") == Settings(
        cluster_name="prod",
        dry_run=False,
        drain_on_rebalance=False,
        taint_effect=TaintEffect.NO_SCHEDULE,
        out_of_service_taint=True,
        state_change_drain_seconds=90,
        rebalance_drain_seconds=300,
        deadline_margin_seconds=5,
        eviction_concurrency=128,
        blocked_pod_policy=BlockedPodPolicy.DELETE_BEFORE_DEADLINE,
        poll_interval_seconds=1.0,
        request_timeout_seconds=10.0,
        skip_wait_for_delete_seconds=30,
        notification_topic_arn="",
        region="",
        karpenter_nodes=KarpenterNodes.HANDLE_ALL,
        exclude_from_load_balancers=True,
        managed_tag="",
        critical_pod_priority=2_000_000_000,
        critical_pod_share=50,
        volume_detach_seconds=60,
        impaired_seconds=120,
        drain_on_impaired=False,
        long_drain_start_function="",
    )


@pytest.mark.parametrize(("variable", "name", "raw", "value"), EVERY_SETTING, ids=[s[0] for s in EVERY_SETTING])
def test_each_variable_sets_its_setting_and_only_it(variable: str, name: str, raw: str, value: object) -> None:
    read = settings(**{variable: raw})
    assert getattr(read, name) == value
    assert type(getattr(read, name)) is type(value)
    assert dataclasses.replace(read, **{name: getattr(Settings("prod"), name)}) == Settings("prod")


@pytest.mark.parametrize(("variable", "name", "raw", "value"), EVERY_SETTING, ids=[s[0] for s in EVERY_SETTING])
def test_a_blank_value_is_the_default(variable: str, name: str, raw: str, value: object) -> None:
    assert settings(**{variable: "   "}) == Settings("prod")
    assert settings(**{variable: f"  {raw}\t"}) == settings(**{variable: raw})


@pytest.mark.parametrize(("variable", "low", "high", "below", "above", "kind"), RANGES, ids=[r[0] for r in RANGES])
def test_both_ends_of_a_range_are_accepted_and_one_step_past_them_refused(
    variable: str, low: str, high: str, below: str, above: str, kind: str
) -> None:
    name = next(n for v, n, _, _ in EVERY_SETTING if v == variable)
    assert getattr(settings(**{variable: low}), name) == float(low)
    assert getattr(settings(**{variable: high}), name) == float(high)
    parse = float if kind == "a number" else int
    for outside in (below, above):
        with pytest.raises(ConfigError) as caught:
            settings(**{variable: outside})
        assert str(caught.value) == f"{variable} must be between {low} and {high}, got {parse(outside)}"
    with pytest.raises(ConfigError) as caught:
        settings(**{variable: "many"})
    assert str(caught.value) == f"{variable} must be {kind}, got 'many'"


@pytest.mark.parametrize("variable", ["DEADLINE_MARGIN_SECONDS", "EVICTION_CONCURRENCY"])
def test_an_integer_setting_takes_no_fraction(variable: str) -> None:
    with pytest.raises(ConfigError, match=f"{variable} must be an integer, got '2.5'"):
        settings(**{variable: "2.5"})


@pytest.mark.parametrize("raw", ["true", "TRUE", "True", "1", "yes", "YES", "Yes"])
def test_true_is_written_several_ways(raw: str) -> None:
    assert settings(DRY_RUN=raw).dry_run is True
    assert settings(OUT_OF_SERVICE_TAINT="false", DRAIN_ON_REBALANCE=raw).drain_on_rebalance is True


@pytest.mark.parametrize("raw", ["false", "FALSE", "False", "0", "no", "NO", "No"])
def test_false_is_written_several_ways(raw: str) -> None:
    # defaults that are true, so that reading false is visible
    assert settings(OUT_OF_SERVICE_TAINT=raw).out_of_service_taint is False
    assert settings(EXCLUDE_FROM_LOAD_BALANCERS=raw).exclude_from_load_balancers is False


@pytest.mark.parametrize("raw", ["y", "n", "on", "off", "2", "truth"])
def test_anything_else_is_not_a_boolean(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(OUT_OF_SERVICE_TAINT=raw)
    assert str(caught.value) == f"OUT_OF_SERVICE_TAINT must be true or false, got {raw!r}"


def test_an_enumerated_setting_lists_what_it_may_be() -> None:
    with pytest.raises(ConfigError) as caught:
        settings(TAINT_EFFECT="noschedule")  # the values are case-sensitive, as Kubernetes has them
    assert str(caught.value) == "TAINT_EFFECT must be one of NoSchedule, PreferNoSchedule, NoExecute, got 'noschedule'"
    with pytest.raises(ConfigError) as caught:
        settings(BLOCKED_POD_POLICY="delete")
    assert str(caught.value) == ("BLOCKED_POD_POLICY must be one of delete-before-deadline, respect-pdb, got 'delete'")


@pytest.mark.parametrize(
    "topic",
    ["arn:aws:sns:us-east-1:123456789012:a", "arn:aws-us-gov:sns:us-gov-west-1:123456789012:alerts_1-x"],
)
def test_a_notification_topic_is_an_sns_topic_arn(topic: str) -> None:
    assert settings(NOTIFICATION_TOPIC_ARN=topic).notification_topic_arn == topic


@pytest.mark.parametrize(
    "topic",
    [
        "arn:aws:sqs:us-east-1:123456789012:queue",
        "arn:aws:sns:us-east-1:12345678901:short-account",
        "arn:aws:sns:us-east-1:123456789012:",
        "nth-alerts",
    ],
)
def test_anything_else_is_not_a_topic(topic: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(NOTIFICATION_TOPIC_ARN=topic)
    assert str(caught.value) == f"NOTIFICATION_TOPIC_ARN must be an SNS topic ARN, got {topic!r}"


def test_the_region_is_lambdas_aws_region_else_the_default_region() -> None:
    assert settings(AWS_DEFAULT_REGION="eu-west-3").region == "eu-west-3"
    assert settings(AWS_REGION="ap-southeast-2", AWS_DEFAULT_REGION="eu-west-3").region == "ap-southeast-2"
    assert settings(AWS_REGION=" ", AWS_DEFAULT_REGION="us-gov-west-1").region == "us-gov-west-1"
    with pytest.raises(ConfigError) as caught:
        settings(AWS_DEFAULT_REGION="EU-WEST-3")
    assert str(caught.value) == "AWS_REGION must be a region name, got 'EU-WEST-3'"


def test_the_cluster_name_is_trimmed_and_checked() -> None:
    assert settings(CLUSTER_NAME="  prod-eu_1 ").cluster_name == "prod-eu_1"
    assert Settings.from_env({"CLUSTER_NAME": "a" * 100}).cluster_name == "a" * 100
    for wrong in ("a" * 101, "-starts-with-a-dash", ""):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"CLUSTER_NAME": wrong})
        assert str(caught.value) == f"CLUSTER_NAME must be an EKS cluster name, got {wrong!r}"


def test_without_an_argument_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTER_NAME", "from-the-environment")
    monkeypatch.setenv("EVICTION_CONCURRENCY", "7")
    read = Settings.from_env()
    assert (read.cluster_name, read.eviction_concurrency) == ("from-the-environment", 7)
