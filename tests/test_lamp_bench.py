"""The lamp latency benchmark runs and yields well-formed rows (its numbers are not judged here)."""

from __future__ import annotations

import math

from bench.lamp_latency import format_table, run


def test_lamp_latency_benchmark_produces_rows() -> None:
    """run() measures every case end to end through real ptys/sockets and returns p50/p99 rows in ms."""
    rows = run(n=4)
    assert {r["case"] for r in rows} == {"LCUS board, pty", "ascii lamp, pty", "LCUS board, socket://"}
    assert all(r["n"] == 4 and r["unit"] == "ms" and not math.isnan(r["p99"]) and r["p50"] > 0 for r in rows)
    assert "relay message → bytes at device" in format_table(rows)
