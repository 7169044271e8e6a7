"""Local extension of moto (labelled local in docs/local-eks.md): Lambda durable executions, as far
as the long-drain starter uses them.

moto 5.2.5 drops ``DurableConfig`` from CreateFunction, runs every Invoke in Docker (absent here),
has no ListDurableExecutionsByFunction (404 "Not yet implemented"), and numbers a new version
``len(versions) + 1``, so after a DeleteFunction of an old version it publishes a number that is
still in use. ``install()`` patches moto's classes in this process (the supervisor that serves
moto) so that:

- CreateFunction keeps ``DurableConfig``, and GetFunction/GetFunctionConfiguration answer it, on
  ``$LATEST`` and on the versions published from it;
- PublishVersion numbers versions as Lambda does, never reusing a number (moto already answers the
  latest version when nothing changed: "Lambda doesn't publish a version if the function's
  configuration and code haven't changed since the last version");
- Invoke of a durable function records a durable execution instead of running anything: ARN
  ``<function ARN>:<version>/durable-execution/<name>/<id>`` (the pattern of botocore's
  DurableExecutionArn), status RUNNING, the payload; answers 202 with the
  ``X-Amz-Durable-Execution-Arn`` and ``X-Amz-Executed-Version`` headers. The qualifier is resolved
  as Lambda resolves it (an alias to its version; an unknown one is ResourceNotFoundException,
  404, "Function not found: <arn>", moto's own text). The same DurableExecutionName with the same
  payload returns the existing execution; with another payload it is
  DurableExecutionAlreadyStartedException (409), as Invoke's reference says; names are unique
  within the function, across versions;
- ListDurableExecutionsByFunction filters by Qualifier, Statuses and DurableExecutionName, newest
  first (``ReverseOrder`` for oldest first), MaxItems 1-1000 (default 100) and Marker.

Our wording (inferred, no captured AWS answer): an unqualified Invoke of a durable function is
InvalidParameterValueException (400) "Durable functions require a qualified ARN (a version or an
alias)"; a DurableExecutionName on a function that is not durable is InvalidParameterValueException
"... is not a durable function". Not modelled: running the function (the durable SDK's in-process
runner does that in the tests), checkpoints, waits, the execution's end (tests set it with
``set_status``), ResourceConflictException for a version an alias references.

- Invoke of an ordinary function with ``InvocationType`` ``Event`` (the instance-status backstop
  hands a scheduled event to the long-drain starter so) is answered 202 as Lambda answers a queued
  event, and recorded with its payload instead of run; a test runs the function from the record.

Local-only routes on the moto server, for tests:
- ``GET  {AWS_ENDPOINT_URL}/moto-api/localeks/lambda/durable-executions`` -> every execution
- ``GET  {AWS_ENDPOINT_URL}/moto-api/localeks/lambda/queued-invocations`` -> every queued Invoke
- ``POST {AWS_ENDPOINT_URL}/moto-api/localeks/lambda/durable-executions/status`` with JSON
  ``{"arn": ..., "status": "SUCCEEDED"}`` -> ends (or changes) an execution
"""

from __future__ import annotations

import datetime
import io
import json
import re
import threading
import urllib.request
import uuid
import zipfile
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

ROUTE = "/moto-api/localeks/lambda"
_NAME = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED", "DELETING", "PAUSING", "PAUSED")

_lock = threading.Lock()
_installed = False
_executions: list[dict[str, Any]] = []
_queued_invocations: list[dict[str, Any]] = []  # asynchronous Invokes of ordinary functions
_highest_version: dict[str, int] = {}  # function ARN (unqualified) -> the highest number ever published


def _bare(name_or_arn: str) -> str:
    """The function's name, from a name, a name:qualifier, or an ARN."""
    return name_or_arn.split(":function:")[-1].split(":")[0]


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    # moto's Lambda responses take the status from the "status" header
    headers = {"x-amzn-errortype": code, "content-type": "application/json", "status": str(status)}
    return status, headers, json.dumps({"Type": "User", "message": message})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _init_function(original: Any) -> Any:
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        spec = kwargs.get("spec", args[0] if args else {})
        self.durable_config = spec.get("DurableConfig")

    return init


def _configuration(original: Any) -> Any:
    def get_configuration(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config: dict[str, Any] = original(self, *args, **kwargs)
        if getattr(self, "durable_config", None):
            config["DurableConfig"] = self.durable_config
        return config

    return get_configuration


def _publish_version(self: Any, name_or_arn: str, description: str = "") -> Any:
    """moto's LambdaStorage.publish_version, numbering as Lambda does (never a number used before)."""
    import copy

    function = self.get_function_by_name_or_arn_forbid_qualifier(name_or_arn)
    entry = self._functions.get(function.function_name)
    if not entry or not entry["latest"]:
        return None
    versions = entry["versions"]
    if versions and not function.code_or_config_updated:
        return versions[-1]  # nothing changed: the latest version
    function.code_or_config_updated = False
    key = function.function_arn
    number = max([_highest_version.get(key, 0), *(int(v.version) for v in versions)]) + 1
    _highest_version[key] = number
    published = copy.copy(entry["latest"])
    published.set_version(number)
    if description:
        published.description = description
    versions.append(published)
    self._arns[published.function_arn] = published
    return published


def _invoke(original: Any) -> Any:
    def invoke(self: Any) -> Any:
        name = self.headers.get("X-Amz-Durable-Execution-Name")
        function_name = unquote(self.path.rsplit("/", 2)[-2])
        qualifier = self._get_param("Qualifier") or self._get_param("qualifier")
        storage = self.backend._lambdas
        try:
            latest = storage.get_function_by_name_or_arn_with_qualifier(_bare(function_name))
        except Exception:  # moto's own not-found answer follows, from the original
            return original(self)
        if not getattr(latest, "durable_config", None):
            if name is None and self.headers.get("X-Amz-Invocation-Type") == "Event":
                return _queued(latest, self.body)
            if name is None:
                return original(self)
            return _error(400, "InvalidParameterValueException", f"{latest.function_name} is not a durable function")
        if name is None:
            name = str(uuid.uuid4())
        if not _NAME.match(name):
            return _error(400, "InvalidParameterValueException", f"invalid DurableExecutionName {name!r}")
        if ":" in function_name.split(":function:")[-1] and not qualifier:
            qualifier = function_name.rsplit(":", 1)[1]
        if not qualifier:
            return _error(
                400,
                "InvalidParameterValueException",
                "Durable functions require a qualified ARN (a version or an alias)",
            )
        version = storage.get_function_by_name_or_arn_with_qualifier(latest.function_name, qualifier)  # 404 if unknown
        payload = self.body if isinstance(self.body, str) else (self.body or b"").decode()
        with _lock:
            for execution in _executions:
                if execution["FunctionName"] == latest.function_name and execution["DurableExecutionName"] == name:
                    if execution["Payload"] != payload:
                        return _error(
                            409,
                            "DurableExecutionAlreadyStartedException",
                            f"A durable execution named {name} has already been started with another payload",
                        )
                    break
            else:
                arn = f"{latest.function_arn}:{version.version}/durable-execution/{name}/{uuid.uuid4()}"
                execution = {
                    "DurableExecutionArn": arn,
                    "DurableExecutionName": name,
                    "FunctionName": latest.function_name,
                    "FunctionArn": f"{latest.function_arn}:{version.version}",
                    "Version": str(version.version),
                    "Status": "RUNNING",
                    "StartTimestamp": _now(),
                    "Payload": payload,
                }
                _executions.append(execution)
        headers = {
            "X-Amz-Durable-Execution-Arn": execution["DurableExecutionArn"],
            "X-Amz-Executed-Version": execution["Version"],
            "status": "202",
        }
        return 202, headers, ""

    return invoke


def _queued(function: Any, body: Any) -> tuple[int, dict[str, str], str]:
    """An asynchronous Invoke of an ordinary function: queued, as Lambda answers it (202, no body),
    and recorded instead of run (moto would run it in Docker); a test runs it from the record."""
    payload = body if isinstance(body, str) else (body or b"").decode()
    with _lock:
        _queued_invocations.append({"FunctionName": function.function_name, "Payload": payload, "At": _now()})
    return 202, {"status": "202", "X-Amzn-RequestId": str(uuid.uuid4())}, ""


def _route_queued(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    with _lock:
        return 200, {"content-type": "application/json"}, json.dumps(_queued_invocations)


def _delete_function(original: Any) -> Any:
    def delete_function(self: Any, function_name: str, qualifier: str | None = None) -> None:
        original(self, function_name, qualifier)
        name = _bare(function_name)
        if qualifier is None and ":" not in function_name.split(":function:")[-1]:
            # the function is gone with its versions and executions; a new one numbers from 1
            with _lock:
                _executions[:] = [e for e in _executions if e["FunctionName"] != name]
                for key in [k for k in _highest_version if _bare(k) == name]:
                    del _highest_version[key]

    return delete_function


def _list_executions(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    parsed = urlparse(full_url)
    function = _bare(unquote(parsed.path.rstrip("/").rsplit("/", 2)[-2]))
    query = parse_qs(parsed.query)
    qualifier = query.get("Qualifier", [None])[0]
    statuses = set(query.get("Statuses", [])) or set(STATUSES)
    unknown = statuses - set(STATUSES)
    if unknown:
        return _error(400, "InvalidParameterValueException", f"unknown status {sorted(unknown)}")
    named = query.get("DurableExecutionName", [None])[0]
    max_items = int(query.get("MaxItems", ["100"])[0] or 100)
    if not 0 <= max_items <= 1000:
        return _error(400, "InvalidParameterValueException", "MaxItems must be between 1 and 1000")
    start = int(query.get("Marker", ["0"])[0] or 0)
    with _lock:
        found = [
            e
            for e in _executions
            if e["FunctionName"] == function
            and (qualifier is None or e["Version"] == qualifier)
            and e["Status"] in statuses
            and (named is None or e["DurableExecutionName"] == named)
        ]
    if query.get("ReverseOrder", ["false"])[0].lower() != "true":
        found = found[::-1]  # newest first
    page = found[start : start + (max_items or 100)]
    body: dict[str, Any] = {
        "DurableExecutions": [
            {k: v for k, v in e.items() if k not in {"Payload", "Version", "FunctionName"}} for e in page
        ]
    }
    if start + len(page) < len(found):
        body["NextMarker"] = str(start + len(page))
    return 200, {"content-type": "application/json"}, json.dumps(body)


def _route_executions(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    with _lock:
        return 200, {"content-type": "application/json"}, json.dumps(_executions)


def _route_status(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    wanted = json.loads(request.get_data() or b"{}")
    if wanted.get("status") not in STATUSES:
        return 400, {}, json.dumps({"error": f"status must be one of {STATUSES}"})
    with _lock:
        for execution in _executions:
            if execution["DurableExecutionArn"] == wanted.get("arn"):
                execution["Status"] = wanted["status"]
                if wanted["status"] not in {"RUNNING", "PAUSING", "PAUSED"}:
                    execution["EndTimestamp"] = _now()
                return 200, {"content-type": "application/json"}, json.dumps(execution)
    return 404, {}, json.dumps({"error": "no such execution"})


def install() -> None:
    """Patches moto's Lambda once, in this process, and adds the routes; call it before the moto
    server answers its first Lambda or ``/moto-api`` request."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.awslambda import urls as lambda_urls
        from moto.awslambda.models import LambdaBackend, LambdaFunction, LambdaStorage
        from moto.awslambda.responses import LambdaResponse
        from moto.moto_api._internal import urls

        LambdaFunction.__init__ = _init_function(LambdaFunction.__init__)  # type: ignore[method-assign]
        LambdaFunction.get_configuration = _configuration(LambdaFunction.get_configuration)  # type: ignore[method-assign]
        LambdaStorage.publish_version = _publish_version  # type: ignore[method-assign]
        LambdaResponse.invoke = _invoke(LambdaResponse.invoke)  # type: ignore[method-assign]
        LambdaBackend.delete_function = _delete_function(LambdaBackend.delete_function)  # type: ignore[method-assign]
        lambda_urls.url_paths[
            r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[^/]+)/durable-executions/?$"
        ] = _list_executions
        urls.url_paths["{0}" + ROUTE + "/durable-executions"] = _route_executions
        urls.url_paths["{0}" + ROUTE + "/durable-executions/status"] = _route_status
        urls.url_paths["{0}" + ROUTE + "/queued-invocations"] = _route_queued
        _installed = True


# --- client helpers for tests ----------------------------------------------------------------------


def executions(endpoint_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{endpoint_url.rstrip('/')}{ROUTE}/durable-executions", timeout=10) as answer:
        found: list[dict[str, Any]] = json.load(answer)
        return found


def queued_invocations(endpoint_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{endpoint_url.rstrip('/')}{ROUTE}/queued-invocations", timeout=10) as answer:
        found: list[dict[str, Any]] = json.load(answer)
        return found


def set_status(endpoint_url: str, arn: str, status: str) -> None:
    request = urllib.request.Request(
        f"{endpoint_url.rstrip('/')}{ROUTE}/durable-executions/status",
        data=json.dumps({"arn": arn, "status": status}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def create_durable_function(lambda_client: Any, name: str, role_arn: str, durable: bool = True) -> None:
    """A durable function as a deploy creates it (DurableConfig, no version yet), or with ``durable``
    False an ordinary one (what the instance-status backstop invokes); its code is never run here
    (the tests run the real handler from the records)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return {}\n")
    lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role_arn,
        Handler="app.lambda_handler",
        Code={"ZipFile": buffer.getvalue()},
        **({"DurableConfig": {"ExecutionTimeout": 180000, "RetentionPeriodInDays": 14}} if durable else {}),
    )
