"""Lamp latency: how long from a relay message reaching the lamp code to the command reaching the device.

Measured path: ``LampController.on_message(incoming/ended)`` → :class:`~kiosk.lamp_agent.LampBoard` →
:class:`~kiosk.devices.lamp.LampDevice` task → serial worker thread → pyserial write → pty (or TCP) →
emulated device thread, which stamps the arrival with ``time.perf_counter()`` (same clock, same process).

Cases: an LCUS board and an ascii lamp on a pty, an LCUS board behind ``socket://127.0.0.1``; for the ascii lamp
also the time until its acknowledgement is back. The baseline is the floor every implementation pays: a bare
pyserial ``write()`` of the same bytes, called directly, to the same emulated device.

The emulated device runs in a thread of this process and competes for the GIL, so the numbers are an upper
bound for what a real USB adapter adds on top of its own USB latency (1–16 ms for CH340 boards).

Run ``python -m bench.lamp_latency [N]``; :func:`run` returns the rows for the ``python -m bench`` runner.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from common.messages import ServerMessage, Welcome
from kiosk.config import LampConfig
from kiosk.devices.emulated import EmulatedAsciiLamp, EmulatedLcusBoard
from kiosk.devices.lamp import ascii_command, lcus_command
from kiosk.lamp_agent import LampController

WARMUP = 10  # first commands not counted (thread start-up, first-use costs)
WELCOME: Welcome = {
    "type": "welcome",
    "terminal": "lamp-bench",
    "role": "lamp",
    "ice_servers": [],
    "departments": [{"id": "juumin", "name": {"ja": "住民課", "en": "Residents Division"}}],
}


def _percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    data = sorted(values)
    k = (len(data) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def _row(case: str, metric: str, samples_ms: Sequence[float], baseline: str = "") -> dict[str, Any]:
    return {
        "bench": "lamp",
        "case": case,
        "metric": metric,
        "unit": "ms",
        "n": len(samples_ms),
        "p50": _percentile(samples_ms, 50),
        "p99": _percentile(samples_ms, 99),
        "mean": sum(samples_ms) / len(samples_ms) if samples_ms else math.nan,
        "max": max(samples_ms) if samples_ms else math.nan,
        "baseline": baseline,
    }


def _device(kind: str, transport: str) -> EmulatedLcusBoard | EmulatedAsciiLamp:
    if kind == "lcus":
        return EmulatedLcusBoard(4, transport=transport)
    return EmulatedAsciiLamp(4, transport=transport)


async def _wait(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("lamp benchmark: the emulated device did not receive the command")
        # Not sleep(0): a spinning loop holds the GIL and would delay the device thread by the switch interval.
        await asyncio.sleep(0.0002)


async def _measure_controller(kind: str, transport: str, n: int) -> tuple[list[float], list[float]]:
    """(message → bytes at device, message → device confirmed/written) in ms, alternating on and off."""
    device = _device(kind, transport)
    to_device: list[float] = []
    to_done: list[float] = []
    with device:
        cfg = LampConfig(kind, device.url, {"juumin": 1})
        # No keepalive during the run: only the measured commands travel.
        async with LampController(cfg, keepalive=3600.0) as lamp:
            lamp.on_link("up", "")
            lamp.on_message(WELCOME)
            await lamp.device.wait_ready(5)
            await device.wait_for(lambda: lamp.device.connected, 5)
            for i in range(n + WARMUP):
                before = len(device.received)
                msg: ServerMessage = (
                    {"type": "incoming", "call": f"c{i}", "department": "juumin", "from": "k"}
                    if i % 2 == 0
                    else {"type": "ended", "call": f"c{i - 1}", "reason": "cancelled"}
                )
                t0 = time.perf_counter()
                lamp.on_message(msg)
                await lamp.device.wait_ready(5)
                t_done = time.perf_counter()
                await _wait(lambda b=before: len(device.received) > b)
                to_device.append((device.received[before].t - t0) * 1000)
                to_done.append((t_done - t0) * 1000)
    return to_device[WARMUP:], to_done[WARMUP:]


def _measure_bare_write(kind: str, transport: str, n: int) -> list[float]:
    """Floor: a direct pyserial write of the same command to the same kind of emulated device, in ms."""
    import serial

    device = _device(kind, transport)
    samples: list[float] = []
    with device:
        port = serial.serial_for_url(device.url, baudrate=9600, timeout=0.5)
        try:
            for i in range(n + WARMUP):
                on = i % 2 == 0
                data = lcus_command(1, on) if kind == "lcus" else ascii_command("ON" if on else "OFF", 1)
                before = len(device.received)
                t0 = time.perf_counter()
                port.write(data)
                device.wait_for_sync(lambda b=before: len(device.received) > b, 5)  # type: ignore[misc]
                samples.append((device.received[before].t - t0) * 1000)
                if kind == "ascii":
                    port.readline()  # consume the acknowledgement
        finally:
            port.close()
    return samples[WARMUP:]


def run(n: int = 300) -> list[dict[str, Any]]:
    """Measure every case ``n`` times; one row per case and metric (p50/p99/mean/max in ms)."""
    rows: list[dict[str, Any]] = []
    for kind, transport, label in (
        ("lcus", "pty", "LCUS board, pty"),
        ("ascii", "pty", "ascii lamp, pty"),
        ("lcus", "tcp", "LCUS board, socket://"),
    ):
        base = _measure_bare_write(kind, transport, n)
        to_device, to_done = asyncio.run(_measure_controller(kind, transport, n))
        rows.append(_row(label, "bare pyserial write → bytes at device (baseline)", base))
        rows.append(_row(label, "relay message → bytes at device", to_device, baseline="bare pyserial write"))
        done = "relay message → acknowledged" if kind == "ascii" else "relay message → write returned"
        rows.append(_row(label, done, to_done))
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| case | metric | n | p50 ms | p99 ms | max ms |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['metric']} | {r['n']} | {r['p50']:.3f} | {r['p99']:.3f} | {r['max']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    print(f"lamp latency, {count} commands per case (python -m bench.lamp_latency {count})\n")
    print(format_table(run(count)))
