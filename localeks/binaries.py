"""The local EKS's binaries: ``build.sh`` builds etcd, the Kubernetes parts, kwok, kubectl and the
token verifier into a build cache outside the repo, once; ``build_binaries`` runs it and returns
the bin directory (silent when cached, progress on stderr when it builds). Its own module so that
the supervisor (``localeks.cluster``) and the token webhook (``localeks.webhook``) both use it
without importing each other."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path
from typing import TextIO

from localeks.progress import Progress, duration

REPO = Path(__file__).resolve().parent.parent

# The cold build (docs/local-eks.md, "Measured by hand"): 382 s on 2 cores on a quiet machine on
# 2026-12-03, downloading the Go modules and compiling all seven binaries from empty Go caches.
COLD_BUILD_SECONDS = 382
COLD_BUILD_SOURCE = "docs/local-eks.md: 382 s on 2 cores from empty Go caches, modules downloaded, 2026-12-03"
BUILD_SCRIPT = REPO / "localeks" / "build.sh"


def build_binaries(stream: TextIO | None = None, every: float = 30.0, script: Path = BUILD_SCRIPT) -> Path:
    """Runs build.sh, which prints the bin directory; returns it. Silent when the binaries are
    cached. When it builds, says which binary, how long each took and how long the whole is
    likely to take (``BuildProgress``), on ``stream`` (stderr by default)."""
    watch = BuildProgress(Progress("localeks", stream, every), wanted_binaries(script))
    proc = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stderr is not None
    with watch.ticking():
        for line in proc.stderr:  # build.sh's own lines and go's (errors, "go: downloading")
            watch.line(line.rstrip("\n"))
    out = proc.stdout.read()
    code = proc.wait()
    watch.finish(code)
    if code:
        raise subprocess.CalledProcessError(code, proc.args, out)
    return Path(out.strip().splitlines()[-1])


def wanted_binaries(script: Path = BUILD_SCRIPT) -> list[str]:
    """The binaries build.sh builds (its ``want=(...)`` list)."""
    match = re.search(r"^want=\(([^)]*)\)", script.read_text(), re.MULTILINE)
    return match.group(1).split() if match else []


class BuildProgress:
    """Turns build.sh's stderr into progress. ``go build`` prints nothing while it compiles (only
    errors, and "go: downloading" lines while it fills the module cache), so the progress comes
    from build.sh's "localeks: building <binary>" lines and the clock: each binary when it starts
    and its time when the next starts, a line every ``every`` seconds, all against the README's
    cold build time. Nothing at all when build.sh builds nothing."""

    def __init__(self, progress: Progress, wanted: list[str]) -> None:
        self.progress = progress
        self.wanted = wanted
        self.started = time.monotonic()
        self.current: str | None = None
        self.current_since = 0.0
        self.count = 0
        self.downloads = 0
        self.built: dict[str, float] = {}

    def _overall(self, now: float) -> str:
        elapsed = now - self.started
        left = COLD_BUILD_SECONDS - elapsed
        if left > 0:
            return f"all: {duration(elapsed)}, about {duration(left)} left by the 2-core estimate"
        return f"all: {duration(elapsed)}, past the 2-core estimate of {duration(COLD_BUILD_SECONDS)}"

    def _close_current(self, now: float) -> None:
        if self.current is not None:
            self.built[self.current] = now - self.current_since
            self.progress.say(f"  {self.current} built in {duration(self.built[self.current])}")
            self.current = None

    def line(self, text: str) -> None:
        now = time.monotonic()
        words = text.split()
        if text.startswith("localeks: building ") and words[2] in self.wanted:
            if self.count == 0:
                self.progress.say(
                    f"building the local control plane ({', '.join(self.wanted)}) into the build cache, "
                    f"once: about {duration(COLD_BUILD_SECONDS)} on 2 cores ({COLD_BUILD_SOURCE})"
                )
            self._close_current(now)
            self.count += 1
            self.current, self.current_since = words[2], now
            total = f"/{len(self.wanted)}" if len(self.wanted) >= self.count else ""
            self.progress.say(f"[{self.count}{total}] building {self.current} ({self._overall(now)})")
        elif text.startswith("go: downloading "):
            if self.downloads == 0:
                self.progress.say("  downloading Go modules first (1.3 GB into the Go module cache; in the estimate)")
            self.downloads += 1
        elif text.startswith("localeks: built in "):
            self._close_current(now)
            self.progress.say(text.removeprefix("localeks: "))
        elif not text.startswith("localeks: building "):  # build.sh's own first line: said above
            self.progress.say(text.removeprefix("localeks: "))  # compiler errors, anything unforeseen

    def status(self, _elapsed: float) -> str:
        now = time.monotonic()
        if self.current is None:
            return f"  still working ({self._overall(now)})"
        downloaded = f", {self.downloads} Go modules downloaded" if self.downloads else ""
        return (
            f"  still building {self.current}: {duration(now - self.current_since)}{downloaded} ({self._overall(now)})"
        )

    def ticking(self) -> contextlib.AbstractContextManager[None]:
        """Ticks only once something is being built: a cached run prints nothing."""
        return self.progress.ticking(lambda elapsed: self.status(elapsed) if self.count else "")

    def finish(self, code: int) -> None:
        self._close_current(time.monotonic())
        if code and self.count:
            self.progress.say(f"build failed (exit {code}) after {duration(time.monotonic() - self.started)}")
