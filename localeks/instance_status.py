"""Local extension of moto (labelled local in docs/local-eks.md): DescribeInstanceStatus with
scheduled events and failed status checks, as the instance-status backstop reads it.

moto 5.2.5 answers every running instance as ``ok`` with no ``Events``, ignores ``MaxResults`` and
``NextToken``, and raises NotImplementedError for the filters the backstop sends (``event.code``,
``instance-status.status``, ``system-status.status``). AWS has no API that schedules an event or
fails a check, so a test sets them on a local route, and here:

- DescribeInstanceStatus answers each instance as botocore's ec2 model shapes it (InstanceStatus:
  ``InstanceId``, ``AvailabilityZone``, ``InstanceState``, ``Events``, ``InstanceStatus`` and
  ``SystemStatus`` with their ``reachability`` detail and its ``ImpairedSince``); only running
  instances unless ``IncludeAllInstances`` ("When false, includes the health status for running
  instances only"); ``not-applicable`` for a check of an instance that is not running;
- the filters ``event.code``, ``event.instance-event-id``, ``instance-status.status``,
  ``instance-status.reachability``, ``system-status.status``, ``system-status.reachability``,
  ``instance-state-name`` and ``availability-zone``, values ORed within a filter and filters ANDed
  ("If you specify multiple filters, the filters are joined with an AND", the EC2 API's Filter);
  another documented filter is moto's FilterNotImplementedError, an unknown one EC2's
  ``InvalidParameterValue`` "The filter '<name>' is invalid";
- paging: ``MaxResults`` with ``InstanceIds`` is ``InvalidParameterCombination`` ("You cannot
  specify this parameter and the instance IDs parameter in the same request"); ``MaxResults``
  outside 5-1000 is ``InvalidParameterValue``; a ``NextToken`` this server did not issue is
  ``InvalidPaginationToken`` (codes from EC2's error code list; the messages are our wording).

Local-only route, for tests: ``POST {AWS_ENDPOINT_URL}/moto-api/localeks/ec2/instance-status`` with
JSON ``{"instance_id": ..., "region": ..., "events": [{"Code", "NotBefore", "NotAfter",
"Description"}], "instance_check": {"status": "failed", "since": <ISO time>}, "system_check": ...}``
sets what EC2 would report (events get an ``InstanceEventId``, answered); an omitted key keeps
what was set. Not modelled: ``NotBeforeDeadline``, ModifyInstanceEventStartTime, EBS and
application checks, an event completing by itself.
"""

from __future__ import annotations

import datetime
import json
import threading
import urllib.request
import uuid
from typing import Any

ROUTE = "/moto-api/localeks/ec2/instance-status"
ACCOUNT = "123456789012"  # moto's default account, the one the functions run in locally
_FILTERS = {
    "event.code": lambda item: [e["Code"] for e in item.get("Events", [])],
    "event.instance-event-id": lambda item: [e["InstanceEventId"] for e in item.get("Events", [])],
    "instance-status.status": lambda item: [item["InstanceStatus"]["Status"]],
    "instance-status.reachability": lambda item: [d["Status"] for d in item["InstanceStatus"].get("Details", [])],
    "system-status.status": lambda item: [item["SystemStatus"]["Status"]],
    "system-status.reachability": lambda item: [d["Status"] for d in item["SystemStatus"].get("Details", [])],
    "instance-state-name": lambda item: [item["InstanceState"]["Name"]],
    "availability-zone": lambda item: [item["AvailabilityZone"]],
}
# the rest of DescribeInstanceStatus's documented filters (botocore's ec2 model)
_NOT_MODELLED = {
    "availability-zone-id",
    "event.description",
    "event.not-after",
    "event.not-before",
    "event.not-before-deadline",
    "instance-state-code",
    "operator.managed",
    "operator.principal",
    "attached-ebs-status.status",
    "application-status.status",
}
_lock = threading.Lock()
_tokens: dict[str, int] = {}  # NextToken -> the offset it continues from


def _check(state: str, setting: dict[str, Any] | None) -> dict[str, Any]:
    if state != "running":
        return {"Status": "not-applicable"}
    if setting and setting.get("status") == "failed":
        since = datetime.datetime.fromisoformat(str(setting["since"]).replace("Z", "+00:00"))
        details = [{"Name": "reachability", "Status": "failed", "ImpairedSince": since}]
        return {"Status": "impaired", "Details": details}
    return {"Status": "ok", "Details": [{"Name": "reachability", "Status": "passed"}]}


def _item(instance: Any) -> dict[str, Any]:
    recorded = getattr(instance, "_localeks_status", {})
    item: dict[str, Any] = {
        "InstanceId": instance.id,
        "AvailabilityZone": instance.placement,
        "InstanceState": {"Code": instance.state_code, "Name": instance.state},
        "InstanceStatus": _check(instance.state, recorded.get("instance_check")),
        "SystemStatus": _check(instance.state, recorded.get("system_check")),
    }
    if recorded.get("events"):
        item["Events"] = recorded["events"]
    return item


def _describe(response: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError, FilterNotImplementedError

    ids = response._get_param("InstanceIds", []) or []
    include_all = response._get_bool_param("IncludeAllInstances", False)
    max_results = response._get_int_param("MaxResults")
    token = response._get_param("NextToken")
    filters = response._filters_from_querystring()
    if max_results is not None and ids:
        raise EC2ClientError(
            "InvalidParameterCombination", "MaxResults cannot be specified with InstanceIds in the same request"
        )
    if max_results is not None and not 5 <= max_results <= 1000:
        raise EC2ClientError("InvalidParameterValue", f"MaxResults {max_results} is not between 5 and 1000")
    for name in filters:
        if name in _NOT_MODELLED:
            raise FilterNotImplementedError(name, "DescribeInstanceStatus")
        if name not in _FILTERS:
            raise EC2ClientError("InvalidParameterValue", f"The filter '{name}' is invalid")
    with _lock:
        offset = _tokens.get(token, -1) if token else 0
    if offset < 0:
        raise EC2ClientError("InvalidPaginationToken", f"The pagination token {token!r} is not valid")
    backend = response.ec2_backend
    instances = backend.get_multi_instances_by_id(ids) if ids else backend.all_instances()  # unknown id: NotFound
    items = [_item(i) for i in instances if include_all or i.state == "running"]
    items = [i for i in items if all(set(_FILTERS[n](i)) & set(v) for n, v in filters.items())]
    page = items[offset : offset + max_results] if max_results else items[offset:]
    result: dict[str, Any] = {"InstanceStatuses": page}
    if max_results and offset + len(page) < len(items):
        following = uuid.uuid4().hex
        with _lock:
            _tokens[following] = offset + len(page)
        result["NextToken"] = following
    return ActionResult(result)


def _set_status(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    from moto.ec2.models import ec2_backends

    wanted = json.loads(request.get_data() or b"{}")
    backend = ec2_backends[ACCOUNT][wanted.get("region", "us-east-1")]
    try:
        instance = backend.get_instance(wanted.get("instance_id", ""))
    except Exception as exc:  # moto's InvalidInstanceID.NotFound
        return 404, {}, json.dumps({"error": str(exc)})
    with _lock:
        recorded = dict(getattr(instance, "_localeks_status", {}))
        if "events" in wanted:
            recorded["events"] = [
                {
                    "InstanceEventId": e.get("InstanceEventId") or "instance-event-" + uuid.uuid4().hex[:17],
                    "Code": e["Code"],
                    "Description": e.get("Description", f"The instance is scheduled for {e['Code']}"),
                    "NotBefore": datetime.datetime.fromisoformat(e["NotBefore"].replace("Z", "+00:00")),
                    **(
                        {"NotAfter": datetime.datetime.fromisoformat(e["NotAfter"].replace("Z", "+00:00"))}
                        if e.get("NotAfter")
                        else {}
                    ),
                }
                for e in wanted["events"]
            ]
        for key in ("instance_check", "system_check"):
            if key in wanted:
                recorded[key] = wanted[key]
        instance._localeks_status = recorded
    answer = {"events": recorded.get("events", [])}
    return 200, {"content-type": "application/json"}, json.dumps(answer, default=lambda t: t.isoformat())


def install() -> None:
    """Patches moto's DescribeInstanceStatus once, in this process, and adds the route."""
    from moto.ec2.responses.instances import InstanceResponse
    from moto.moto_api._internal import urls

    with _lock:
        if getattr(InstanceResponse, "_localeks_instance_status", False):
            return
        InstanceResponse.describe_instance_status = _describe  # type: ignore[method-assign]
        urls.url_paths["{0}" + ROUTE] = _set_status
        InstanceResponse._localeks_instance_status = True  # type: ignore[attr-defined]


# --- client helper for tests -----------------------------------------------------------------------


def set_status(endpoint_url: str, instance_id: str, region: str = "us-east-1", **status: Any) -> dict[str, Any]:
    """``events=[...]``, ``instance_check={"status": "failed", "since": iso}``, ``system_check=...``;
    answers the events as recorded (with their InstanceEventId)."""
    request = urllib.request.Request(
        f"{endpoint_url.rstrip('/')}{ROUTE}",
        data=json.dumps({"instance_id": instance_id, "region": region, **status}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        recorded: dict[str, Any] = json.load(answer)
        return recorded
