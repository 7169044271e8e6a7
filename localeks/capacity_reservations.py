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

Faithful: the fields' names and places, the filter's meaning, an instance outside any reservation
matching no reservation id. Not faithful: the reservation itself is not modelled (any ``cr-`` id is
taken, its capacity, instance type, zone and end are not checked), nor ``open`` preference matching,
resource-group targets, or the ``capacity-block`` market type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FILTER = "capacity-reservation-id"


def install() -> None:
    """Patches moto's EC2 instances once, in this process (the supervisor that serves moto)."""
    from moto.ec2 import utils
    from moto.ec2.models.instances import Instance
    from moto.ec2.responses.instances import InstanceResponse

    if getattr(Instance, "_localeks_capacity_reservations", False):
        return
    Instance.capacity_reservation_id = None  # type: ignore[attr-defined]  # none: omitted, as EC2 does
    Instance.capacity_reservation_specification = None  # type: ignore[attr-defined]
    utils.filter_dict_attribute_mapping[FILTER] = "capacity_reservation_id"
    InstanceResponse.run_instances = _recording(InstanceResponse.run_instances)  # type: ignore[method-assign]
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
