"""EC2 DescribeInstances -> the facts the node lookup and the cluster check need; and the
instance-status backstop's DescribeInstanceStatus queries."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from serverless_nth.errors import PermanentError, TemporaryError
from serverless_nth.instance import InstanceFacts

_NOT_FOUND = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}
_NO_RESERVATION = {"InvalidCapacityReservationId.NotFound", "InvalidCapacityReservationId.Malformed"}
# DescribeInstanceStatus "Filters": filters of different names are ANDed, so what the backstop looks
# for (a failed instance check, a failed system check, a scheduled event) takes one query each, as
# in Karpenter's instancestatus provider. Each answers only the instances that match, account-wide
# in this region: no tag filter exists for this call (the model's filter list has none).
STATUS_QUERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("instance-status.status", ("impaired",)),
    ("system-status.status", ("impaired",)),
    ("event.code", ("instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop")),
)
# The instances found are described this many a call, by the instance-id filter: as a filter an
# unknown (long terminated) ID is no error, as InstanceIds it fails the whole call with
# InvalidInstanceID.NotFound. botocore's model states no limit on a filter's values; 100 is the
# limit DescribeInstanceStatus itself states for InstanceIds ("Maximum 100 explicitly specified").
_IDS_PER_CALL = 100
_THROTTLED = {"RequestLimitExceeded", "Throttling", "ThrottlingException", "InternalError", "Unavailable"}


class Ec2Instances:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests_sent = 0

    def describe(self, instance_id: str) -> InstanceFacts | None:
        """The instance's facts, or None when EC2 does not know the instance."""
        reply = self._describe_instances(InstanceIds=[instance_id])
        return _facts(reply or {}).get(instance_id)

    def describe_many(self, instance_ids: list[str]) -> dict[str, InstanceFacts]:
        """The facts of every instance EC2 knows among ``instance_ids`` (one call per 100)."""
        found: dict[str, InstanceFacts] = {}
        for start in range(0, len(instance_ids), _IDS_PER_CALL):
            token = ""
            while True:
                request: dict[str, Any] = {
                    "Filters": [{"Name": "instance-id", "Values": instance_ids[start : start + _IDS_PER_CALL]}],
                    "MaxResults": 1000,
                }
                if token:
                    request["NextToken"] = token
                reply = self._describe_instances(**request) or {}
                found.update(_facts(reply))
                token = reply.get("NextToken") or ""
                if not token:
                    break
        return found

    def statuses(self) -> list[dict[str, Any]]:
        """Every running instance of the account in this region with a status check impaired or a
        scheduled event (``STATUS_QUERIES``, every page of 1,000), each once."""
        found: dict[str, dict[str, Any]] = {}
        for name, values in STATUS_QUERIES:
            token = ""
            while True:
                request: dict[str, Any] = {"Filters": [{"Name": name, "Values": list(values)}], "MaxResults": 1000}
                if token:
                    request["NextToken"] = token
                reply = self._describe_instance_status(request)
                for status in reply.get("InstanceStatuses", []):
                    found.setdefault(str(status.get("InstanceId", "")), status)
                token = reply.get("NextToken") or ""
                if not token:
                    break
        return list(found.values())

    def in_reservation(self, reservation_id: str) -> list[str]:
        """The IDs of the instances launched into a Capacity Reservation, in every state EC2 still
        shows (DescribeInstances, filter ``capacity-reservation-id``, every page)."""
        found: list[str] = []
        token = ""
        while True:
            request: dict[str, Any] = {
                "Filters": [{"Name": "capacity-reservation-id", "Values": [reservation_id]}],
                "MaxResults": 1000,
            }
            if token:
                request["NextToken"] = token
            reply = self._describe_instances(**request) or {}
            for reservation in reply.get("Reservations", []):
                found += [i["InstanceId"] for i in reservation.get("Instances", []) if i.get("InstanceId")]
            token = reply.get("NextToken") or ""
            if not token:
                return list(dict.fromkeys(found))

    def reservation_end(self, reservation_id: str) -> datetime.datetime | None:
        """The Capacity Reservation's end as EC2 says now (a Capacity Block extension moves it), or
        None when EC2 does not know the reservation or gives it no end."""
        reply = self._call(
            "DescribeCapacityReservations",
            _NO_RESERVATION,
            lambda: self._client.describe_capacity_reservations(CapacityReservationIds=[reservation_id]),
        )
        if reply is None:
            return None
        for reservation in reply.get("CapacityReservations", []):
            end = reservation.get("EndDate")
            if reservation.get("CapacityReservationId") == reservation_id and isinstance(end, datetime.datetime):
                return end.astimezone(datetime.UTC)
        return None

    def _describe_instance_status(self, request: dict[str, Any]) -> dict[str, Any]:
        def send() -> Any:
            return self._client.describe_instance_status(**request)

        return self._call("DescribeInstanceStatus", set(), send) or {}

    def _describe_instances(self, **request: Any) -> dict[str, Any] | None:
        """One DescribeInstances call; None when EC2 does not know the instance asked for."""
        return self._call("DescribeInstances", _NOT_FOUND, lambda: self._client.describe_instances(**request))

    def _call(self, name: str, not_found: set[str], send: Callable[[], Any]) -> dict[str, Any] | None:
        """One EC2 call, its errors typed: None for the ``not_found`` codes, throttling temporary."""
        self.requests_sent += 1
        try:
            return dict(send())
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in not_found:
                return None
            if code in _THROTTLED:
                raise TemporaryError(f"{name}: {code}", stage="describe-instance") from exc
            raise PermanentError(f"{name}: {code}: {exc}", stage="describe-instance") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"{name}: {exc}", stage="describe-instance") from exc


def _facts(reply: dict[str, Any]) -> dict[str, InstanceFacts]:
    """DescribeInstances' answer as facts, by instance ID."""
    found: dict[str, InstanceFacts] = {}
    for reservation in reply.get("Reservations", []):
        for instance in reservation.get("Instances", []):
            instance_id = instance.get("InstanceId")
            if instance_id:
                found[instance_id] = InstanceFacts(
                    instance_id=instance_id,
                    private_dns_name=instance.get("PrivateDnsName", ""),
                    availability_zone=instance.get("Placement", {}).get("AvailabilityZone", ""),
                    instance_type=instance.get("InstanceType", ""),
                    state=instance.get("State", {}).get("Name", ""),
                    lifecycle=instance.get("InstanceLifecycle", "on-demand"),
                    tags={t["Key"]: t.get("Value", "") for t in instance.get("Tags", [])},
                    launched_at=instance.get("LaunchTime"),
                )
    return found
