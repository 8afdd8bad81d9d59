"""Idle terminals for the relay benchmark: one process holding many authenticated websockets open.

Each connection behaves like ``kiosk.client.RelayClient`` on the wire (hello, read every message, the
websockets defaults it uses: permessage-deflate offered, a ping every 5 s) but without its reconnect logic,
and it accepts welcomes of any size so the benchmark can report how large they get instead of failing.

Run by :mod:`bench.relay` as ``python -m bench.idle URL TOKENS_FILE START COUNT``. It prints one JSON line
when all its connections are up (or its time budget ran out), then stays until stdin is closed, then prints
a last line with what it received and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.client import ClientConnection, connect

from bench.common import raise_fd_limit

CONNECT_CONCURRENCY = 48  # handshakes in flight per process; more overflows the listen backlog (100)
KIOSK_MAX_SIZE = 4 * 64 * 1024  # kiosk.client.RelayClient's max_size: a larger welcome would close its socket


class IdleTerminals:
    def __init__(self, url: str, tokens: list[str], budget: float) -> None:
        self.url, self.tokens, self.budget = url, tokens, budget
        self.conns: list[ClientConnection] = []
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.messages = 0
        self.welcome_max = 0
        self.too_large = 0
        self.readers: list[asyncio.Task[None]] = []

    async def _one(self, token: str, sem: asyncio.Semaphore) -> None:
        async with sem:
            for attempt in range(3):
                try:
                    ws = await connect(
                        self.url, open_timeout=30, max_size=None, ping_interval=5, ping_timeout=10
                    )
                    await ws.send(
                        json.dumps({"type": "hello", "token": token, "protocol": 1, "client": "bench idle"})
                    )
                    raw = await asyncio.wait_for(ws.recv(), 60)
                    size = len(raw)
                    self.welcome_max = max(self.welcome_max, size)
                    self.too_large += size > KIOSK_MAX_SIZE
                    if json.loads(raw).get("type") != "welcome":
                        raise RuntimeError(f"expected welcome, got {str(raw)[:80]}")
                    self.conns.append(ws)
                    self.readers.append(asyncio.get_running_loop().create_task(self._read(ws)))
                    return
                except Exception as err:  # noqa: BLE001 - reported as a count per error type
                    name = type(err).__name__
                    if attempt == 2:
                        self.errors[name] = self.errors.get(name, 0) + 1
                        self.failed += 1
                    await asyncio.sleep(0.2 * (attempt + 1))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for _ in ws:
                self.messages += 1
        except Exception:  # noqa: BLE001 - an idle terminal only counts what it receives
            pass

    async def run(self) -> None:
        t0 = time.monotonic()
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
        tasks = [asyncio.ensure_future(self._one(t, sem)) for t in self.tokens]
        done, pending = await asyncio.wait(tasks, timeout=self.budget)
        for t in pending:
            t.cancel()
        print(
            json.dumps(
                {
                    "up": len(self.conns),
                    "failed": self.failed + len(pending),
                    "errors": self.errors,
                    "seconds": round(time.monotonic() - t0, 2),
                    "welcome_max_bytes": self.welcome_max,
                    "welcome_over_kiosk_limit": self.too_large,
                }
            ),
            flush=True,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin
        for r in self.readers:
            r.cancel()
        await asyncio.gather(*(c.close() for c in self.conns), return_exceptions=True)
        print(json.dumps({"messages": self.messages}), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url, tokens_file, start, count = args[0], args[1], int(args[2]), int(args[3])
    budget = float(args[4]) if len(args) > 4 else 120.0
    raise_fd_limit()
    with open(tokens_file) as f:
        tokens = [line.strip() for line in f][start : start + count]
    asyncio.run(IdleTerminals(url, tokens, budget).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
