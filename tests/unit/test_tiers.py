"""`make test`'s runner (tests/tiers.py): the tiers run at once, a failed tier fails the whole,
a tier that comes after a failed one is not run, and the table gives every tier's wall time."""

from __future__ import annotations

import io
import os
from pathlib import Path

from tests.tiers import Runner, clock, make_argv, parse, state_for

# Stands in for make: the target is the last argument; "slow" sleeps, "bad" fails, the rest pass.
FAKE_MAKE = """#!/usr/bin/env bash
target="${@: -1}"
echo "ran $target with LOCALEKS_STATE=$LOCALEKS_STATE"
case "$target" in
  slow) sleep 0.5 ;;
  bad) echo "broken" >&2; exit 3 ;;
esac
"""


def run(tmp_path: Path, specs: list[str]) -> tuple[int, str]:
    fake = tmp_path / "make"
    fake.write_text(FAKE_MAKE)
    fake.chmod(0o755)
    out = io.StringIO()
    code = Runner(parse(specs), tmp_path / "logs", out, str(fake)).run()
    return code, out.getvalue()


def test_all_passing_tiers_pass_and_each_has_a_wall_time(tmp_path: Path) -> None:
    code, out = run(tmp_path, ["fast", "slow", "after:slow"])
    assert code == 0
    table = out[out.index("\ntier ") :]
    for name in ("fast", "slow", "after", "all"):
        assert any(line.startswith(name + " ") and "passed" in line for line in table.splitlines()), table
    assert "ran slow with LOCALEKS_STATE=" in out  # each tier's output is printed


def test_a_failed_tier_fails_the_run_and_what_comes_after_it_is_not_run(tmp_path: Path) -> None:
    code, out = run(tmp_path, ["fast", "bad", "after:bad"])
    assert code == 1
    assert "broken" in out
    lines = out.splitlines()
    assert any(line.startswith("bad ") and "FAILED (3)" in line for line in lines)
    assert any(line.startswith("after ") and "not run (after failed)" in line for line in lines)
    assert "ran after" not in out


def test_a_tier_after_another_does_not_make_it_again() -> None:
    tier = parse(["build", "built-functions:build"])[1]
    assert make_argv(tier, "make") == [
        "make", "--no-print-directory", "-o", "venv", "-o", "go", "-o", "build", "built-functions",
    ]  # fmt: skip


def test_every_tier_has_a_local_eks_state_of_its_own() -> None:
    env = {"LOCALEKS_STATE": os.path.join("/ci", ".local")}
    assert state_for("integration", env) == os.path.join("/ci", ".local-integration")
    assert state_for("reliability", env) != state_for("integration", env)


def test_wall_times_read_as_minutes_and_seconds() -> None:
    assert clock(119.96) == "2 min 00.0 s"
    assert clock(61.25) == "1 min 01.2 s"
    assert clock(9.94) == "9.9 s"
    assert clock(None) == "-"
