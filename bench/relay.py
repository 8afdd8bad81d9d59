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
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import (
    ROOT,
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
from relay_server.config import hash_token

SITE_COUNTERS, SITE_STATIONS, SITE_LAMPS = 4, 5, 1
SITE_SIZE = SITE_COUNTERS + SITE_STATIONS + SITE_LAMPS
TERMINALS_PER_WORKER = 2500
DEPT_NAME = '{ ja = "ベンチ課", en = "Bench Division" }'
FALLBACK = '{ phone = "0133-00-0000", hours_ja = "平日", hours_en = "Weekdays" }'


def token_of(terminal: str) -> str:
    return f"bench-token-{terminal}"


@dataclass
class BenchConfig:
    path: Path
    idle_tokens: Path
    n_idle: int
    pairs: list[tuple[str, str, str]]  # (counter id, station id, department)


def write_config(
    folder: Path, n_idle: int, pairs: int, pair_lamps: bool = False, grace_period: float = 20.0
) -> BenchConfig:
    """A relay TOML with ``n_idle`` site terminals plus ``pairs`` measuring counter/station pairs.

    With ``pair_lamps`` each pair's department also has a lamp agent ``bench-l{i}``.
    """
    out = [
        "[server]",
        'host = "127.0.0.1"',
        "port = 0",
        f'database = "{folder / "calls.sqlite3"}"',
        "ring_timeout = 60",
        f"grace_period = {grace_period}",
        "rate_limit = 100000.0",
        "rate_burst = 100000",
        # Every benchmark terminal connects from 127.0.0.1: lift the per-address cap (kiosks behind one NAT).
        "max_connections = 100000",
        "max_connections_per_address = 100000",
        "",
        "[ice]",
        "servers = []",
        "",
        "[[office]]",
        'id = "bench"',
        'name = { ja = "ベンチ町役場", en = "Bench Town Office" }',
        'timezone = "Asia/Tokyo"',
        "",
    ]
    # Each site is a town office of its own, as in a prefecture-wide deployment.
    for s in range(math.ceil(n_idle / SITE_SIZE)):
        out += [
            "[[office]]",
            f'id = "site{s:05d}"',
            'name = { ja = "町役場", en = "Town Office" }',
            'timezone = "Asia/Tokyo"',
            "",
        ]
    depts: list[str] = []
    terminals: list[tuple[str, str, list[str]]] = []
    sites = math.ceil(n_idle / SITE_SIZE)
    idle_ids: list[str] = []
    for s in range(sites):
        site_depts = [f"d{s:05d}-{k}" for k in range(4)]
        depts += site_depts
        members = (
            [(f"c{s:05d}-{k}", "counter") for k in range(SITE_COUNTERS)]
            + [(f"o{s:05d}-{k}", "office") for k in range(SITE_STATIONS)]
            + [(f"l{s:05d}-{k}", "lamp") for k in range(SITE_LAMPS)]
        )
        for tid, role in members:
            if len(idle_ids) < n_idle:
                terminals.append((tid, role, site_depts))
                idle_ids.append(tid)
    pair_list = []
    for i in range(pairs):
        d = f"bench-{i}"
        depts.append(d)
        terminals += [(f"bench-c{i}", "counter", [d]), (f"bench-o{i}", "office", [d])]
        if pair_lamps:
            terminals.append((f"bench-l{i}", "lamp", [d]))
        pair_list.append((f"bench-c{i}", f"bench-o{i}", d))
    for d in depts:
        office = f"site{d[1:6]}" if d.startswith("d") else "bench"
        out += [
            "[[department]]",
            f'id = "{d}"',
            f'office = "{office}"',
            f"name = {DEPT_NAME}",
            'hours = "always"',
            f"fallback = {FALLBACK}",
            "",
        ]
    for tid, role, ds in terminals:
        out += [
            "[[terminal]]",
            f'id = "{tid}"',
            f'role = "{role}"',
            f'name = "{tid}"',
            "departments = [" + ", ".join(f'"{d}"' for d in ds) + "]",
            f'token_hash = "{hash_token(token_of(tid))}"',
            "",
        ]
    path = folder / "relay.toml"
    path.write_text("\n".join(out), encoding="utf-8")
    tokens = folder / "idle-tokens.txt"
    tokens.write_text("".join(token_of(t) + "\n" for t in idle_ids))
    return BenchConfig(path, tokens, len(idle_ids), pair_list)


# ---------------------------------------------------------------------------------------------------
# Processes


class ServerProcess:
    """The relay (``kind="relay"``) or the bare forwarder (``kind="bare"``) as a process on 127.0.0.1:0."""

    def __init__(self, kind: str, config: Path, log_path: Path) -> None:
        self.kind = kind
        module = "relay_server" if kind == "relay" else "bench.forwarder"
        self.cmd = [
            sys.executable,
            "-m",
            module,
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        # The relay logs at its default level (INFO) like in production, into a file instead of journald.
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                self.url = line.split()[2]
                return self
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"{self.kind} server did not start: see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        # SIGKILL: a graceful stop with thousands of connections measures shutdown, not what we want here.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


class IdleWorkers:
    """Several :mod:`bench.idle` processes holding ``n`` idle terminals."""

    def __init__(self, url: str, tokens: Path, n: int, budget: float) -> None:
        self.url, self.tokens, self.n, self.budget = url, tokens, n, budget
        self.procs: list[asyncio.subprocess.Process] = []
        self.reports: list[dict[str, Any]] = []

    async def start(self) -> dict[str, Any]:
        workers = max(1, math.ceil(self.n / TERMINALS_PER_WORKER))
        per = math.ceil(self.n / workers)
        for w in range(workers):
            count = min(per, self.n - w * per)
            if count <= 0:
                break
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.idle",
                    self.url,
                    str(self.tokens),
                    str(w * per),
                    str(count),
                    str(self.budget),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    cwd=ROOT,
                )
            )
        for p in self.procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), self.budget + 60)
            self.reports.append(json.loads(line or b"{}"))
        up = sum(r.get("up", 0) for r in self.reports)
        errors: dict[str, int] = {}
        for r in self.reports:
            for k, v in r.get("errors", {}).items():
                errors[k] = errors.get(k, 0) + v
        return {
            "up": up,
            "seconds": max((r.get("seconds", 0.0) for r in self.reports), default=0.0),
            "errors": errors,
            "welcome_max_bytes": max((r.get("welcome_max_bytes", 0) for r in self.reports), default=0),
            "welcome_over_kiosk_limit": sum(r.get("welcome_over_kiosk_limit", 0) for r in self.reports),
        }

    async def stop(self) -> None:
        for p in self.procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 20)
            except TimeoutError:
                p.kill()
                await p.wait()


# ---------------------------------------------------------------------------------------------------
# Measuring terminals


@dataclass
class Term:
    """One measuring terminal: a websocket like the kiosk's, messages time-stamped as they arrive."""

    ws: ClientConnection
    inbox: asyncio.Queue[tuple[float, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, terminal: str) -> Term:
        ws = await connect(url, open_timeout=30, max_size=None, ping_interval=5, ping_timeout=10)
        t = cls(ws)
        t.reader = asyncio.get_running_loop().create_task(t._read())
        await t.send({"type": "hello", "token": token_of(terminal), "protocol": 1, "client": "bench"})
        await t.expect("welcome", 30)
        return t

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.inbox.put_nowait((time.perf_counter(), json.loads(raw)))
        except Exception:  # noqa: BLE001 - the expect() that times out reports it
            pass

    async def send(self, msg: dict[str, Any]) -> float:
        t = time.perf_counter()
        await self.ws.send(json.dumps(msg, separators=(",", ":")))
        return t

    async def expect(self, kind: str, timeout: float = 10.0) -> tuple[float, dict[str, Any]]:
        """The next message of type ``kind``; others (presence, ringing, taken…) are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no '{kind}' within {timeout} s")
            t, msg = await asyncio.wait_for(self.inbox.get(), left)
            if msg.get("type") == kind:
                return t, msg
            if msg.get("type") == "error":
                raise RuntimeError(f"server error while waiting for '{kind}': {msg}")

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


async def one_call(counter: Term, station: Term, department: str) -> float:
    """A whole call without media; returns touch→incoming in ms."""
    t0 = await counter.send({"type": "call", "department": department})
    t1, incoming = await station.expect("incoming")
    call = incoming["call"]
    await station.send({"type": "answer", "call": call})
    await counter.expect("answered")
    await counter.send({"type": "hangup", "call": call})
    await counter.expect("ended")
    await station.expect("ended")
    return (t1 - t0) * 1000.0


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
