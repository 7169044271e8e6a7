"""What the smoke runs of the benchmarks share: running one, and the figures it must write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from localeks.cluster import REPO


def run_smoke(module: str, state: Path, out: Path, results: str, timeout: int) -> dict[str, Any]:
    """``python -m <module> --smoke --out <out>`` on the local EKS state ``state`` (it must end
    well within ``timeout`` seconds); the results it wrote to ``<out>/<results>``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOCALEKS_STATE": str(state)}
    subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--out", str(out)], cwd=REPO, env=env, check=True, timeout=timeout
    )
    loaded: dict[str, Any] = json.loads((out / results).read_text())
    return loaded


def missing_figures(results: dict[str, Any], required: list[str]) -> list[str]:
    """The required figures that are not numbers in the results."""
    return [k for k in required if not isinstance(results.get(k), int | float)]
