"""A cluster's own settings: the stack's, overridden by tags on the EKS cluster (pure).

A tag with a value the stack parameter would refuse is not applied: the cluster keeps the stack's
value for that setting, and the problem is returned for a log line and a metric (``fleet.py``);
one cluster's bad tag never stops the events of another, nor the rest of its own settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from serverless_nth.config import ConfigError, Settings

TAG_PREFIX = "serverless-nth/"
# tag on the EKS cluster -> (the setting, the environment variable whose rules validate it)
CLUSTER_TAGS: dict[str, tuple[str, str]] = {
    f"{TAG_PREFIX}karpenter-nodes": ("karpenter_nodes", "KARPENTER_NODES"),
    f"{TAG_PREFIX}drain-on-rebalance": ("drain_on_rebalance", "DRAIN_ON_REBALANCE"),
    f"{TAG_PREFIX}blocked-pod-policy": ("blocked_pod_policy", "BLOCKED_POD_POLICY"),
    f"{TAG_PREFIX}managed-tag": ("managed_tag", "MANAGED_TAG"),
    f"{TAG_PREFIX}dry-run": ("dry_run", "DRY_RUN"),
}
# Not per cluster: the lifecycle hook's name (the stack's rule matches that one name, so every
# cluster's groups take it: docs/multi-cluster.md), and everything else the stack sets.


def for_cluster(stack: Settings, cluster: str, tags: Mapping[str, str]) -> tuple[Settings, list[str]]:
    """``stack``'s settings for ``cluster``, with its tags applied; and what was wrong with them."""
    settings = dataclasses.replace(stack, cluster_name=cluster)
    problems = []
    for tag, (field, variable) in CLUSTER_TAGS.items():
        if tag not in tags:
            continue
        # the value is read by the same rules as the stack parameter it overrides
        env = {"CLUSTER_NAME": cluster, variable: tags[tag]}
        try:
            value = getattr(Settings.from_env(env), field)
        except ConfigError as exc:
            problems.append(f"tag {tag}={tags[tag]!r} ignored, the stack's value stays: {exc}")
            continue
        if field == "managed_tag" and not tags[tag].strip():
            value = ""  # an empty tag value lifts the stack's managed tag for this cluster
        settings = dataclasses.replace(settings, **{field: value})
    return settings, problems
