"""A headless terminal for the network test bed, run inside a namespace: JSON event lines out, commands in.

``python tests/netbed_peer.py station|counter --config FILE``. It prints one JSON object per line
(``{"event": ...}``): ``ready``, every session event (``connection_state``, ``first_frame``, ``reconnecting``,
``reconnected``, ``ended`` …, with the media path once connected), ``frames`` (counts per remote track, every
0.5 s) and the outcome of commands. Commands on stdin, one per line: ``call DEPARTMENT`` (counter),
``still`` (station: ask the counter for a document still), ``hangup``, ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from typing import Any

from kiosk.config import load_terminal_config
from kiosk.headless import HeadlessCounter, HeadlessStation, HeadlessTerminal
from kiosk.video.session import CallSession, SessionEvent, SessionState

T0 = time.monotonic()


def out(event: str, **fields: Any) -> None:
    print(
        json.dumps({"event": event, "t": round(time.monotonic() - T0, 3), **fields}, default=str), flush=True
    )


def on_event(terminal: HeadlessTerminal) -> Any:
    def handle(ev: SessionEvent) -> None:
        fields: dict[str, Any] = {
            "member": ev.member,
            "track": ev.track,
            "state": ev.state,
            "reason": ev.reason,
        }
        session = terminal.session
        if session is not None and ev.member and ev.state == "connected":
            path = getattr(session, "media_path", None)
            if callable(path):
                fields["path"] = path(ev.member)
        fields.update(
            {k: v for k, v in ev.detail.items() if isinstance(v, (str, int, float, bool, type(None)))}
        )
        out(ev.kind.value, **fields)

    return handle


async def report_frames(terminal: HeadlessTerminal) -> None:
    while True:
        await asyncio.sleep(0.5)
        session: CallSession | None = terminal.session
        if session is None or session.state is SessionState.ENDED:
            continue
        out("frames", tracks={f"{t.member}/{t.label}": t.frames for t in session.remote_tracks()})


async def commands(terminal: HeadlessTerminal, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not stop.is_set():
        line = (await reader.readline()).decode().strip()
        if not line:
            if reader.at_eof():
                stop.set()
            continue
        cmd, _, arg = line.partition(" ")
        try:
            if cmd == "call" and isinstance(terminal, HeadlessCounter):
                call = await terminal.place_call(arg or "juumin")
                out("ringing", call=call)
            elif cmd == "still" and terminal.session is not None:
                t = time.monotonic()
                still = await terminal.session.request_still(timeout=60)
                from kiosk.video.still import pixels_sha256

                out(
                    "still",
                    ok=True,
                    seconds=round(time.monotonic() - t, 3),
                    width=still.width,
                    height=still.height,
                    sha256=pixels_sha256(still.rgb),
                    bytes=len(still.png),
                )
            elif cmd == "hangup" and terminal.session is not None:
                await terminal.session.hangup()
                out("hung_up")
            elif cmd == "quit":
                stop.set()
            else:
                out("error", message=f"unknown or impossible command {line!r}")
        except Exception as err:  # the test reads the failure from the output
            out("error", command=cmd, message=f"{type(err).__name__}: {err}")


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=("station", "counter"))
    p.add_argument("--config", required=True)
    args = p.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    terminal: HeadlessTerminal
    if args.role == "station":
        station = HeadlessStation(load_terminal_config(args.config, "office"), auto_answer=0.0)
        station.on_event = on_event(station)
        terminal = station
    else:
        counter = HeadlessCounter(load_terminal_config(args.config, "counter"))
        counter.on_event = on_event(counter)
        terminal = counter
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # closing the terminal hangs up a call in progress
    async with terminal:
        welcome = await terminal.wait_up(30)
        out("ready", terminal=welcome.get("terminal"), ice_servers=len(welcome.get("ice_servers") or []))
        await terminal.paths.refresh()
        out(
            "paths",
            order=[p.url for p in terminal.paths.ordered()],
            probes={
                u: {"ok": r.ok, "failure": r.failure, "seconds": r.seconds, "detail": r.detail}
                for u, r in terminal.paths.results.items()
            },
        )
        tasks = [
            asyncio.ensure_future(report_frames(terminal)),
            asyncio.ensure_future(commands(terminal, stop)),
        ]
        await stop.wait()
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
