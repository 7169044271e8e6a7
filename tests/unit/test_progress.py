"""Progress of long work: the first build says what it builds, for how long, against the README's
estimate; a cached build says nothing. A stand-in for build.sh prints what the real one prints."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from localeks.cluster import COLD_BUILD_SECONDS, build_binaries, wanted_binaries
from localeks.progress import Counter, Progress, duration

FAKE_BUILD = """#!/usr/bin/env bash
set -euo pipefail
want=(etcd kube-apiserver)
if [ "${{1:-}}" = cached ] || [ -e "{done}" ]; then echo "{bin}"; exit 0; fi
echo "localeks: building the local EKS's binaries into {bin} (minutes the first time)" >&2
echo "localeks: building etcd (go.etcd.io/etcd/server/v3)" >&2
echo "go: downloading go.etcd.io/etcd/server/v3 v3.6.16" >&2
sleep 0.35
echo "localeks: building kube-apiserver (k8s.io/kubernetes/cmd/kube-apiserver)" >&2
sleep 0.1
echo "localeks: built in 1 s into {bin} (402M)" >&2
touch "{done}"
echo "{bin}"
"""


@pytest.fixture
def fake_build(tmp_path: Path) -> Path:
    script = tmp_path / "build.sh"
    script.write_text(FAKE_BUILD.format(bin=tmp_path / "bin-0123", done=tmp_path / "done"))
    return script


def test_the_real_build_script_lists_what_it_builds() -> None:
    assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"} <= set(
        wanted_binaries()
    )


def test_a_build_says_each_binary_its_time_and_the_estimate(fake_build: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    assert build_binaries(out, every=0.1, script=fake_build) == tmp_path / "bin-0123"
    text = out.getvalue()
    assert text.splitlines()[0].startswith("localeks: building the local control plane (etcd, kube-apiserver)")
    assert f"about {duration(COLD_BUILD_SECONDS)} on 2 cores" in text
    assert "[1/2] building etcd" in text
    assert "[2/2] building kube-apiserver" in text
    assert re.search(r"still building etcd: 0 s, 1 Go modules downloaded \(all: 0 s, about \d+ min \d+ s left", text)
    assert "downloading Go modules first" in text
    assert re.search(r"etcd built in \d+ s", text)
    assert re.search(r"kube-apiserver built in \d+ s", text)
    assert "built in 1 s into" in text
    assert "go: downloading" not in text  # counted, not echoed one per module
    # build.sh's own first line names no binary (it was once counted as a binary called "the")
    assert "building the (" not in text
    assert "the built in" not in text


def test_a_cached_build_is_silent(fake_build: Path, tmp_path: Path) -> None:
    (tmp_path / "done").touch()
    out = io.StringIO()
    assert build_binaries(out, every=0.05, script=fake_build) == tmp_path / "bin-0123"
    assert out.getvalue() == ""


def test_a_counter_estimates_what_is_left() -> None:
    counter = Counter("seeding", 1000, "nodes")
    counter.add(250)
    assert counter.status(30) == "seeding: 250/1,000 nodes after 30 s, about 1 min 30 s left at this rate"
    out = io.StringIO()
    with Progress("bench", out, every=0.02).ticking(counter.status):
        import time

        time.sleep(0.1)
    assert out.getvalue().startswith("bench: seeding: 250/1,000 nodes after 0 s")
