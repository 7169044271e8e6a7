"""Quantiles of the API server's histograms between two scrapes (localeks/apiserver_metrics.py), as
Prometheus' histogram_quantile over the increase would give them."""

from __future__ import annotations

import pytest

from localeks.apiserver_metrics import quantiles, samples, total

NAME = "apiserver_request_duration_seconds"


def _scrape(counts: dict[str, list[int]]) -> str:
    """A /metrics text with one histogram series per verb; ``counts`` are cumulative per bucket."""
    lines = [f"# TYPE {NAME} histogram"]
    for verb, cumulative in counts.items():
        for bound, count in zip(("0.005", "0.025", "0.1", "+Inf"), cumulative, strict=True):
            lines.append(f'{NAME}_bucket{{resource="pods",subresource="eviction",verb="{verb}",le="{bound}"}} {count}')
        lines.append(f'{NAME}_count{{resource="pods",subresource="eviction",verb="{verb}"}} {cumulative[-1]}')
    return "\n".join(lines) + "\n"


def test_quantiles_are_of_the_observations_between_the_scrapes() -> None:
    before = _scrape({"POST": [10, 10, 10, 10], "GET": [5, 5, 5, 5]})
    # 100 new POSTs: 20 under 5 ms, 60 between 5 and 25 ms, 20 between 25 and 100 ms; no new GET
    after = _scrape({"POST": [30, 90, 110, 110], "GET": [5, 5, 5, 5]})
    out = quantiles(before, after, NAME, lambda labels: labels["verb"])
    assert set(out) == {"POST"}
    assert out["POST"]["count"] == 100
    # rank 50 lies 30 of 60 into (0.005, 0.025]; rank 99 lies 19 of 20 into (0.025, 0.1]
    assert out["POST"]["p50_s"] == pytest.approx(0.015)
    assert out["POST"]["p99_s"] == pytest.approx(0.09625, abs=1e-4)  # rounded to 0.1 ms


def test_a_quantile_beyond_the_last_bucket_is_its_bound_and_a_series_can_be_left_out() -> None:
    before = _scrape({"POST": [0, 0, 0, 0], "GET": [0, 0, 0, 0]})
    after = _scrape({"POST": [0, 0, 1, 4], "GET": [2, 2, 2, 2]})
    out = quantiles(before, after, NAME, lambda labels: None if labels["verb"] == "GET" else "evictions")
    assert out == {"evictions": {"count": 4, "p50_s": 0.1, "p99_s": 0.1}}


def test_samples_read_labels_with_commas_and_quotes() -> None:
    text = 'm{a="x,y",b="say \\"hi\\""} 3\nm_other{a="1"} 9\nm 2\n'
    assert samples(text, "m") == [({"a": "x,y", "b": 'say \\"hi\\"'}, 3.0), ({}, 2.0)]
    assert total(text, "m", lambda labels: labels.get("a") == "x,y") == 3
