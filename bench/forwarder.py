"""The relay benchmark's baseline: a bare ``websockets`` server that only forwards the same messages.

It reads the same relay TOML as the real relay (so the same tokens and departments work) and answers the same
messages with the same shapes, but does nothing else: no schema validation, no rate limit, no presence, no
timers, no call log, no metrics, no log lines. Routing is a few dict look-ups. What remains is the floor any
Python relay built on ``websockets`` pays: the handshake, framing, JSON and the event loop.

Run: ``python -m bench.forwarder --config relay.toml [--port 0]``; prints ``listening on ws://...``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from relay_server.config import RelayConfig, hash_token, load_relay_config


@dataclass
class FwdCall:
    id: str
    counter: str
    department: str
    rung: list[str]
    members: list[str] = field(default_factory=list)


class Forwarder:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.by_hash = {t.token_hash: t.id for t in config.terminals.values()}
        self.conns: dict[str, ServerConnection] = {}
        # department → stations serving it, precomputed (the baseline does not filter by online/away)
        self.stations: dict[str, list[str]] = {}
        for t in config.terminals.values():
            if t.role in ("office", "lamp"):
                for d in t.departments:
                    self.stations.setdefault(d, []).append(t.id)
        self.calls: dict[str, FwdCall] = {}
        self.ids = itertools.count(1)

    def _send(self, to: str, msg: dict[str, Any]) -> None:
        ws = self.conns.get(to)
        if ws is not None:
            asyncio.ensure_future(ws.send(json.dumps(msg, separators=(",", ":"))))

    async def handle(self, ws: ServerConnection) -> None:
        try:
            hello = json.loads(await ws.recv())
            terminal = self.by_hash.get(hash_token(hello.get("token", "")))
        except Exception:
            return
        if terminal is None:
            await ws.close(4401, "unauthorized")
            return
        t = self.config.terminals[terminal]
        self.conns[terminal] = ws
        await ws.send(
            json.dumps(
                {
                    "type": "welcome",
                    "terminal": terminal,
                    "role": t.role,
                    "protocol": 1,
                    "departments": [{"id": d} for d in t.departments],
                    "ice_servers": [],
                }
            )
        )
        try:
            async for raw in ws:
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "call":
                    cid = f"c{next(self.ids)}"
                    call = FwdCall(
                        cid, terminal, msg["department"], self.stations.get(msg["department"], []), [terminal]
                    )
                    self.calls[cid] = call
                    self._send(terminal, {"type": "ringing", "call": cid, "department": call.department})
                    for s in call.rung:
                        self._send(
                            s,
                            {
                                "type": "incoming",
                                "call": cid,
                                "department": call.department,
                                "from": terminal,
                            },
                        )
                elif kind == "answer":
                    call = self.calls[msg["call"]]
                    call.members.append(terminal)
                    self._send(call.counter, {"type": "answered", "call": call.id, "by": terminal})
                    self._send(
                        terminal,
                        {
                            "type": "call_state",
                            "call": call.id,
                            "state": "active",
                            "department": call.department,
                            "counter": call.counter,
                            "members": call.members,
                            "offline": [],
                        },
                    )
                    for s in call.rung:
                        if s != terminal:
                            self._send(s, {"type": "taken", "call": call.id, "by": terminal})
                elif kind in ("hangup", "cancel"):
                    call = self.calls.pop(msg["call"])
                    ended = {"type": "ended", "call": call.id, "reason": "hangup", "by": terminal}
                    for m in set(call.members) | set(call.rung):
                        self._send(m, ended)
                elif kind == "signal":
                    self._send(
                        msg["to"],
                        {"type": "signal", "call": msg["call"], "from": terminal, "data": msg["data"]},
                    )
                elif kind == "ping":
                    self._send(terminal, {"type": "pong", "time": 0})
        except Exception:
            pass
        finally:
            if self.conns.get(terminal) is ws:
                del self.conns[terminal]


async def _serve(config: RelayConfig, host: str, port: int) -> None:
    fwd = Forwarder(config)
    # Same transport settings as the relay (relay_server/server.py) so only the relay's own work differs.
    async with serve(
        fwd.handle,
        host,
        port,
        ping_interval=10,
        ping_timeout=20,
        server_header=None,
        compression=None,
        max_size=max(config.max_message_bytes * 4, 1 << 20),
    ) as server:
        sock = next(iter(server.sockets))
        print(f"listening on ws://{host}:{sock.getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.forwarder", description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    asyncio.run(_serve(load_relay_config(args.config), args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
