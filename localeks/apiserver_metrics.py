"""The local API server's own /metrics (Prometheus text): counters and histogram quantiles
between two scrapes, as ``histogram_quantile(rate(...))`` would give them."""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
from collections.abc import Callable
from pathlib import Path

Labels = dict[str, str]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(cluster_env: dict[str, str]) -> str:
    """The /metrics text, read with the admin token (an exempt identity: the scrape is never queued)."""
    kubeconfig = json.loads(Path(cluster_env["KUBECONFIG"]).read_text())
    token = kubeconfig["users"][0]["user"]["token"]
    context = ssl.create_default_context(cafile=str(Path(cluster_env["KUBECONFIG"]).parent / "pki" / "ca.crt"))
    request = urllib.request.Request(
        cluster_env["LOCALEKS_API_URL"] + "/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return str(response.read().decode())


def samples(text: str, name: str) -> list[tuple[Labels, float]]:
    """Every sample of the metric ``name`` (exactly), with its labels."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            out.append((dict(_LABEL.findall(match.group(2) or "")), float(match.group(3))))
    return out


def total(text: str, name: str, where: Callable[[Labels], bool] = lambda _: True) -> float:
    return sum(value for labels, value in samples(text, name) if where(labels))


def quantiles(
    before: str,
    after: str,
    histogram: str,
    group: Callable[[Labels], str | None],
    qs: tuple[float, ...] = (0.5, 0.99),
) -> dict[str, dict[str, float]]:
    """Per group (``group`` names it, or None to leave the series out): the observations between
    the two scrapes (``count``) and their quantiles in seconds, interpolated linearly inside the
    bucket as Prometheus' histogram_quantile does (so a figure is only as fine as the buckets)."""
    buckets: dict[str, dict[float, float]] = {}
    for sign, text in ((-1.0, before), (1.0, after)):
        for labels, value in samples(text, histogram + "_bucket"):
            key = group(labels)
            if key is None:
                continue
            bound = float(labels["le"])  # "+Inf" parses as inf
            per = buckets.setdefault(key, {})
            per[bound] = per.get(bound, 0.0) + sign * value
    out: dict[str, dict[str, float]] = {}
    for key, per in sorted(buckets.items()):
        bounds = sorted(per)
        count = per[bounds[-1]]
        if count <= 0:
            continue
        figures = {"count": count}
        for q in qs:
            figures[f"p{round(q * 100)}_s"] = _quantile(q, count, [(b, per[b]) for b in bounds])
        out[key] = figures
    return out


def _quantile(q: float, count: float, cumulative: list[tuple[float, float]]) -> float:
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound, seen in cumulative:
        if seen >= rank:
            if bound == float("inf"):  # beyond the last finite bucket: its bound is all we know
                return round(lower_bound, 4)
            inside = seen - lower_count
            share = (rank - lower_count) / inside if inside else 1.0
            return round(lower_bound + (bound - lower_bound) * share, 4)
        lower_bound, lower_count = bound, seen
    return round(lower_bound, 4)
