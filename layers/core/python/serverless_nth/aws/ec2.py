"""EC2 DescribeInstances -> the facts the node lookup and the cluster check need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from serverless_nth.errors import PermanentError, TemporaryError

_NOT_FOUND = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}
_THROTTLED = {"RequestLimitExceeded", "Throttling", "ThrottlingException", "InternalError", "Unavailable"}
CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"
CLUSTER_NAME_TAGS = ("eks:cluster-name", "aws:eks:cluster-name")


@dataclass(frozen=True)
class InstanceFacts:
    instance_id: str
    private_dns_name: str
    availability_zone: str
    instance_type: str
    state: str
    lifecycle: str  # "spot", "scheduled", "capacity-block" or "on-demand"
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def provider_id(self) -> str:
        return f"aws:///{self.availability_zone}/{self.instance_id}"

    def cluster_names(self) -> set[str]:
        """The EKS clusters that the instance's tags name (empty when the tags name none)."""
        names = {k[len(CLUSTER_TAG_PREFIX) :] for k in self.tags if k.startswith(CLUSTER_TAG_PREFIX)}
        names.update(v for k, v in self.tags.items() if k in CLUSTER_NAME_TAGS)
        return names


class Ec2Instances:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests_sent = 0

    def describe(self, instance_id: str) -> InstanceFacts | None:
        """The instance's facts, or None when EC2 does not know the instance."""
        self.requests_sent += 1
        try:
            reply = self._client.describe_instances(InstanceIds=[instance_id])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _NOT_FOUND:
                return None
            if code in _THROTTLED:
                raise TemporaryError(f"DescribeInstances: {code}", stage="describe-instance") from exc
            raise PermanentError(f"DescribeInstances: {code}: {exc}", stage="describe-instance") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"DescribeInstances: {exc}", stage="describe-instance") from exc
        for reservation in reply.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance.get("InstanceId") == instance_id:
                    return InstanceFacts(
                        instance_id=instance_id,
                        private_dns_name=instance.get("PrivateDnsName", ""),
                        availability_zone=instance.get("Placement", {}).get("AvailabilityZone", ""),
                        instance_type=instance.get("InstanceType", ""),
                        state=instance.get("State", {}).get("Name", ""),
                        lifecycle=instance.get("InstanceLifecycle", "on-demand"),
                        tags={t["Key"]: t.get("Value", "") for t in instance.get("Tags", [])},
                    )
        return None
