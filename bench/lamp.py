"""Benchmark 2: touch → lamp. A counter's ``call`` through the real relay to bytes on the lamp's serial port.

End to end: the relay runs as its own process; in this process a counter and a staff station (bare websockets
like :mod:`bench.relay`), the lamp agent exactly as ``kiosk lamp`` builds it (:class:`~kiosk.client.RelayClient`
feeding :class:`~kiosk.lamp_agent.LampController`) and the emulated LCUS board on a pty, which stamps each
command's arrival with ``time.perf_counter()``: one clock for the whole path. Each sample: ``call`` sent →
lamp ON bytes at the device; then the counter cancels and the lamp goes off before the next sample.

The lamp-side part alone (relay message → bytes, per device kind, against a bare pyserial write) comes from
:mod:`bench.lamp_latency` and is added to the same table.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Row, Stats, raise_fd_limit, tail_at_most
from bench.relay_rig import ServerProcess, Term, token_of, write_config


async def _end_to_end(n: int, log: Any) -> tuple[list[float], list[float]]:
    from kiosk.client import RelayClient
    from kiosk.config import LampConfig
    from kiosk.devices.emulated import EmulatedLcusBoard
    from kiosk.lamp_agent import LampController

    with tempfile.TemporaryDirectory(prefix="bench-lamp-") as tmp:
        cfg = write_config(Path(tmp), 0, 1, pair_lamps=True)
        counter_id, station_id, dept = cfg.pairs[0]
        server = ServerProcess("relay", cfg.path, Path(tmp) / "relay.log").start()
        device = EmulatedLcusBoard(4, transport="pty")
        on_ms: list[float] = []
        off_ms: list[float] = []
        try:
            with device:
                async with LampController(
                    LampConfig("lcus", device.url, {dept: 1}), keepalive=3600.0
                ) as lamp:
                    client = RelayClient(
                        server.url,
                        token_of("bench-l0"),
                        on_message=lamp.on_message,
                        on_link=lamp.on_link,
                        client_name="bench lamp",
                    )
                    client.start()
                    try:
                        await client.wait_up(30)
                        await device.wait_for(lambda: lamp.device.connected, 10)
                        counter = await Term.open(server.url, counter_id)
                        station = await Term.open(server.url, station_id)
                        for i in range(n + 10):
                            before = len(device.received)
                            t0 = await counter.send({"type": "call", "department": dept})
                            await device.wait_for(lambda: len(device.received) > before, 5)  # noqa: B023 - awaited at once
                            t_on = device.received[before].t
                            _, ringing = await counter.expect("ringing")
                            t1 = await counter.send({"type": "cancel", "call": ringing["call"]})
                            await device.wait_for(lambda: len(device.received) > before + 1, 5)  # noqa: B023 - awaited at once
                            t_off = device.received[before + 1].t
                            await station.expect("ended")
                            if i >= 10:  # the first ones warm up code paths
                                on_ms.append((t_on - t0) * 1000)
                                off_ms.append((t_off - t1) * 1000)
                        await counter.close()
                        await station.close()
                    finally:
                        await client.close()
        finally:
            server.stop()
    return on_ms, off_ms


def run(n: int = 200, quick: bool = False, log: Any = print) -> tuple[list[Row], dict[str, Any]]:
    raise_fd_limit()
    n = 50 if quick else n
    on_ms, off_ms = asyncio.run(_end_to_end(n, log))
    on, off = Stats.of(on_ms, 99), Stats.of(off_ms, 99)
    log(f"touch→lamp: p50 {on.p50:.2f} ms, p99 {on.tail:.2f} ms; cancel→lamp off p99 {off.tail:.2f} ms")
    rows = [
        Row(
            "lamp",
            "LCUS on a pty, via relay process",
            "counter call → lamp ON bytes",
            "ms",
            on,
            None,
            "p99 ≤ 5 ms",
            tail_at_most(5.0),
            "end to end",
        ),
        Row(
            "lamp",
            "LCUS on a pty, via relay process",
            "counter cancel → lamp OFF bytes",
            "ms",
            off,
            None,
            "",
            None,
            "end to end",
        ),
    ]
    detail: dict[str, Any] = {"end_to_end": {"on": vars(on), "off": vars(off)}}
    try:
        from bench import lamp_latency

        t0 = time.monotonic()
        parts = lamp_latency.run(100 if quick else 300)
        detail["lamp_side"] = parts
        base = {r["case"]: r for r in parts if "baseline" in r["metric"]}
        for r in parts:
            if "baseline" in r["metric"]:
                continue
            b = base.get(r["case"]) if r["metric"] == "relay message → bytes at device" else None
            rows.append(
                Row(
                    "lamp",
                    r["case"],
                    r["metric"],
                    "ms",
                    Stats(r["n"], r["p50"], r["p99"], 99),
                    Stats(b["n"], b["p50"], b["p99"], 99) if b else None,
                    "",
                    None,
                    "baseline: bare pyserial write" if b else "",
                )
            )
        log(f"lamp-side cases measured in {time.monotonic() - t0:.1f} s")
    except ImportError as err:  # the lamp helper's module is optional for this runner
        log(f"bench.lamp_latency not available: {err}")
    return rows, detail


if __name__ == "__main__":
    import sys

    from bench.common import render_rows

    rows, _ = run(quick="--quick" in sys.argv)
    print(render_rows(rows))
