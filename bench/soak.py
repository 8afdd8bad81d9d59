"""Soak benchmark (issue 13 point 8): many call cycles against one relay process with idle terminals attached,
looking for anything that grows or sticks.

    python -m bench.soak                        # 10,000 cycles, 1,000 idle terminals
    python -m bench.soak --cycles 500 --idle 100

One relay process (127.0.0.1, port 0, its default settings apart from the rate limit and per-address cap that a
closed loop from one address needs, and a 1 s grace period so that drops end quickly); ``--idle`` terminals held
by :mod:`bench.idle` processes; ``--pairs`` workers each running cycles with their own counter and two stations:

    call → incoming → answer → answered/call_state → signal both ways → invite the second station → it answers
    (joined) → signal to it → it leaves → hangup → ended

with random variations: 10 % the counter cancels while it rings, 5 % the counter's socket is dropped in the
call (the relay's grace period ends it; the counter reconnects), 5 % the station declines the invite.

Before (after a warm-up of ``--warmup`` cycles) and after: the relay's RSS and open file descriptors (from /proc),
its asyncio task count (``relay_tasks`` on /metrics), calls in progress (/healthz) and call-log rows (SQLite).
Growth beyond noise, a call left ringing or active, or a row left unfinished is a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import raise_fd_limit, rss_bytes
from bench.relay_rig import IdleWorkers, ServerProcess, Term, write_config


@dataclass
class Snapshot:
    rss_mb: float
    fds: int
    tasks: int
    ringing: int
    active: int
    rows: int
    unfinished: int

    @classmethod
    def take(cls, pid: int, url: str, db: Path) -> Snapshot:
        http = url.replace("ws://", "http://")
        with urllib.request.urlopen(http + "/healthz", timeout=10) as r:
            health = json.loads(r.read())
        with urllib.request.urlopen(http + "/metrics", timeout=10) as r:
            tasks = next(
                int(float(line.split()[1]))
                for line in r.read().decode().splitlines()
                if line.startswith("relay_tasks ")
            )
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
            unfinished = conn.execute("SELECT count(*) FROM calls WHERE ended_at IS NULL").fetchone()[0]
        return cls(
            rss_bytes(pid) / 2**20,
            len(os.listdir(f"/proc/{pid}/fd")),
            tasks,
            health["calls_ringing"],
            health["calls_active"],
            rows,
            unfinished,
        )


@dataclass
class Tally:
    cycles: int = 0
    answered: int = 0
    cancelled: int = 0
    dropped: int = 0
    declined: int = 0
    joined: int = 0
    failures: list[str] = field(default_factory=list)


class Worker:
    """One counter and two stations of a department of their own, running cycles one after the other."""

    def __init__(self, url: str, counter: str, station: str, helper: str, department: str, seed: int) -> None:
        self.url, self.counter_id, self.station_id, self.helper_id = url, counter, station, helper
        self.department = department
        self.rng = random.Random(seed)
        self.counter: Term | None = None
        self.station: Term | None = None
        self.helper: Term | None = None

    async def open(self) -> None:
        self.counter = await Term.open(self.url, self.counter_id)
        self.station = await Term.open(self.url, self.station_id)
        self.helper = await Term.open(self.url, self.helper_id)

    async def close(self) -> None:
        for t in (self.counter, self.station, self.helper):
            if t is not None:
                await t.close()

    async def cycle(self, tally: Tally) -> None:
        counter, station, helper = self.counter, self.station, self.helper
        assert counter and station and helper
        await counter.send({"type": "call", "department": self.department})
        _, ringing = await counter.expect("ringing")
        call = ringing["call"]
        await station.expect("incoming")
        if self.rng.random() < 0.10:
            await counter.send({"type": "cancel", "call": call})
            await counter.expect("ended")
            await station.expect("ended")
            tally.cancelled += 1
            return
        await station.send({"type": "answer", "call": call})
        await counter.expect("answered")
        await station.expect("call_state")
        tally.answered += 1
        await counter.send(
            {
                "type": "signal",
                "call": call,
                "to": self.station_id,
                "data": {"kind": "offer", "sdp": "v=0 " + "x" * 2000},
            }
        )
        await station.expect("signal")
        await station.send(
            {
                "type": "signal",
                "call": call,
                "to": self.counter_id,
                "data": {"kind": "answer", "sdp": "v=0 " + "y" * 2000},
            }
        )
        await counter.expect("signal")
        if self.rng.random() < 0.05:
            # The kiosk's network drops mid-call: the relay's grace period (1 s here) ends the call.
            assert counter.ws.transport is not None
            counter.ws.transport.abort()
            await station.expect("ended", timeout=15)
            await counter.close()
            self.counter = await Term.open(self.url, self.counter_id)
            tally.dropped += 1
            return
        await station.send({"type": "invite", "call": call, "terminal": self.helper_id})
        await helper.expect("incoming")
        if self.rng.random() < 0.05:
            await helper.send({"type": "decline", "call": call})
            await station.expect("declined")
            tally.declined += 1
        else:
            await helper.send({"type": "answer", "call": call})
            await helper.expect("call_state")
            await counter.expect("joined")
            await counter.send(
                {"type": "signal", "call": call, "to": self.helper_id, "data": {"kind": "offer"}}
            )
            await helper.expect("signal")
            await helper.send({"type": "leave", "call": call})
            await helper.expect("ended")
            await counter.expect("left")
            tally.joined += 1
        await counter.send({"type": "hangup", "call": call})
        await counter.expect("ended")
        await station.expect("ended")

    async def run(self, cycles: int, tally: Tally) -> None:
        for _ in range(cycles):
            try:
                await self.cycle(tally)
            except Exception as err:  # noqa: BLE001 - counted and reported; the worker starts clean again
                tally.failures.append(f"{type(err).__name__}: {err}")
                await self.close()
                await self.open()
            tally.cycles += 1


def write(folder: Path, idle: int, pairs: int) -> tuple[Path, Path, list[tuple[str, str, str, str]]]:
    """The benchmark's relay config: ``pairs`` * 2 measuring pairs (the second half lend their stations as the
    invited helpers) plus ``idle`` site terminals."""
    cfg = write_config(folder, idle, pairs * 2, grace_period=1.0)
    workers = [(c, s, cfg.pairs[i + pairs][1], d) for i, (c, s, d) in enumerate(cfg.pairs[:pairs])]
    return cfg.path, cfg.idle_tokens, workers


async def soak(cycles: int, idle: int, pairs: int, warmup: int, log: Any) -> dict[str, Any]:
    raise_fd_limit()
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    config, tokens, plan = write(folder, idle, pairs)
    server = ServerProcess("relay", config, folder / "relay.log").start()
    db = folder / "calls.sqlite3"
    idlers = IdleWorkers(server.url, tokens, idle, budget=120.0)
    try:
        up = await idlers.start()
        log(f"{up['up']} idle terminals up in {up['seconds']:.1f} s")
        workers = [Worker(server.url, c, s, h, d, seed=i) for i, (c, s, h, d) in enumerate(plan)]
        for w in workers:
            await w.open()
        warm = Tally()
        await asyncio.gather(*(w.run(max(1, warmup // pairs), warm) for w in workers))
        await asyncio.sleep(2.0)  # grace periods of warm-up drops run out
        before = Snapshot.take(server.pid, server.url, db)
        log(f"before: {before}")
        tally = Tally()
        t0 = time.monotonic()
        half = cycles // 2
        for k, part in enumerate((half, cycles - half)):  # growth that stops after the 1st half is warm-up
            per = part // pairs
            await asyncio.gather(*(w.run(per + (i < part % pairs), tally) for i, w in enumerate(workers)))
            if k == 0:
                await asyncio.sleep(2.0)
                mid = Snapshot.take(server.pid, server.url, db)
                log(f"half-way: {mid}")
        seconds = time.monotonic() - t0 - 2.0
        await asyncio.sleep(2.0)
        after = Snapshot.take(server.pid, server.url, db)
        log(f"after: {after}")
        for w in workers:
            await w.close()
        await idlers.stop()
        return {
            "cycles": tally.cycles,
            "seconds": seconds,
            "tally": tally,
            "warmup": warm,
            "before": before,
            "mid": mid,
            "after": after,
            "idle_up": up["up"],
            "pairs": pairs,
            "log": str(folder / "relay.log"),
        }
    finally:
        server.stop()


def report(r: dict[str, Any]) -> str:
    b, m, a, t = r["before"], r["mid"], r["after"], r["tally"]
    rows = [
        (
            "RSS (MB)",
            f"{b.rss_mb:.1f}",
            f"{m.rss_mb:.1f}",
            f"{a.rss_mb:.1f}",
            f"{m.rss_mb - b.rss_mb:+.1f} / {a.rss_mb - m.rss_mb:+.1f}",
        ),
        ("open file descriptors", b.fds, m.fds, a.fds, f"{m.fds - b.fds:+d} / {a.fds - m.fds:+d}"),
        ("asyncio tasks", b.tasks, m.tasks, a.tasks, f"{m.tasks - b.tasks:+d} / {a.tasks - m.tasks:+d}"),
        (
            "calls ringing / active",
            f"{b.ringing} / {b.active}",
            f"{m.ringing} / {m.active}",
            f"{a.ringing} / {a.active}",
            "",
        ),
        (
            "call-log rows (unfinished)",
            f"{b.rows} ({b.unfinished})",
            f"{m.rows} ({m.unfinished})",
            f"{a.rows} ({a.unfinished})",
            f"{m.rows - b.rows:+d} / {a.rows - m.rows:+d}",
        ),
    ]
    out = [
        f"{r['cycles']} cycles in {r['seconds']:.1f} s ({r['cycles'] / r['seconds']:.0f}/s), {r['pairs']} "
        f"workers, {r['idle_up']} idle terminals; answered {t.answered}, cancelled {t.cancelled}, dropped "
        f"{t.dropped}, invite joined {t.joined}, declined {t.declined}; failed cycles {len(t.failures)}",
        "",
        "| quantity | before | half-way | after | change (1st half / 2nd half) |",
        "| --- | --- | --- | --- | --- |",
    ]
    out += [f"| {q} | {x} | {h} | {y} | {d} |" for q, x, h, y, d in rows]
    if t.failures:
        out += ["", "failures (first 5): " + "; ".join(t.failures[:5])]
    return "\n".join(out)


def verdict(r: dict[str, Any]) -> list[str]:
    """What makes the soak fail: growth beyond noise, stuck calls, unfinished rows, failed cycles."""
    b, m, a, t = r["before"], r["mid"], r["after"], r["tally"]
    problems = []
    # Growth in the second half as large as in the first would be a leak; allocator warm-up shows in the first.
    if a.rss_mb - m.rss_mb > max(4.0, 0.05 * b.rss_mb):
        problems.append(f"RSS grew {a.rss_mb - m.rss_mb:.1f} MB in the second half")
    if a.fds - b.fds > 5:
        problems.append(f"{a.fds - b.fds} more file descriptors")
    if a.tasks - b.tasks > 5:
        problems.append(f"{a.tasks - b.tasks} more tasks")
    if a.ringing or a.active:
        problems.append(f"stuck calls: {a.ringing} ringing, {a.active} active")
    if a.unfinished:
        problems.append(f"{a.unfinished} call-log rows unfinished")
    expected_rows = t.cycles - len(t.failures)
    if a.rows - b.rows < expected_rows:
        problems.append(f"{a.rows - b.rows} call-log rows for {expected_rows} calls")
    if t.failures:
        problems.append(f"{len(t.failures)} failed cycles")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cycles", type=int, default=10_000)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--warmup", type=int, default=200)
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    result = asyncio.run(soak(args.cycles, args.idle, args.pairs, args.warmup, log))
    print(report(result))
    problems = verdict(result)
    print(
        "\nverdict: "
        + ("OK: no growth beyond noise, no stuck calls" if not problems else "; ".join(problems))
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
