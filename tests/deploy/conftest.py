"""Deploys as `sam build` + `sam deploy` make them, without AWS: for the baseline and each change,
a real `sam build` of a copy of the sources, then aws-sam-cli's packaging and the SAM transform
(tests/deploy/sam_pipeline.py, in .venv-sam).

One stand-in: the deps layer's build (pip cross-installs ~90 MB of wheels) is replaced, in the
copies only, by a Makefile that ships layers/deps/requirements.txt as the layer's content. The
layer's content then changes exactly when its build's input does, which is what decides its S3
object name and so its layer version; layers/deps/Makefile itself is exercised by `make build`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from localeks.cluster import REPO
from localeks.template import load_template
from tests.deploy.cfn import Stack
from tests.deploy.changes import BASE_PARAMETERS, changes

SAM = REPO / ".venv-sam" / "bin" / "sam"
SAM_PYTHON = REPO / ".venv-sam" / "bin" / "python"
PIPELINE = Path(__file__).with_name("sam_pipeline.py")
SOURCES = ["template.yaml", "samconfig.toml", "handlers", "layers"]
DEPS_STAND_IN = """\
# deploy tests only: ships the layer's build input instead of building it (see tests/deploy/conftest.py)
build-DepsLayer:
\tmkdir -p "$(ARTIFACTS_DIR)/python"
\tcp requirements.txt "$(ARTIFACTS_DIR)/python/requirements.txt"
"""


def _offline_env() -> dict[str, str]:
    """sam build needs no credentials and the packaging here makes no AWS call: make sure none is read."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}
    }
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
        SAM_CLI_TELEMETRY="0",
    )
    return env


def _copy_sources(dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".aws-sam"))
        else:
            shutil.copy2(src, dest / name)
    deps = load_template()["Resources"]["DepsLayer"]["Properties"]["ContentUri"]
    (dest / deps / "Makefile").write_text(DEPS_STAND_IN)


def sam_build(workdir: Path, edit: Callable[[Path], None] | None) -> Path:
    src = workdir / "src"
    _copy_sources(src)
    if edit is not None:
        edit(src)
    build_dir = workdir / "build"
    done = subprocess.run(
        [str(SAM), "build", "--build-dir", str(build_dir)],
        cwd=src,
        env=_offline_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"sam build failed in {src}:\n{done.stdout}\n{done.stderr}"
    return build_dir / "template.yaml"


@pytest.fixture(scope="session")
def deploys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stack]:
    """name -> the stack that name's deploy makes; "baseline" is the repository as it is."""
    if not SAM.exists():
        pytest.fail(f"{SAM} is missing: run `make venv` first")
    root = tmp_path_factory.mktemp("deploys")
    all_changes = changes()
    to_build: dict[str, Callable[[Path], None] | None] = {"baseline": None}
    to_build |= {c.name: c.edit for c in all_changes if c.edit is not None}
    names = list(to_build)
    with ThreadPoolExecutor(max_workers=2) as pool:
        built = dict(
            zip(names, pool.map(lambda n: sam_build(root / f"build-{names.index(n)}", to_build[n]), names), strict=True)
        )
    jobs = [{"name": "baseline", "built_template": str(built["baseline"]), "parameters": BASE_PARAMETERS}]
    for change in all_changes:
        template = built[change.name] if change.edit is not None else built["baseline"]
        jobs.append(
            {"name": change.name, "built_template": str(template), "parameters": BASE_PARAMETERS | change.parameters}
        )
    jobs_file, out_file = root / "jobs.json", root / "translated.json"
    jobs_file.write_text(json.dumps(jobs))
    done = subprocess.run(
        [str(SAM_PYTHON), str(PIPELINE), str(jobs_file), str(out_file)],
        cwd=root,
        env=_offline_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"packaging or the SAM transform failed:\n{done.stdout}\n{done.stderr}"
    out = json.loads(out_file.read_text())
    return {name: Stack(d["translated"], d["parameters"]) for name, d in out.items()}
