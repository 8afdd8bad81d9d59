"""Smoke test of the relay benchmark: it keeps the benchmark code alive (the benchmarks themselves never run here)."""

from __future__ import annotations

import math

from bench.common import Stats, percentile, render_rows
from bench.relay import run_async


def test_percentile_interpolates_like_numpy() -> None:
    """Percentiles interpolate linearly between closest ranks, so small samples give sensible tails."""
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))
    assert Stats.of(list(range(101)), 99).tail == 99.0


async def test_relay_benchmark_runs_with_a_few_terminals() -> None:
    """The relay benchmark connects ~20 idle terminals, places a few calls on the relay and the bare forwarder
    and returns rows with real latencies for both."""
    rows, detail = await run_async(
        [20],
        calls=5,
        pairs=2,
        idle_window=0.5,
        setup_window=0.5,
        connect_budget=30,
        log=lambda *_: None,
        latency_budget=10,
    )
    by_metric = {r.metric: r for r in rows}
    lat = by_metric["touch→incoming"]
    assert isinstance(lat.ours, Stats) and lat.ours.n == 5 and lat.ours.p50 > 0
    assert isinstance(lat.base, Stats) and lat.base.n == 5
    assert detail["20"]["relay"]["n_up"] == 20 and detail["20"]["bare"]["n_up"] == 20
    assert "touch→incoming" in render_rows(rows)
