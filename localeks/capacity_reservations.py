"""Local extension of moto (labelled local in the README): instances launched into a Capacity
Reservation, as EC2 records them.

moto 5 ignores RunInstances' ``CapacityReservationSpecification``, returns no
``CapacityReservationId`` for an instance and raises NotImplementedError for DescribeInstances'
``capacity-reservation-id`` filter. The Capacity Block workflow lists a reservation's instances with
that filter, so here:
- RunInstances with ``CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId``
  records the reservation on each instance it launches;
- DescribeInstances returns it as EC2 does (``CapacityReservationId``, and
  ``CapacityReservationSpecification`` with the target) and filters on it
  (``capacity-reservation-id``: "The ID of the Capacity Reservation into which the instance was
  launched", DescribeInstances in the EC2 API reference), with moto's own paging.

- CreateCapacityReservation, DescribeCapacityReservations and ModifyCapacityReservation (which
  moto lacks) keep a reservation's ``EndDate`` and ``State``, so a test can end or extend a block
  as a purchased extension does; DescribeCapacityReservations of an unknown id is
  ``InvalidCapacityReservationId.NotFound`` (EC2's error code list).

Faithful: the fields' names and places, the filter's meaning, an instance outside any reservation
matching no reservation id, the reservation's end and state. Not faithful: RunInstances takes any
``cr-`` id, created or not, and checks no capacity, instance type or zone; no ``open`` preference
matching, resource-group targets, ``capacity-block`` market type, Capacity Block purchase or
extension offerings (ModifyCapacityReservation stands in for a paid extension's new end).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from typing import Any

FILTER = "capacity-reservation-id"


def install() -> None:
    """Patches moto's EC2 instances once, in this process (the supervisor that serves moto)."""
    from moto.ec2 import utils
    from moto.ec2.models.instances import Instance
    from moto.ec2.responses import EC2Response
    from moto.ec2.responses.instances import InstanceResponse

    if getattr(Instance, "_localeks_capacity_reservations", False):
        return
    Instance.capacity_reservation_id = None  # type: ignore[attr-defined]  # none: omitted, as EC2 does
    Instance.capacity_reservation_specification = None  # type: ignore[attr-defined]
    utils.filter_dict_attribute_mapping[FILTER] = "capacity_reservation_id"
    InstanceResponse.run_instances = _recording(InstanceResponse.run_instances)  # type: ignore[method-assign]
    EC2Response.create_capacity_reservation = _create  # type: ignore[attr-defined]
    EC2Response.describe_capacity_reservations = _describe  # type: ignore[attr-defined]
    EC2Response.modify_capacity_reservation = _modify  # type: ignore[attr-defined]
    Instance._localeks_capacity_reservations = True  # type: ignore[attr-defined]


def _recording(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run_instances(response: Any) -> Any:
        spec = response._get_param("CapacityReservationSpecification", {}) or {}
        result = original(response)
        target = (spec.get("CapacityReservationTarget") or {}).get("CapacityReservationId")
        if target:
            for instance in result._result.instances:
                instance.capacity_reservation_id = target
                instance.capacity_reservation_specification = {
                    "CapacityReservationTarget": {"CapacityReservationId": target}
                }
        return result

    return run_instances


def _reservations(response: Any) -> dict[str, dict[str, Any]]:
    backend = response.ec2_backend
    if not hasattr(backend, "_localeks_capacity_reservations"):
        backend._localeks_capacity_reservations = {}
    return backend._localeks_capacity_reservations  # type: ignore[no-any-return]


def _date(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _create(response: Any) -> Any:
    from moto.core.responses import ActionResult

    reservation_id = "cr-" + uuid.uuid4().hex[:17]
    count = int(response._get_param("InstanceCount", 1))
    end = response._get_param("EndDate")
    record = {
        "CapacityReservationId": reservation_id,
        "CapacityReservationArn": (
            f"arn:aws:ec2:{response.region}:{response.current_account}:capacity-reservation/{reservation_id}"
        ),
        "OwnerId": response.current_account,
        "InstanceType": response._get_param("InstanceType"),
        "InstancePlatform": response._get_param("InstancePlatform"),
        "AvailabilityZone": response._get_param("AvailabilityZone"),
        "TotalInstanceCount": count,
        "AvailableInstanceCount": count,
        "State": "active",
        "StartDate": datetime.datetime.now(datetime.UTC),
        "EndDateType": response._get_param("EndDateType", "unlimited"),
        **({"EndDate": _date(end)} if end else {}),
    }
    _reservations(response)[reservation_id] = record
    return ActionResult({"CapacityReservation": record})


def _describe(response: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError

    known = _reservations(response)
    asked = response._get_param("CapacityReservationIds", []) or list(known)
    missing = [i for i in asked if i not in known]
    if missing:
        raise EC2ClientError(
            "InvalidCapacityReservationId.NotFound", f"The capacity reservation ID '{missing[0]}' does not exist"
        )
    return ActionResult({"CapacityReservations": [known[i] for i in asked]})


def _modify(response: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError

    reservation_id = response._get_param("CapacityReservationId")
    record = _reservations(response).get(reservation_id)
    if record is None:
        raise EC2ClientError(
            "InvalidCapacityReservationId.NotFound", f"The capacity reservation ID '{reservation_id}' does not exist"
        )
    if response._get_param("EndDate"):
        record["EndDate"] = _date(response._get_param("EndDate"))
    if response._get_param("EndDateType"):
        record["EndDateType"] = response._get_param("EndDateType")
    return ActionResult({"Return": True})
