"""The one list of AWS services (serverless_nth/aws/clients.py AWS_SERVICES) against the code.

The deps layer ships botocore's models for these services only, and EC2's cut down to the listed
operations (layers/deps/slim.py): a client or an operation the core uses but the list lacks would
fail in Lambda only. These tests read the core's source and botocore's full models (.venv).
"""

from __future__ import annotations

import ast
import datetime
import importlib.util
import shutil
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from botocore.loaders import Loader
from botocore.stub import Stubber

from serverless_nth.aws.clients import AWS_SERVICES, aws_client

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "layers" / "core" / "python" / "serverless_nth"
CLIENT_FACTORIES = {"aws_client", "create_client", "client"}  # ours, botocore's session, boto3's


def _slim_module() -> Any:
    spec = importlib.util.spec_from_file_location("deps_slim", REPO / "layers" / "deps" / "slim.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _core_calls() -> list[tuple[Path, ast.Call]]:
    calls = []
    for path in sorted(CORE.rglob("*.py")):
        calls += [(path, node) for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]
    return calls


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def _full_model_operations(service: str) -> set[str]:
    return set(botocore.session.get_session().get_service_model(service).operation_names)


def test_every_client_the_core_creates_is_listed() -> None:
    created = set()
    for path, call in _core_calls():
        # AccountClients.in_account(account, service): a client of this account or a member's
        service_arg = 1 if _called_name(call) == "in_account" else 0
        if (service_arg == 0 and _called_name(call) not in CLIENT_FACTORIES) or len(call.args) <= service_arg:
            continue
        first = call.args[service_arg]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            created.add(first.value)
        else:  # a computed service name is allowed only in the factory itself
            assert path == CORE / "aws" / "clients.py", f"{path}:{call.lineno}"
    assert created, "no client found: has the factory been renamed?"
    assert created <= set(AWS_SERVICES), f"clients missing from AWS_SERVICES: {sorted(created - set(AWS_SERVICES))}"
    # today's clients (the list may hold more, for code and SDKs that create theirs)
    assert {"ec2", "eks", "sts", "sns"} <= created


# third-party packages of the deps layer that make AWS clients of their own
SDKS_WITH_CLIENTS = ("aws_durable_execution_sdk_python",)


def test_every_client_the_sdks_in_the_layer_create_is_listed() -> None:
    created = set()
    for package in SDKS_WITH_CLIENTS:
        spec = importlib.util.find_spec(package)
        assert spec is not None, package
        assert spec.submodule_search_locations is not None, package
        for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and _called_name(node) in CLIENT_FACTORIES and node.args:
                    first = node.args[0]
                    if isinstance(first, ast.Constant) and isinstance(first.value, str):
                        created.add(first.value)
    assert "lambda" in created  # the durable execution SDK's checkpoints
    assert created <= set(AWS_SERVICES), f"clients missing from AWS_SERVICES: {sorted(created - set(AWS_SERVICES))}"


def test_every_operation_the_core_calls_on_a_cut_down_model_is_listed() -> None:
    names = set()
    for _, call in _core_calls():
        name = _called_name(call)
        if name is None:
            continue
        names.add(name)
        # operations named by string: presigned URLs, paginators, waiters
        if name in ("generate_presigned_url", "get_paginator", "can_paginate") and call.args:
            first = call.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    for service, operations in AWS_SERVICES.items():
        if operations is None:
            continue
        every = {xform_name(op): op for op in _full_model_operations(service)}
        used = {every[n] for n in names if n in every}
        assert used, f"{service}: no operation of it is called; is it still used?"
        assert used <= set(operations), f"{service}: called but not in AWS_SERVICES: {sorted(used - set(operations))}"


def test_listed_services_and_operations_exist_in_botocore() -> None:
    session = botocore.session.get_session()
    available = set(session.get_available_services())
    assert set(AWS_SERVICES) <= available
    for service, operations in AWS_SERVICES.items():
        assert set(operations or ()) <= _full_model_operations(service), service


def test_the_factory_refuses_an_unlisted_service() -> None:
    with pytest.raises(ValueError, match="AWS_SERVICES"):
        aws_client("s3")


def test_the_build_reads_the_same_list() -> None:
    link = REPO / "layers" / "deps" / "aws_clients.py"  # in the layer's directory: SAM's cache key
    assert link.resolve() == (CORE / "aws" / "clients.py").resolve()
    assert _slim_module().aws_services(link) == AWS_SERVICES


def _walk_shapes(shape: Any, seen: set[str]) -> None:
    """Every shape reachable resolves (a missing one raises in botocore's model)."""
    if shape is None or shape.name in seen:
        return
    seen.add(shape.name)
    for member in getattr(shape, "members", {}).values():
        _walk_shapes(member, seen)
    for attr in ("member", "key", "value"):
        _walk_shapes(getattr(shape, attr, None), seen)


@pytest.fixture(scope="module")
def slim_session(tmp_path_factory: pytest.TempPathFactory) -> botocore.session.Session:
    """botocore's data as the layer ships it: the build step run on a copy of .venv's models."""
    source = Path(botocore.__file__).parent / "data"
    data = tmp_path_factory.mktemp("botocore") / "data"
    data.mkdir()
    for entry in source.iterdir():
        if entry.is_file():
            shutil.copy(entry, data / entry.name)
        elif entry.name in AWS_SERVICES or entry.name == "s3":  # s3: must be removed
            shutil.copytree(entry, data / entry.name)
    _slim_module().slim_botocore(data, AWS_SERVICES)
    _slim_module().slim_endpoints(data, AWS_SERVICES)
    session = botocore.session.Session()
    session.register_component(
        "data_loader", Loader(extra_search_paths=[str(data)], include_default_search_paths=False)
    )
    session.set_credentials("AKIDEXAMPLE", "secret")
    return session


def test_the_layer_s_models_make_working_clients(slim_session: botocore.session.Session) -> None:
    assert set(slim_session.get_available_services()) == set(AWS_SERVICES)
    for service, operations in AWS_SERVICES.items():
        client = slim_session.create_client(service, region_name="eu-west-1")
        model = client.meta.service_model
        assert client.meta.endpoint_url.startswith("https://")  # endpoint rules and partitions kept
        if operations is None:
            assert set(model.operation_names) == _full_model_operations(service)
            continue
        assert set(model.operation_names) == set(operations)
        for op in operations:
            operation = model.operation_model(op)
            _walk_shapes(operation.input_shape, set())
            _walk_shapes(operation.output_shape, set())


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1", "us-iso-east-1"])
def test_the_layer_s_endpoints_are_botocore_s(slim_session: botocore.session.Session, region: str) -> None:
    full = botocore.session.get_session()
    full.set_credentials("AKIDEXAMPLE", "secret")
    for service in AWS_SERVICES:
        slim_client = slim_session.create_client(service, region_name=region)
        full_client = full.create_client(service, region_name=region)
        assert slim_client.meta.endpoint_url == full_client.meta.endpoint_url, (service, region)
        assert slim_client.meta.partition == full_client.meta.partition


def test_a_cut_down_ec2_model_serialises_and_parses_describe_instances(slim_session: botocore.session.Session) -> None:
    ec2 = slim_session.create_client("ec2", region_name="eu-west-1")
    reply = {
        "Reservations": [
            {
                "Instances": [
                    {
                        "InstanceId": "i-0123456789abcdef0",
                        "PrivateDnsName": "ip-10-0-0-1.eu-west-1.compute.internal",
                        "InstanceLifecycle": "spot",
                        "State": {"Code": 16, "Name": "running"},
                        "Placement": {"AvailabilityZone": "eu-west-1a"},
                        "Tags": [{"Key": "eks:cluster-name", "Value": "prod"}],
                    }
                ]
            }
        ]
    }
    with Stubber(ec2) as stub:  # the stubber validates both against the model
        stub.add_response("describe_instances", reply, {"InstanceIds": ["i-0123456789abcdef0"]})
        got = ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"])
    assert got["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    assert not hasattr(ec2, "run_instances")


def test_the_cut_down_ec2_model_lists_a_capacity_reservation_s_instances_page_by_page(
    slim_session: botocore.session.Session,
) -> None:
    """The Capacity Block workflow's call (aws/ec2.py in_reservation): DescribeInstances with the
    capacity-reservation-id filter, MaxResults and NextToken, on the model the layer ships."""
    ec2 = slim_session.create_client("ec2", region_name="us-east-1")
    asked = {"Filters": [{"Name": "capacity-reservation-id", "Values": ["cr-0123456789abcdef0"]}], "MaxResults": 1000}
    first = {"Reservations": [{"Instances": [{"InstanceId": "i-0123456789abcdef0"}]}], "NextToken": "next"}
    last = {
        "Reservations": [
            {"Instances": [{"InstanceId": "i-0123456789abcdef1", "CapacityReservationId": "cr-0123456789abcdef0"}]}
        ]
    }
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", first, asked)
        stub.add_response("describe_instances", last, {**asked, "NextToken": "next"})
        assert ec2.describe_instances(**asked)["NextToken"] == "next"
        got = ec2.describe_instances(**asked, NextToken="next")
    assert got["Reservations"][0]["Instances"][0]["CapacityReservationId"] == "cr-0123456789abcdef0"


def test_the_cut_down_ec2_model_reads_a_capacity_reservation_s_end(slim_session: botocore.session.Session) -> None:
    ec2 = slim_session.create_client("ec2", region_name="us-east-1")
    end = datetime.datetime(2026, 12, 3, 11, 30, tzinfo=datetime.UTC)
    reply = {"CapacityReservations": [{"CapacityReservationId": "cr-0123456789abcdef0", "EndDate": end}]}
    with Stubber(ec2) as stub:  # the stubber validates both against the cut-down model
        stub.add_response("describe_capacity_reservations", reply, {"CapacityReservationIds": ["cr-0123456789abcdef0"]})
        got = ec2.describe_capacity_reservations(CapacityReservationIds=["cr-0123456789abcdef0"])
    assert got["CapacityReservations"][0]["EndDate"] == end
