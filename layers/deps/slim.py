"""Build step of the deps layer (layers/deps/Makefile): leaves out what the functions never load.

    python slim.py <layer python/ dir> <clients.py>

1. botocore's data keeps only the AWS services the core calls, as listed once in
   ``serverless_nth/aws/clients.py`` (``AWS_SERVICES``, read here without importing it), plus the
   endpoint, partition, retry and defaults data every client needs. A service listed with its
   operations is cut down to them, from botocore's own model files of this build: those
   operations, the shapes they reach, their paginators and waiters, no documentation. A service
   listed without operations keeps its whole model. Only the newest API version of each is kept
   (the one a client loads unless told otherwise); examples-1.json (docs only) are dropped. An
   operation that the model lacks fails the build. endpoints.json keeps every partition, region
   and default, and the endpoints of these services (by endpoint prefix); partitions.json, the
   retry and defaults-mode data are kept as they are.
2. The distributions that only the kubernetes package's asyncio client needs (aiohttp,
   aiohttp-retry and what only they require): kubernetes/aio is not shipped (Makefile), so nothing
   left imports them. Removed by their RECORD; kept if any other distribution requires them.

Nothing here is hand-written model data: every byte that remains came out of the wheels.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

ASYNC_ONLY_ROOTS = ("aiohttp", "aiohttp-retry")
SHARED_DATA = ("endpoints.json", "partitions.json", "_retry.json", "sdk-default-configuration.json")


def aws_services(clients_py: Path) -> dict[str, tuple[str, ...] | None]:
    """``AWS_SERVICES`` from clients.py, read as a literal (the build host need not import it)."""
    tree = ast.parse(clients_py.read_text())
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "AWS_SERVICES" and node.value is not None:  # type: ignore[union-attr]
            value = ast.literal_eval(node.value)  # type: ignore[union-attr]
            return {str(k): (tuple(v) if v is not None else None) for k, v in value.items()}
    raise SystemExit(f"AWS_SERVICES not found in {clients_py}")


def _read(path: Path) -> Any:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(data)


def _write(path: Path, value: Any) -> None:
    data = json.dumps(value, separators=(",", ":")).encode()
    path.write_bytes(gzip.compress(data, 9, mtime=0) if path.suffix == ".gz" else data)


def _model_file(version_dir: Path, stem: str) -> Path | None:
    for name in (f"{stem}.json", f"{stem}.json.gz"):
        if (version_dir / name).exists():
            return version_dir / name
    return None


def _without_docs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_docs(v) for k, v in value.items() if k not in ("documentation", "documentationUrl")}
    if isinstance(value, list):
        return [_without_docs(v) for v in value]
    return value


def _shape_refs(shape: dict[str, Any]) -> list[str]:
    refs = [m["shape"] for m in shape.get("members", {}).values()]
    refs += [shape[k]["shape"] for k in ("member", "key", "value") if k in shape]
    return refs


def slim_model(model: dict[str, Any], operations: tuple[str, ...], service: str) -> dict[str, Any]:
    missing = sorted(set(operations) - set(model["operations"]))
    if missing:
        raise SystemExit(f"{service}: botocore's model has no operation {', '.join(missing)} (clients.py AWS_SERVICES)")
    ops = {name: model["operations"][name] for name in operations}
    todo = [
        ref["shape"]
        for op in ops.values()
        for ref in [op.get("input"), op.get("output"), *op.get("errors", [])]
        if ref is not None
    ]
    keep: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(_shape_refs(model["shapes"][name]))
    shapes = {name: shape for name, shape in model["shapes"].items() if name in keep}
    return _without_docs({**model, "operations": ops, "shapes": shapes})


def slim_endpoints(data: Path, services: dict[str, tuple[str, ...] | None]) -> None:
    """endpoints.json keeps every partition with its regions and defaults, and the endpoints of
    the kept services (by their models' endpoint prefix; the resolver looks nothing else up): a
    client's first creation no longer parses 1.2 MB of JSON for 300 services."""
    prefixes = set()
    for service in services:
        newest = sorted(p for p in (data / service).iterdir() if p.is_dir())[-1]
        service_file = _model_file(newest, "service-2")
        assert service_file is not None, newest
        metadata = _read(service_file)["metadata"]
        prefixes |= {service, metadata.get("endpointPrefix", service)}
    path = data / "endpoints.json"
    doc = _read(path)
    for partition in doc["partitions"]:
        partition["services"] = {k: v for k, v in partition["services"].items() if k in prefixes}
    _write(path, doc)


def slim_botocore(data: Path, services: dict[str, tuple[str, ...] | None]) -> None:
    for entry in data.iterdir():
        if entry.is_dir() and entry.name not in services:
            shutil.rmtree(entry)
        elif entry.is_file() and entry.name not in SHARED_DATA:
            entry.unlink()
    for service, operations in services.items():
        service_dir = data / service
        if not service_dir.is_dir():
            raise SystemExit(f"botocore has no service {service!r} (clients.py AWS_SERVICES)")
        versions = sorted(p for p in service_dir.iterdir() if p.is_dir())
        for old in versions[:-1]:
            shutil.rmtree(old)
        newest = versions[-1]
        for examples in newest.glob("examples-1.json*"):
            examples.unlink()
        if operations is None:
            continue
        service_file = _model_file(newest, "service-2")
        assert service_file is not None, newest
        if _model_file(newest, "service-2.sdk-extras") is not None:
            raise SystemExit(f"{service}: service-2.sdk-extras.json: not handled by the slimming, list it whole")
        _write(service_file, slim_model(_read(service_file), operations, service))
        for stem, key, field in (
            ("paginators-1", "pagination", None),
            ("paginators-1.sdk-extras", "pagination", None),
            ("waiters-2", "waiters", "operation"),
        ):
            path = _model_file(newest, stem)
            if path is None:
                continue
            doc = _read(path)
            section = doc.get(key, {})
            if stem.startswith("paginators-1.sdk-extras"):
                doc = {**doc, "merge": {key: {k: v for k, v in doc["merge"][key].items() if k in operations}}}
            else:
                doc[key] = {k: v for k, v in section.items() if (v.get(field) if field else k) in operations}
            _write(path, doc)


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dists(site: Path) -> dict[str, Path]:
    return {_dist_name(p.name.split("-")[0]): p for p in site.glob("*.dist-info")}


def _requires(dist_info: Path) -> set[str]:
    names = set()
    for line in (dist_info / "METADATA").read_text(errors="replace").splitlines():
        if line.startswith("Requires-Dist:"):
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line.split(":", 1)[1].strip())
            if match:
                names.add(_dist_name(match.group(0)))
    return names


def remove_async_only(site: Path) -> list[str]:
    """The aiohttp stack, which only kubernetes.aio (not shipped) imports: the roots and whatever
    they require that no distribution staying in the layer requires (kubernetes' requirement on the
    roots themselves excepted)."""
    dists = _dists(site)
    requires = {name: _requires(info) for name, info in dists.items()}
    roots = {_dist_name(n) for n in ASYNC_ONLY_ROOTS}
    removal: set[str] = set()
    todo = [n for n in roots if n in dists]
    while todo:  # the roots and everything they require, transitively
        name = todo.pop()
        if name in dists and name not in removal:
            removal.add(name)
            todo.extend(requires[name])
    changed = True
    while changed:  # keep what a staying distribution requires
        changed = False
        for name in sorted(removal):
            if any(
                name in requires[other] and not (other == "kubernetes" and name in roots)
                for other in dists
                if other not in removal
            ):
                removal.discard(name)
                changed = True
    for name in sorted(removal):
        for line in (dists[name] / "RECORD").read_text().splitlines():
            path = site / line.split(",")[0]
            if path.is_file() and site.resolve() in path.resolve().parents:
                path.unlink()
        shutil.rmtree(dists[name], ignore_errors=True)
    # packages whose files are gone leave empty directories behind
    for directory in sorted((p for p in site.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()
    return sorted(removal)


def main() -> None:
    site, clients_py = Path(sys.argv[1]), Path(sys.argv[2])
    services = aws_services(clients_py)
    slim_botocore(site / "botocore" / "data", services)
    slim_endpoints(site / "botocore" / "data", services)
    removed = remove_async_only(site)
    print(f"slim: botocore data for {', '.join(sorted(services))}; removed {', '.join(removed) or 'nothing'}")


if __name__ == "__main__":
    main()
