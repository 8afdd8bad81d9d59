"""Benchmark 1: relay capacity and latency with N idle terminals, against a bare ``websockets`` forwarder.

For each N (``--terminals``) and each server (the real ``relay-server`` process, then :mod:`bench.forwarder`
with the same config), in one run:

1. start the server as its own process on 127.0.0.1 (port 0) and connect the measuring terminals;
2. connect N idle terminals from several :mod:`bench.idle` processes and record how long that takes;
3. memory per terminal = growth of the server's RSS from before to after the N connections, divided by N;
4. idle CPU = the server's CPU use over a window while the N terminals only ping (they ping every 5 s like
   the kiosk's client, the server pings every 10 s);
5. touch→incoming: one counter sends ``call``, the time until its station receives ``incoming`` (both clients
   live in this process, so one clock), over many sequential calls, each completed (answer, hangup) before
   the next;
6. call set-ups per second: several counter/station pairs each run call → incoming → answer → answered →
   hangup → ended in a closed loop for a few seconds.

The idle terminals are laid out like a real deployment: sites of 10 terminals (4 counters offering the site's
4 departments, 5 staff stations serving them, 1 lamp). The measuring pairs have departments of their own so
nothing else rings. The generated config raises the per-terminal rate limit for the closed loop only (one
counter cannot otherwise place more than ~7 calls/s); everything else is the relay's default.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

from bench.common import (
    ProcSampler,
    Row,
    Stats,
    both,
    raise_fd_limit,
    ratio_at_most,
    rss_bytes,
    tail_at_most,
    tail_below,
)
from bench.relay_rig import (  # the shared rig
    BenchConfig,
    IdleWorkers,
    ServerProcess,
    Term,
    one_call,
    token_of,
    write_config,
)


@dataclass
class ServerResult:
    kind: str
    n_target: int
    n_up: int = 0
    connect_s: float = math.nan
    connect_errors: dict[str, int] = field(default_factory=dict)
    welcome_max_bytes: int = 0
    welcome_over_kiosk_limit: int = 0
    rss_base_mb: float = math.nan
    kib_per_terminal: float = math.nan
    idle_cpu_percent: float = math.nan
    latency: Stats | None = None
    latency_failures: int = 0
    setups_per_s: float = math.nan


async def measure_server(
    kind: str,
    cfg: BenchConfig,
    folder: Path,
    n: int,
    calls: int,
    idle_window: float,
    setup_window: float,
    connect_budget: float,
    log: Any,
    latency_budget: float = 60.0,
) -> ServerResult:
    res = ServerResult(kind, n)
    server = ServerProcess(kind, cfg.path, folder / f"{kind}-{n}.log").start()
    terms: list[tuple[Term, Term, str]] = []
    idle: IdleWorkers | None = None
    try:
        for counter_id, station_id, dept in cfg.pairs:
            terms.append(
                (await Term.open(server.url, counter_id), await Term.open(server.url, station_id), dept)
            )
        for c, s, d in terms[:1]:
            await one_call(c, s, d)  # warm up code paths before the baseline RSS
        await asyncio.sleep(1.0)
        rss0 = rss_bytes(server.pid)
        res.rss_base_mb = rss0 / 2**20
        if n:
            idle = IdleWorkers(server.url, cfg.idle_tokens, n, connect_budget)
            t0 = time.monotonic()
            rep = await idle.start()
            res.connect_s = time.monotonic() - t0
            res.n_up = rep["up"]
            res.connect_errors = rep["errors"]
            res.welcome_max_bytes = rep["welcome_max_bytes"]
            res.welcome_over_kiosk_limit = rep["welcome_over_kiosk_limit"]
            log(
                f"  {kind}: {res.n_up}/{n} idle terminals up in {res.connect_s:.1f} s"
                + (f" (errors {res.connect_errors})" if res.connect_errors else "")
            )
            await asyncio.sleep(2.0)
            if res.n_up:
                res.kib_per_terminal = (rss_bytes(server.pid) - rss0) / 1024 / res.n_up
        sampler = ProcSampler(server.pid).start()
        await asyncio.sleep(idle_window)
        res.idle_cpu_percent = sampler.stop().cpu_percent
        c, s, d = terms[0]
        lat: list[float] = []
        stop_at = time.monotonic() + latency_budget
        for _ in range(calls):
            if time.monotonic() > stop_at:
                log(f"  {kind}: latency budget of {latency_budget:.0f} s used up after {len(lat)} calls")
                break
            try:
                lat.append(await one_call(c, s, d))
            except ConnectionClosed as err:  # e.g. the server stalled longer than the kiosk's ping timeout
                res.latency_failures += 1
                log(f"  {kind}: measuring terminal lost its connection: {err}")
                break
            except (TimeoutError, RuntimeError) as err:
                res.latency_failures += 1
                log(f"  {kind}: call failed: {err}")
                if res.latency_failures > 5:
                    break
                await asyncio.sleep(0.5)
                for t in (c, s):
                    while not t.inbox.empty():
                        t.inbox.get_nowait()
        res.latency = Stats.of(lat, 99)
        log(
            f"  {kind}: touch→incoming p50 {res.latency.p50:.2f} ms, p99 {res.latency.tail:.2f} ms "
            f"({len(lat)} calls); idle CPU {res.idle_cpu_percent:.1f} %, {res.kib_per_terminal:.1f} KiB/terminal"
        )
        done = 0
        deadline = time.monotonic() + setup_window

        async def loop(c: Term, s: Term, d: str) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await one_call(c, s, d)
                done += 1

        t0 = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*(loop(*p) for p in terms)), setup_window + 30)
        except (TimeoutError, RuntimeError, ConnectionClosed) as err:
            log(f"  {kind}: set-up loop stopped: {err!r}")
        res.setups_per_s = done / (time.monotonic() - t0)
        log(f"  {kind}: {res.setups_per_s:.0f} call set-ups/s with {len(terms)} pairs")
    finally:
        for c, s, _ in terms:
            for t in (c, s):
                try:
                    await asyncio.wait_for(t.close(), 5)
                except Exception:  # noqa: BLE001 - the server is about to be killed anyway
                    pass
        server.stop()
        if idle is not None:
            await idle.stop()
    return res


async def run_async(
    terminals: list[int],
    calls: int = 300,
    pairs: int = 8,
    idle_window: float = 12.0,
    setup_window: float = 5.0,
    connect_budget: float = 150.0,
    log: Any = print,
    kinds: tuple[str, ...] = ("relay", "bare"),
    latency_budget: float = 60.0,
) -> tuple[list[Row], dict[str, Any]]:
    raise_fd_limit()
    rows: list[Row] = []
    detail: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        folder = Path(tmp)
        for n in terminals:
            cfg = write_config(folder, n, pairs)
            results: dict[str, ServerResult] = {}
            for kind in kinds:
                log(f"relay bench: N={n}, {kind}")
                results[kind] = await measure_server(
                    kind,
                    cfg,
                    folder,
                    n,
                    calls,
                    idle_window,
                    setup_window,
                    connect_budget,
                    log,
                    latency_budget,
                )
            detail[str(n)] = {
                k: vars(v) | {"latency": vars(v.latency) if v.latency else None} for k, v in results.items()
            }
            rows += rows_for(n, results.get("relay"), results.get("bare"))
    return rows, detail


def rows_for(n: int, ours: ServerResult | None, base: ServerResult | None) -> list[Row]:
    if ours is None:
        return []
    reached = "" if ours.n_up >= n else f" (only {ours.n_up} connected)"
    case = f"N={n}{reached}"
    b = base or ServerResult("bare", n)
    note_welcome = f"largest welcome {ours.welcome_max_bytes / 1024:.0f} KiB" + (
        f"; {ours.welcome_over_kiosk_limit} over the kiosk client's 256 KiB limit"
        if ours.welcome_over_kiosk_limit
        else ""
    )
    goal_lat = both(tail_below(20.0), ratio_at_most(1.3)) if n >= 10000 else ratio_at_most(1.3)
    return [
        Row(
            "relay",
            case,
            "touch→incoming",
            "ms",
            ours.latency,
            b.latency,
            "p99 < 20 ms at 10k, ≤ 1.3× bare" if n >= 10000 else "≤ 1.3× bare",
            goal_lat,
            f"{ours.latency_failures} failed" if ours.latency_failures else "",
        ),
        Row(
            "relay",
            case,
            "call set-ups",
            "1/s",
            ours.setups_per_s,
            b.setups_per_s,
            "",
            None,
            "8 pairs, closed loop",
        ),
        Row(
            "relay",
            case,
            "memory per idle terminal",
            "KiB",
            ours.kib_per_terminal,
            b.kib_per_terminal,
            "≤ 20 KiB",
            tail_at_most(20.0),
        ),
        Row(
            "relay",
            case,
            "idle CPU",
            "% of a core",
            ours.idle_cpu_percent,
            b.idle_cpu_percent,
            "",
            None,
            "pings only",
        ),
        Row("relay", case, "connect N terminals", "s", ours.connect_s, b.connect_s, "", None, note_welcome),
    ]


def run(terminals: list[int], quick: bool = False, log: Any = print) -> tuple[list[Row], dict[str, Any]]:
    """Entry point for the runner: rows for the table plus raw numbers."""
    if quick:
        return asyncio.run(
            run_async(
                terminals,
                calls=60,
                pairs=4,
                idle_window=4.0,
                setup_window=2.0,
                connect_budget=60.0,
                log=log,
                latency_budget=15.0,
            )
        )
    return asyncio.run(run_async(terminals, log=log))


if __name__ == "__main__":
    ns = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "1000").split(",")]
    rows, detail = run(ns, quick="--quick" in sys.argv)
    from bench.common import render_rows

    print(render_rows(rows))
    print(json.dumps(detail, indent=1, default=str)[:4000], file=sys.stderr if os.isatty(1) else sys.stdout)


# ---------------------------------------------------------------------------------------------------
# The relay core alone: cost of one event with N terminals online (no sockets, one process)


def core_event_costs(n: int, folder: Path, repeat: int = 5) -> dict[str, float]:
    """Median ms the pure :class:`RelayCore` spends on one connect, call, answer and hangup at N online.

    The N idle terminals are marked online directly (connecting them one by one through the core is itself
    what is being measured, and costs O(N²) each), then one measuring pair is driven through a call.
    """
    from relay_server.config import load_relay_config
    from relay_server.core import Online, RelayCore

    cfg_files = write_config(folder, n, 1)
    config = load_relay_config(cfg_files.path)
    counter, station, dept = cfg_files.pairs[0]
    ids = iter(range(10**9))
    core = RelayCore(config, lambda: f"k{next(ids)}")
    now = time.time()
    for tid, t in config.terminals.items():
        if not tid.startswith("bench-"):
            core.online[tid] = Online(t.role)
    core._presence_updates(now)  # settle what counters were last told
    costs: dict[str, list[float]] = {
        "connect": [],
        "call": [],
        "answer": [],
        "hangup": [],
        "authenticate": [],
    }

    def timed(name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        out = fn()
        costs[name].append((time.perf_counter() - t0) * 1000)
        return out

    for _ in range(repeat):
        timed("authenticate", lambda: core.authenticate(token_of(station)))
        timed("connect", lambda: core.connect(counter, now))
        core.connect(station, now)
        actions = timed("call", lambda: core.receive(counter, {"type": "call", "department": dept}, now))
        cid = next(a.msg["call"] for a in actions if getattr(a, "msg", {}).get("type") == "ringing")
        timed("answer", lambda c=cid: core.receive(station, {"type": "answer", "call": c}, now))
        timed("hangup", lambda c=cid: core.receive(counter, {"type": "hangup", "call": c}, now))
        core.disconnect(counter, now)
        core.disconnect(station, now)
    return {k: sorted(v)[len(v) // 2] for k, v in costs.items()}


def core_rows(terminals: list[int], log: Any = print) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    detail: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        for n in terminals:
            c = core_event_costs(n, Path(tmp), repeat=5 if n <= 2000 else 1)
            detail[str(n)] = c
            log(f"relay core at N={n}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in c.items()))
            for k, v in c.items():
                rows.append(
                    Row(
                        "relay-core",
                        f"N={n}",
                        f"core time per '{k}'",
                        "ms",
                        v,
                        None,
                        "",
                        None,
                        "pure core, no I/O",
                    )
                )
    return rows, detail
