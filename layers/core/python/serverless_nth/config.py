"""Environment variables -> one validated, typed settings object, built once at init.

A wrong value raises ConfigError while the function initialises, so a bad deployment fails on its
first event with a clear message instead of in the middle of a drain.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TypeVar

E = TypeVar("E", bound=Enum)


class ConfigError(ValueError):
    """An environment variable is missing or has a value the handler cannot use."""


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class BlockedPodPolicy(StrEnum):
    """What to do with a pod that a PodDisruptionBudget still protects when the instance's end is
    certain and only its grace period is left before the deadline."""

    # Delete the pod (graceful, with the time that is left): it would die with the instance anyway,
    # and this way it still gets SIGTERM and its preStop hook. The PDB is overridden; logged and counted.
    DELETE_BEFORE_DEADLINE = "delete-before-deadline"
    # Keep asking the Eviction API until the deadline; the pod dies with the instance if still blocked.
    RESPECT_PDB = "respect-pdb"


class KarpenterNodes(StrEnum):
    """What this product does on nodes Karpenter manages (label karpenter.sh/nodepool)."""

    # Every event, as on any node. Safe whether or not Karpenter's interruption queue is set up:
    # both sides cordon and evict idempotently through the Eviction API.
    HANDLE_ALL = "handle-all"
    # Only rebalance recommendations, which Karpenter treats as information only; Spot and capacity
    # reservation interruptions and state changes are left to Karpenter's interruption queue.
    REBALANCE_ONLY = "rebalance-only"


# the highest priority a pod can have (the system-node-critical class's)
SYSTEM_NODE_CRITICAL_PRIORITY = 2_000_001_000


class UnfinishedDrainResult(StrEnum):
    """How a lifecycle action whose drain could not finish is completed."""

    # CONTINUE, unless the group retains abandoned instances (its InstanceLifecyclePolicy's
    # TerminateHookAbandon is retain): then ABANDON, so the group keeps the instance for inspection
    AUTO = "auto"
    CONTINUE = "CONTINUE"
    ABANDON = "ABANDON"


_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class Settings:
    cluster_name: str
    dry_run: bool = False
    drain_on_rebalance: bool = False
    taint_effect: TaintEffect = TaintEffect.NO_SCHEDULE
    # node.kubernetes.io/out-of-service on stopped/terminated instances, so that Kubernetes
    # force-deletes their pods and detaches their volumes instead of waiting ~6 minutes.
    out_of_service_taint: bool = True
    # deadline of a drain for stopping / shutting-down, counted from the event's time
    state_change_drain_seconds: int = 90
    # deadline of a drain after a rebalance recommendation (only when drain_on_rebalance)
    rebalance_drain_seconds: int = 300
    # the drain stops this long before the deadline, so that a pod's grace period ends in time
    deadline_margin_seconds: int = 5
    # evictions in flight at once; 128 covers a full node (EKS allows 110 pods on most instance
    # types) in one wave, so a slow answer (a PDB conflict) does not hold back other pods
    eviction_concurrency: int = 128
    blocked_pod_policy: BlockedPodPolicy = BlockedPodPolicy.DELETE_BEFORE_DEADLINE
    # how often the drain checks whether evicted pods are gone
    poll_interval_seconds: float = 1.0
    request_timeout_seconds: float = 10.0
    # a pod whose deletion should have ended this long ago (a finalizer or a lost kubelet holds it)
    # is not waited for: kubectl drain's --skip-wait-for-delete-timeout
    skip_wait_for_delete_seconds: int = 30
    # SNS topic for one notification per handled event; empty: none
    notification_topic_arn: str = ""
    # the function's own region (Lambda sets AWS_REGION): events of other regions are not ours
    region: str = ""
    karpenter_nodes: KarpenterNodes = KarpenterNodes.HANDLE_ALL
    # node.kubernetes.io/exclude-from-external-load-balancers with the cordon, so that load
    # balancers deregister the node's targets while its pods still drain
    exclude_from_load_balancers: bool = True
    # only instances carrying this tag key are handled (aws-node-termination-handler's managed tag,
    # check-tag-before-draining); empty: every instance of the cluster
    managed_tag: str = ""
    # an AWS Health scheduled change drains this long before its window starts (cordoned at once)
    scheduled_change_lead_seconds: int = 3600
    # the Auto Scaling lifecycle hook this stack completes; others are not ours (empty: none)
    lifecycle_hook_name: str = ""
    # pods at or above this priority (and the system-*-critical classes) are critical: drained
    # after the others. The kubelet's graceful node shutdown takes scheduling.SystemCriticalPriority.
    critical_pod_priority: int = 2_000_000_000
    # the most of the time left before a certain end that is kept for the critical pods' grace
    # periods, in percent (the rest is the ordinary pods'), as the kubelet keeps
    # shutdownGracePeriodCriticalPods of its shutdownGracePeriod
    critical_pod_share: int = 50
    # before a lifecycle action is completed or a Capacity Block's instances terminate, wait at most
    # this long for the node's VolumeAttachments to go (one step of a durable function: within its
    # 180 s Timeout); 0: only tell what is still attached
    volume_detach_seconds: int = 60

    unfinished_drain_result: UnfinishedDrainResult = UnfinishedDrainResult.AUTO
    # the instance-status backstop: a status check failed this long (from its ImpairedSince) makes
    # the instance impaired (Karpenter's threshold); its node is drained too only when asked
    impaired_seconds: int = 120
    drain_on_impaired: bool = False
    # the backstop hands scheduled events to this function, the long-drain starter (empty: none)
    long_drain_start_function: str = ""
    # the deployment's reach (docs/multi-cluster.md): more clusters served besides cluster_name, by
    # name (None: every cluster of every account of the deployment); other accounts whose events are
    # handled (or any account of organization_id), through the role member_role_name in each
    clusters: frozenset[str] | None = frozenset()
    member_accounts: frozenset[str] = frozenset()
    organization_id: str = ""
    member_role_name: str = "serverless-nth-member"

    @property
    def serves_many(self) -> bool:
        """More than cluster_name in this account: events are routed by the instance's tags."""
        return self.clusters != frozenset() or bool(self.member_accounts) or bool(self.organization_id)

    @property
    def many_accounts(self) -> bool:
        """Events of other accounts than the function's own: metrics carry the dimension ``account``."""
        return bool(self.member_accounts) or bool(self.organization_id)

    def serves(self, cluster: str) -> bool:
        return cluster == self.cluster_name or self.clusters is None or cluster in self.clusters

    def accepts_account(self, account: str, home: str) -> bool:
        """An account of this deployment: its own, a member, or any (the organization's bus policy
        decides who may send)."""
        return account == home or account in self.member_accounts or bool(self.organization_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        name = env.get("CLUSTER_NAME", "").strip()
        if not _CLUSTER_NAME.match(name):
            raise ConfigError(f"CLUSTER_NAME must be an EKS cluster name, got {name!r}")
        return cls(
            cluster_name=name,
            dry_run=_bool(env, "DRY_RUN", cls.dry_run),
            drain_on_rebalance=_bool(env, "DRAIN_ON_REBALANCE", cls.drain_on_rebalance),
            taint_effect=_enum(env, "TAINT_EFFECT", TaintEffect, cls.taint_effect),
            out_of_service_taint=_bool(env, "OUT_OF_SERVICE_TAINT", cls.out_of_service_taint),
            state_change_drain_seconds=_int(env, "STATE_CHANGE_DRAIN_SECONDS", cls.state_change_drain_seconds, 5, 900),
            rebalance_drain_seconds=_int(env, "REBALANCE_DRAIN_SECONDS", cls.rebalance_drain_seconds, 5, 900),
            deadline_margin_seconds=_int(env, "DEADLINE_MARGIN_SECONDS", cls.deadline_margin_seconds, 0, 60),
            eviction_concurrency=_int(env, "EVICTION_CONCURRENCY", cls.eviction_concurrency, 1, 256),
            blocked_pod_policy=_enum(env, "BLOCKED_POD_POLICY", BlockedPodPolicy, cls.blocked_pod_policy),
            poll_interval_seconds=_float(env, "POLL_INTERVAL_SECONDS", cls.poll_interval_seconds, 0.05, 10),
            request_timeout_seconds=_float(env, "REQUEST_TIMEOUT_SECONDS", cls.request_timeout_seconds, 1, 60),
            skip_wait_for_delete_seconds=_int(
                env, "SKIP_WAIT_FOR_DELETE_SECONDS", cls.skip_wait_for_delete_seconds, 1, 3600
            ),
            notification_topic_arn=_optional(env, "NOTIFICATION_TOPIC_ARN", _SNS_TOPIC_ARN, "an SNS topic ARN"),
            region=_region(env),
            karpenter_nodes=_enum(env, "KARPENTER_NODES", KarpenterNodes, cls.karpenter_nodes),
            exclude_from_load_balancers=_bool(env, "EXCLUDE_FROM_LOAD_BALANCERS", cls.exclude_from_load_balancers),
            managed_tag=_optional(env, "MANAGED_TAG", _TAG_KEY, "an EC2 tag key"),
            scheduled_change_lead_seconds=_int(
                env, "SCHEDULED_CHANGE_LEAD_SECONDS", cls.scheduled_change_lead_seconds, 0, 7 * 86400
            ),
            lifecycle_hook_name=_optional(env, "LIFECYCLE_HOOK_NAME", _HOOK_NAME, "a lifecycle hook name"),
            critical_pod_priority=_int(
                env, "CRITICAL_POD_PRIORITY", cls.critical_pod_priority, 1, SYSTEM_NODE_CRITICAL_PRIORITY
            ),
            critical_pod_share=_int(env, "CRITICAL_POD_SHARE", cls.critical_pod_share, 0, 90),
            volume_detach_seconds=_int(env, "VOLUME_DETACH_SECONDS", cls.volume_detach_seconds, 0, 120),
            unfinished_drain_result=_enum(
                env, "UNFINISHED_DRAIN_RESULT", UnfinishedDrainResult, cls.unfinished_drain_result
            ),
            impaired_seconds=_int(env, "IMPAIRED_SECONDS", cls.impaired_seconds, 0, 86400),
            drain_on_impaired=_bool(env, "DRAIN_ON_IMPAIRED", cls.drain_on_impaired),
            long_drain_start_function=_optional(
                env, "LONG_DRAIN_START_FUNCTION", _FUNCTION_NAME, "a Lambda function name"
            ),
            clusters=_clusters(env),
            member_accounts=frozenset(_listed(env, "MEMBER_ACCOUNTS", _ACCOUNT, "12-digit AWS account IDs")),
            organization_id=_optional(env, "ORGANIZATION_ID", _ORGANIZATION, "an AWS Organizations ID (o-...)"),
            member_role_name=_optional(env, "MEMBER_ROLE_NAME", _ROLE_NAME, "an IAM role name") or cls.member_role_name,
        )


_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$")


_ACCOUNT = re.compile(r"^[0-9]{12}$")
_ORGANIZATION = re.compile(r"^o-[a-z0-9]{10,32}$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


def _listed(env: Mapping[str, str], key: str, pattern: re.Pattern[str], what: str) -> list[str]:
    """A comma-separated list (empty: none), each item a whole match of ``pattern``."""
    items = [item.strip() for item in (_raw(env, key) or "").split(",") if item.strip()]
    bad = [item for item in items if not pattern.match(item)]
    if bad:
        raise ConfigError(f"{key} must list {what}, comma-separated; not {', '.join(map(repr, bad))}")
    return items


def _clusters(env: Mapping[str, str]) -> frozenset[str] | None:
    """CLUSTERS: empty (only CLUSTER_NAME), * (every cluster of the deployment's accounts), or names."""
    if (_raw(env, "CLUSTERS") or "") == "*":
        return None
    return frozenset(_listed(env, "CLUSTERS", _CLUSTER_NAME, "EKS cluster names, or be *"))


_HOOK_NAME = re.compile(r"^[A-Za-z0-9\-_/]{1,255}$")
_TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")


def _optional(env: Mapping[str, str], key: str, pattern: re.Pattern[str], what: str) -> str:
    """An optional string setting: empty, or a whole match of ``pattern``."""
    value = _raw(env, key) or ""
    if value and not pattern.match(value):
        raise ConfigError(f"{key} must be {what}, got {value!r}")
    return value


_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")


def _region(env: Mapping[str, str]) -> str:
    value = _raw(env, "AWS_REGION") or _raw(env, "AWS_DEFAULT_REGION") or ""
    if value and not _REGION.match(value):
        raise ConfigError(f"AWS_REGION must be a region name, got {value!r}")
    return value


def _raw(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(key)
    return None if value is None or value.strip() == "" else value.strip()


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    value = _raw(env, key)
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    return int(_number(env, key, default, low, high, int, "an integer"))


def _float(env: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    return _number(env, key, default, low, high, float, "a number")


def _number(
    env: Mapping[str, str], key: str, default: float, low: float, high: float, parse: type[float] | type[int], kind: str
) -> float:
    value = _raw(env, key)
    if value is None:
        return default
    try:
        number = parse(value)
    except ValueError:
        raise ConfigError(f"{key} must be {kind}, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{key} must be between {low} and {high}, got {number}")
    return number


def _enum(env: Mapping[str, str], key: str, kind: type[E], default: E) -> E:
    value = _raw(env, key)
    if value is None:
        return default
    for member in kind:
        if member.value == value:
            return member
    allowed = ", ".join(str(m.value) for m in kind)
    raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")


_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class StarterSettings:
    """The long-drain starter's: the durable functions it starts, by the environment variable that
    names each (long_drain_start.ROUTES says which events go to which)."""

    cluster_name: str
    # environment variable (LIFECYCLE_ACTION_FUNCTION, ...) -> the durable function's name
    targets: Mapping[str, str]
    many_accounts: bool = False  # Settings.many_accounts

    @classmethod
    def from_env(cls, keys: Iterable[str], environ: Mapping[str, str] | None = None) -> StarterSettings:
        env = os.environ if environ is None else environ
        targets = {}
        for key in sorted(set(keys)):
            name = env.get(key, "").strip()
            if not _FUNCTION_NAME.match(name):
                raise ConfigError(f"{key} must be the name of a Lambda function, got {name!r}")
            targets[key] = name
        settings = Settings.from_env(env)
        return cls(cluster_name=settings.cluster_name, targets=targets, many_accounts=settings.many_accounts)
