"""One side of the media benchmark: the project's headless counter or staff station as its own process.

Run by :mod:`bench.media` (never by hand, but it can be)::

    python -m bench.media_peer --role counter --config counter.toml --url ws://... --department D \
        --calls 20 --hold 1
    python -m bench.media_peer --role office --config office.toml --url ws://...

It uses :class:`kiosk.headless.HeadlessCounter` / :class:`kiosk.headless.HeadlessStation` exactly as the
demo and ``kiosk call-test`` do (the same sources, session, codec choice and ICE restriction), and adds only
measurement hooks:

- the moment the station sends ``answer`` (``time.monotonic()``: one clock for every process on Linux);
- the first decoded frame of every remote track (the session's own ``first_frame_at``);
- glass-to-glass: every decoded remote video frame that reaches the screen's frame sink is read back with
  :func:`kiosk.video.stamp.read_frame_stamp`; latency = wall clock now − capture time in the stamp.

It prints one JSON object per line: ``{"event": "ready"}``, then per call ``answer`` (station) and ``call``
(counter: timings and glass-to-glass samples per track), and ``media_up`` when every remote track has shown a
frame (the benchmark starts sampling CPU then). The counter exits after its calls; the station when stdin
closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KIVY_NO_ARGS", "1")


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


class StampReader:
    """Wraps a FrameSink's ``put`` to read the frame stamp of every frame that reaches the screen."""

    def __init__(self, sink: Any) -> None:
        from kiosk.video.stamp import read_frame_stamp

        self.samples: list[float] = []
        self.unreadable = 0
        self.frames = 0
        self.last_counter = -1
        self.skipped = 0
        self.sizes: dict[str, int] = {}  # "W×H" → frames received at that size (the camera may adapt)
        self.sink = sink
        self.decoded = 0  # set by attach_readers: frames the remote track delivered (decoded)
        self.track: Any = None
        self._base = (0, 0)
        original = sink.put

        def put(frame: Any) -> int:
            seq: int = original(frame)
            now_ms = time.time() * 1000.0
            latest = sink.latest()
            if latest is None:
                return seq
            stamp = read_frame_stamp(latest[1])
            self.frames += 1
            size = f"{latest[1].shape[1]}×{latest[1].shape[0]}"
            self.sizes[size] = self.sizes.get(size, 0) + 1
            if stamp is not None and not self._plausible(stamp, now_ms):
                stamp = None  # a CRC-8 collision on an unreadable frame: count it as unreadable
            if stamp is None:
                self.unreadable += 1
            else:
                counter, capture_ms = stamp
                if self.last_counter >= 0 and counter > self.last_counter + 1:
                    self.skipped += counter - self.last_counter - 1
                self.last_counter = counter
                self.samples.append(now_ms - capture_ms)
            return seq

        sink.put = put

    def _plausible(self, stamp: tuple[int, int], now_ms: float) -> bool:
        """Captured within the last 10 s, and a counter at most 10 000 frames past the last one (not behind)."""
        counter, capture_ms = stamp
        if not 0 <= now_ms - capture_ms < 10_000:
            return False
        return self.last_counter < 0 or self.last_counter <= counter <= self.last_counter + 10_000

    def take(self) -> dict[str, Any]:
        decoded = int(getattr(self.track, "frames", 0))
        dropped = int(getattr(self.sink, "frames_dropped", 0))
        out = {
            "g2g_ms": self.samples,
            "frames": self.frames,
            "unreadable": self.unreadable,
            "skipped": self.skipped,
            "sizes": self.sizes,
            "decoded": decoded - self._base[0],  # frames the decoder delivered to the screen's sink
            "dropped_by_sink": dropped
            - self._base[1],  # newer decoded frame came before this one was converted
        }
        self.samples, self.frames, self.unreadable, self.skipped, self.sizes = [], 0, 0, 0, {}
        self._base = (decoded, dropped)
        return out


def attach_readers(session: Any, readers: dict[str, StampReader]) -> None:
    for rt in session.remote_tracks():
        key = f"{rt.member}/{rt.label}"
        if rt.label != "audio" and rt.frame_sink is not None and key not in readers:
            readers[key] = StampReader(rt.frame_sink)
            readers[key].track = rt.track
            readers[key]._base = (
                int(getattr(rt.track, "frames", 0)),
                int(getattr(rt.frame_sink, "frames_dropped", 0)),
            )


async def wait_media(session: Any, expected: int, timeout: float) -> dict[str, float]:
    """Wait until ``expected`` remote video tracks have a first frame; their first-frame times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = [t for t in session.remote_tracks() if t.label != "audio"]
        if len(video) >= expected and all(t.first_frame_at is not None for t in video):
            return {f"{t.member}/{t.label}": t.first_frame_at for t in video}
        await asyncio.sleep(0.005)
    return {
        f"{t.member}/{t.label}": t.first_frame_at
        for t in session.remote_tracks()
        if t.label != "audio" and t.first_frame_at is not None
    }


async def run_counter(args: argparse.Namespace) -> int:
    from kiosk.config import load_terminal_config
    from kiosk.headless import HeadlessCounter
    from kiosk.video.session import SessionState

    config = load_terminal_config(args.config, "counter")
    async with HeadlessCounter(config, url=args.url) as counter:
        await counter.wait_up(30)
        emit(event="ready")
        for i in range(args.calls):
            session = await counter.call(args.department, timeout=15)
            t_call = time.monotonic()
            while session.state is SessionState.WAITING and time.monotonic() - t_call < 15:
                await asyncio.sleep(0.002)
            answered_at = time.monotonic()
            readers: dict[str, StampReader] = {}
            first = await wait_media(session, 1, args.media_timeout)
            attach_readers(session, readers)
            emit(event="media_up", call=session.call_id, index=i)
            t_hold = time.monotonic()
            while time.monotonic() - t_hold < args.hold and session.state is SessionState.ACTIVE:
                attach_readers(session, readers)
                await asyncio.sleep(0.05)
            held = time.monotonic() - t_hold
            emit(
                event="call",
                call=session.call_id,
                index=i,
                call_at=t_call,
                answered_seen_at=answered_at,
                first_frame_at=first,
                held_s=held,
                state=session.state.value,
                tracks={k: r.take() for k, r in readers.items()},
            )
            await session.hangup()
            await session.close()
            counter.session = None
            await asyncio.sleep(args.pause)
    emit(event="done")
    return 0


async def run_office(args: argparse.Namespace) -> int:
    from kiosk.config import load_terminal_config
    from kiosk.headless import HeadlessStation
    from kiosk.video.session import EventKind, SessionEvent

    config = load_terminal_config(args.config, "office")
    readers: dict[str, dict[str, StampReader]] = {}
    first: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    station: HeadlessStation

    def on_event(ev: SessionEvent) -> None:
        if ev.kind is EventKind.ENDED:
            s = station.session
            if s is not None and s.call_id in readers:
                emit(
                    event="station_call",
                    call=s.call_id,
                    first_frame_at=dict(first),
                    tracks={k: r.take() for k, r in readers.pop(s.call_id).items()},
                )
            first.clear()
        elif ev.kind in (EventKind.TRACK_ADDED, EventKind.FIRST_FRAME):
            if ev.kind is EventKind.FIRST_FRAME and ev.track != "audio":
                first[f"{ev.member}/{ev.track}"] = ev.at
            s = station.session
            if s is not None:
                attach_readers(s, readers.setdefault(s.call_id or "?", {}))

    station = HeadlessStation(config, auto_answer=0.0, url=args.url, on_event=on_event)
    snapshots: asyncio.Task[None] | None = None
    if args.snapshots:
        snapshots = asyncio.get_running_loop().create_task(save_documents(station, Path(args.snapshots)))
    await station.start()
    assert station.client is not None
    original_send = station.client.send

    async def send(msg: dict[str, Any]) -> None:
        if msg.get("type") == "answer":
            emit(event="answer", call=msg.get("call"), at=time.monotonic())
        await original_send(msg)

    station.client.send = send  # type: ignore[method-assign]
    await station.wait_up(30)
    emit(event="ready")
    await loop.run_in_executor(None, sys.stdin.read)
    if snapshots is not None:
        snapshots.cancel()
    await station.close()
    return 0


SNAPSHOT_GAP = 2.0  # s between saved document frames
SNAPSHOTS_KEPT = (
    3  # the newest ones are kept: the frames at the end of the call, once the bitrate has ramped up
)


async def save_documents(station: Any, folder: Path) -> None:
    """Every :data:`SNAPSHOT_GAP` s of a call, the station's newest decoded document frame as ``doc-K.npy``
    (K cycles through :data:`SNAPSHOTS_KEPT` names), for the benchmark's OCR of the live track."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    k = 0
    while True:
        await asyncio.sleep(SNAPSHOT_GAP)
        session = station.session
        if session is None:
            continue
        for rt in session.remote_tracks():
            if rt.label == "document" and rt.frame_sink is not None:
                latest = rt.frame_sink.latest()
                if latest is not None:
                    np.save(folder / f"doc-{k % SNAPSHOTS_KEPT}.npy", np.asarray(latest[1]))
                    k += 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.media_peer")
    p.add_argument("--role", choices=("counter", "office"), required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--department", default="")
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--hold", type=float, default=1.0)
    p.add_argument("--pause", type=float, default=0.5)
    p.add_argument("--media-timeout", type=float, default=15.0)
    p.add_argument("--snapshots", default="", help="office: save the newest document frames here (OCR)")
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(run_counter(args) if args.role == "counter" else run_office(args))


if __name__ == "__main__":
    raise SystemExit(main())
