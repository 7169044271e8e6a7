import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The core package as Lambda mounts its layer (/opt/python), and the repo for localeks.
for p in (REPO / "layers" / "core" / "python", REPO):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
