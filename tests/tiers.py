"""``make test``'s runner: the tiers at once, each a ``make`` target in its own process group, its
output in a log file of its own (printed whole when the tier ends, so tiers do not interleave),
and at the end a table of each tier's wall time. The exit status is 1 when any tier failed.

    python -m tests.tiers lint unit built-functions:build ...

``name:after`` starts ``name`` once ``after`` has passed (``make -o after name``, so make does not
run ``after`` again); when ``after`` fails, ``name`` is not run and counts as failed. Every tier gets
a local EKS state directory of its own (``LOCALEKS_STATE`` with ``-<tier>`` appended), so the tiers
that start a local EKS start one each; ``.ci/run`` stops every ``.local*`` one it finds.

On SIGINT or SIGTERM every tier is interrupted (SIGINT, so pytest tears its local EKS down), then
killed after ``GRACE_SECONDS``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 60.0
ALWAYS_BUILT = ("venv", "go")  # `make test` makes them before the tiers start


@dataclass
class Tier:
    name: str
    after: str | None = None
    argv: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    started: float | None = None
    ended: float | None = None
    code: int | None = None  # None: not run (yet); -1: not run because ``after`` failed

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


def parse(specs: list[str]) -> list[Tier]:
    tiers = []
    for spec in specs:
        name, _, after = spec.partition(":")
        tiers.append(Tier(name, after or None))
    names = {t.name for t in tiers}
    for tier in tiers:
        if tier.after is not None and tier.after not in names:
            raise SystemExit(f"tiers: {tier.name} comes after {tier.after}, which is not a tier")
    return tiers


def make_argv(tier: Tier, make: str) -> list[str]:
    skipped = [*ALWAYS_BUILT, *([tier.after] if tier.after else [])]
    return [make, "--no-print-directory", *(a for s in skipped for a in ("-o", s)), tier.name]


def state_for(tier: str, env: dict[str, str]) -> str:
    base = Path(env.get("LOCALEKS_STATE") or REPO / ".local")
    return str(base.with_name(f"{base.name}-{tier}"))


def load_average() -> str:
    """The machine's load average: the tiers share its cores with whatever else runs."""
    return f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, rest = divmod(round(seconds, 1), 60)
    return f"{int(minutes)} min {rest:04.1f} s" if minutes else f"{rest:.1f} s"


def table(tiers: list[Tier], started: float, ended: float) -> str:
    rows = [("tier", "result", "started at", "wall time")]
    for t in tiers:
        result = {None: "not run", -1: "not run (after failed)", 0: "passed"}.get(t.code, f"FAILED ({t.code})")
        at = clock(t.started - started) if t.started is not None else "-"
        rows.append((t.name, result, at, clock(t.seconds)))
    rows.append(("all", "passed" if all(t.code == 0 for t in tiers) else "FAILED", "", clock(ended - started)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Runner:
    def __init__(self, tiers: list[Tier], logs: Path, out: IO[str], make: str = "make") -> None:
        self.tiers = tiers
        self.logs = logs
        self.out = out
        self.make = make
        self.stopping = False

    def _start(self, tier: Tier) -> None:
        env = {**os.environ, "LOCALEKS_STATE": state_for(tier.name, dict(os.environ))}
        tier.argv = make_argv(tier, self.make)
        tier.log = self.logs / f"{tier.name}.log"
        log = tier.log.open("wb")
        tier.started = time.monotonic()
        tier.proc = subprocess.Popen(
            tier.argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.out.write(f"tiers: {tier.name} started ({' '.join(tier.argv)})\n")
        self.out.flush()

    def _finish(self, tier: Tier, code: int) -> None:
        tier.ended = time.monotonic()
        tier.code = code
        assert tier.log is not None
        verdict = "passed" if code == 0 else f"FAILED (exit {code})"
        self.out.write(f"\n===== {tier.name}: {verdict} in {clock(tier.seconds)}; its output ({tier.log}):\n")
        self.out.write(tier.log.read_text(errors="replace"))
        self.out.write(f"===== end of {tier.name}\n")
        self.out.flush()

    def _stop_all(self, *_: Any) -> None:
        self.stopping = True
        running = [t for t in self.tiers if t.proc is not None and t.code is None]
        for sig, wait in ((signal.SIGINT, GRACE_SECONDS), (signal.SIGKILL, 10.0)):
            for tier in running:
                assert tier.proc is not None
                if tier.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(tier.proc.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(t.proc.poll() is None for t in running if t.proc):
                time.sleep(0.2)

    def run(self) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        load_start = load_average()
        previous = {s: signal.signal(s, self._stop_all) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self.stopping:
                for tier in self.tiers:
                    if tier.proc is not None or tier.code is not None:
                        continue
                    after = next((t for t in self.tiers if t.name == tier.after), None)
                    if after is None or after.code == 0:
                        self._start(tier)
                    elif after.code is not None:
                        tier.code = -1
                for tier in self.tiers:
                    if tier.proc is not None and tier.code is None and (code := tier.proc.poll()) is not None:
                        self._finish(tier, code)
                if all(t.code is not None for t in self.tiers):
                    break
                time.sleep(0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        ended = time.monotonic()
        self.out.write("\n" + table(self.tiers, started, ended) + "\n")
        self.out.write(f"load average (1, 5, 15 min) at the start: {load_start}; at the end: {load_average()}\n")
        self.out.flush()
        return 0 if all(t.code == 0 for t in self.tiers) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests.tiers", description=__doc__.split("\n\n")[0])
    parser.add_argument("tiers", nargs="+", help="make targets, each `name` or `name:after`")
    parser.add_argument("--logs", type=Path, default=REPO / ".tier-logs", help="one log file per tier")
    parser.add_argument("--make", default=os.environ.get("MAKE", "make"))
    args = parser.parse_args(argv)
    return Runner(parse(args.tiers), args.logs, sys.stdout, args.make).run()


if __name__ == "__main__":
    sys.exit(main())
