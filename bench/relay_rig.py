"""The rig every benchmark that needs a relay stands on: a generated ``relay.toml`` laid out like a deployment
(sites of counters, stations and a lamp; pairs of measuring terminals with departments of their own), the relay
(or the bare forwarder) as a process on 127.0.0.1, idle terminals in worker processes, and measuring terminals
that time-stamp what they receive.

Used by :mod:`bench.relay` (capacity and latency), :mod:`bench.soak`, :mod:`bench.lamp`, :mod:`bench.media`,
:mod:`bench.legibility`, :mod:`bench.chromium` and :mod:`bench.media_profile`.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.common import (
    ROOT,
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
