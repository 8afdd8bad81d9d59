"""Emulated lamp devices for tests, benchmarks and the demo: the far side of a real serial link.

:class:`EmulatedLcusBoard` behaves like an LCUS-1/2/4/8 USB relay board and :class:`EmulatedAsciiLamp` like our
lamp firmware (``contrib/lamp_firmware/``). Each sits on the leader side of a pseudo-terminal from
``os.openpty()`` (pyserial opens the follower like a USB adapter) or, with ``transport="tcp"``, behind a
``socket://127.0.0.1:PORT`` listener. The lamp code under test therefore does real serial I/O.

Each device runs in its own daemon thread, so it works the same from a pytest-asyncio test, a synchronous
script or the Kivy demo. It records what it was told (:attr:`received`, :attr:`raw`), keeps the channel states
(:meth:`snapshot`), shows them to a person (:meth:`render`, or ``on_change`` for a screen), and can be
unplugged and plugged back in (:meth:`unplug`, :meth:`replug`): with ``link=PATH`` the follower is reached through
a symlink that disappears while unplugged and points at a fresh pty afterwards, like a udev
``/dev/serial/by-id/…`` name; on replug the board has lost power, so every channel is off.

Run ``python -m kiosk.devices.emulated lcus --link /tmp/lamp`` to watch one in a terminal.

The device models (:class:`LcusBoardModel`, :class:`AsciiLampModel`) are pure and tested on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import socket
import sys
import threading
import time
import tty
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from kiosk.devices.lamp import ASCII_MAX_LINE, LCUS_START, ChannelState, LineBuffer

__all__ = [
    "AsciiLampModel",
    "EmulatedAsciiLamp",
    "EmulatedLcusBoard",
    "LcusBoardModel",
    "Received",
    "render_states",
]

SYMBOLS = {ChannelState.ON: "●", ChannelState.OFF: "○", ChannelState.BLINK: "◐"}
ASCII_SYMBOLS = {ChannelState.ON: "#", ChannelState.OFF: ".", ChannelState.BLINK: "*"}


@dataclass(frozen=True)
class Received:
    """One command as the device understood it: ``t`` is ``time.perf_counter()`` when its last byte arrived."""

    t: float
    raw: bytes
    command: str  # "ON 1", "OFF 3", "BLINK 2", "ALLOFF", "PING", or "BAD …" for what the device rejected


def render_states(
    states: Mapping[int, ChannelState], labels: Mapping[int, str] | None = None, *, unicode: bool = True
) -> str:
    """One line showing each channel, e.g. ``[1 juumin ●] [2 zeimu ○]`` (● on, ○ off, ◐ blinking)."""
    symbols = SYMBOLS if unicode else ASCII_SYMBOLS
    parts = []
    for ch in sorted(states):
        label = f" {labels[ch]}" if labels and ch in labels else ""
        parts.append(f"[{ch}{label} {symbols[states[ch]]}]")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Pure device models
# ---------------------------------------------------------------------------------------------------------------
class LcusBoardModel:
    """What an LCUS board does with bytes: 4-byte frames ``A0 ch state sum``; bad frames are ignored.

    Like the real board it never answers. A frame with a wrong checksum or a channel the board lacks changes
    nothing; the decoder resynchronises on the next ``0xA0``.
    """

    def __init__(self, channels: int = 4) -> None:
        self.channels = channels
        self.states = {ch: ChannelState.OFF for ch in range(1, channels + 1)}
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, str]]:
        """Decode bytes; return ``(frame, command)`` for each complete frame, ``command`` "BAD …" if ignored."""
        self._buf.extend(data)
        out: list[tuple[bytes, str]] = []
        while self._buf:
            if self._buf[0] != LCUS_START:
                start = self._buf.find(LCUS_START)
                junk = bytes(self._buf if start < 0 else self._buf[:start])
                del self._buf[: len(junk)]
                out.append((junk, f"BAD junk {junk.hex(' ')}"))
                continue
            if len(self._buf) < 4:
                break
            frame = bytes(self._buf[:4])
            _, ch, state, checksum = frame
            if checksum != (frame[0] + ch + state) & 0xFF:
                del self._buf[:1]
                out.append((frame, f"BAD checksum {frame.hex(' ')}"))
                continue
            del self._buf[:4]
            if ch not in self.states or state not in (0, 1):
                out.append((frame, f"BAD channel/state {frame.hex(' ')}"))
                continue
            self.states[ch] = ChannelState.ON if state else ChannelState.OFF
            out.append((frame, f"{'ON' if state else 'OFF'} {ch}"))
        return out

    def power_cycle(self) -> None:
        """Unplugging a USB relay board cuts its power: every relay drops out."""
        self.states = {ch: ChannelState.OFF for ch in self.states}
        self._buf.clear()


class AsciiLampModel:
    """Our lamp firmware as a pure object: one command line in, one reply line out (``docs/devices.md``)."""

    def __init__(self, channels: int = 8) -> None:
        self.channels = channels
        self.states = {ch: ChannelState.OFF for ch in range(1, channels + 1)}

    def handle_line(self, line: bytes) -> bytes:
        """Apply one command line (without newline); return the reply line with its newline."""
        text = line.decode("ascii", "replace").strip()
        if not text:
            return b""
        parts = text.split()
        op = parts[0].upper()
        if op in ("PING", "ALLOFF") and len(parts) == 1:
            if op == "ALLOFF":
                self.states = {ch: ChannelState.OFF for ch in self.states}
            return f"OK {text}\n".encode()
        if op in ("ON", "OFF", "BLINK") and len(parts) == 2:
            if not parts[1].isdigit() or int(parts[1]) not in self.states:
                return f"ERR CHANNEL {text}\n".encode()
            self.states[int(parts[1])] = {
                "ON": ChannelState.ON,
                "OFF": ChannelState.OFF,
                "BLINK": ChannelState.BLINK,
            }[op]
            return f"OK {text}\n".encode()
        return f"ERR UNKNOWN {text}\n".encode()

    def power_cycle(self) -> None:
        """A microcontroller that loses power starts with every output off."""
        self.states = {ch: ChannelState.OFF for ch in self.states}


# ---------------------------------------------------------------------------------------------------------------
# The serial side: pty or TCP, in a thread
# ---------------------------------------------------------------------------------------------------------------
ChangeHandler = Callable[[dict[int, ChannelState]], None]


class _EmulatedSerialDevice:
    """Transport and bookkeeping shared by the emulated devices."""

    kind = ""

    def __init__(
        self,
        *,
        transport: str = "pty",
        link: str | Path | None = None,
        labels: Mapping[int, str] | None = None,
        on_change: ChangeHandler | None = None,
    ) -> None:
        if transport not in ("pty", "tcp"):
            raise ValueError(f"transport must be 'pty' or 'tcp', got '{transport}'")
        self.transport = transport
        self.link = Path(link) if link is not None else None
        self.labels = dict(labels or {})
        self.on_change = on_change
        self.received: list[Received] = []
        self.raw = bytearray()
        self.plugged = False
        self.replugs = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._leader = self._follower = -1
        self._follower_path = ""
        self._listener: socket.socket | None = None
        self._tcp_port = 0

    # -- to override ----------------------------------------------------------------------------------------------
    def _handle(self, data: bytes, now: float) -> bytes:
        """Consume received bytes (lock held); return bytes to send back."""
        raise NotImplementedError

    def _states(self) -> dict[int, ChannelState]:
        raise NotImplementedError

    def _power_cycle(self) -> None:
        raise NotImplementedError

    # -- public ---------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """What to give pyserial (and ``--lamp-port``): the pty (or its link) or ``socket://127.0.0.1:PORT``."""
        if self.transport == "tcp":
            return f"socket://127.0.0.1:{self._tcp_port}"
        return str(self.link) if self.link is not None else self._follower_path

    def start(self) -> Self:
        """Plug the device in and start serving; returns self."""
        if not self.plugged:
            self._plug()
        return self

    def close(self) -> None:
        """Stop serving and release the pty or socket."""
        if self.plugged:
            self._unplug()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unplug(self) -> None:
        """Pull the USB cable: the port vanishes and the host's reads and writes fail."""
        self._unplug()
        self._changed()

    def replug(self) -> None:
        """Plug it back in: same URL, and the device has lost power, so every channel is off."""
        with self._lock:
            self._power_cycle()
        self.replugs += 1
        self._plug()
        self._changed()

    def snapshot(self) -> dict[int, ChannelState]:
        """The current state of every channel."""
        with self._lock:
            return dict(self._states())

    def commands(self) -> list[str]:
        """The commands received so far, in order."""
        with self._lock:
            return [r.command for r in self.received]

    def clear(self) -> None:
        """Forget what was received (the channel states stay)."""
        with self._lock:
            self.received.clear()
            self.raw.clear()

    def render(self, *, unicode: bool = True) -> str:
        """The lamp as a person would see it, e.g. ``LCUS board [1 juumin ●] [2 zeimu ○]``."""
        text = f"{self.kind} {render_states(self.snapshot(), self.labels, unicode=unicode)}"
        return text if self.plugged else f"{text} (unplugged)"

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 2.0, what: str = "") -> None:
        """Wait (without blocking the loop) until ``predicate()`` is true.

        Raises:
            TimeoutError: naming ``what`` and showing the lamp and the last commands.
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"emulated {self.kind}: {what or 'condition'} not reached within {timeout} s; "
                    f"lamp: {self.render()}; last commands: {self.commands()[-8:]}"
                )
            await asyncio.sleep(0.002)

    async def wait_state(self, expected: Mapping[int, ChannelState], timeout: float = 2.0) -> None:
        """Wait until the given channels show the given states."""
        want = ", ".join(f"{ch}={s.value}" for ch, s in sorted(expected.items()))
        await self.wait_for(
            lambda: all(self.snapshot().get(ch) is s for ch, s in expected.items()),
            timeout,
            f"channels {want}",
        )

    def wait_for_sync(self, predicate: Callable[[], bool], timeout: float = 2.0, what: str = "") -> None:
        """:meth:`wait_for` for synchronous callers."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"emulated {self.kind}: {what or 'condition'} not reached within {timeout} s; "
                    f"lamp: {self.render()}"
                )
            time.sleep(0.002)

    # -- plumbing -------------------------------------------------------------------------------------------------
    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.snapshot())
            except Exception as err:  # a display callback must not kill the device
                print(f"emulated {self.kind}: on_change failed: {err!r}", file=sys.stderr)

    def _plug(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        if self.transport == "pty":
            self._leader, self._follower = os.openpty()
            # Raw before anyone opens it: no echo, no CR/LF translation of binary frames.
            tty.setraw(self._follower)
            self._follower_path = os.ttyname(self._follower)
            if self.link is not None:
                tmp = self.link.with_name(self.link.name + ".new")
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(self._follower_path)
                os.replace(tmp, self.link)
        else:
            lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lst.bind(("127.0.0.1", self._tcp_port))
            lst.listen(1)
            self._tcp_port = lst.getsockname()[1]
            self._listener = lst
        self.plugged = True
        self._thread = threading.Thread(target=self._serve, name=f"emulated-{self.kind}", daemon=True)
        self._thread.start()

    def _unplug(self) -> None:
        if not self.plugged:
            return
        self.plugged = False
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self.link is not None:
            self.link.unlink(missing_ok=True)
        for fd in (self._leader, self._follower, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._leader = self._follower = self._wake_r = self._wake_w = -1
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _serve(self) -> None:
        if self.transport == "pty":
            self._serve_fd(self._leader)
        else:
            self._serve_tcp()

    def _serve_fd(self, fd: int) -> None:
        while True:
            ready, _, _ = select.select([fd, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if data:
                self._receive(data, lambda reply: os.write(fd, reply))

    def _serve_tcp(self) -> None:
        assert self._listener is not None
        client: socket.socket | None = None
        try:
            while True:
                watch: list[int | socket.socket] = [self._listener, self._wake_r]
                if client is not None:
                    watch.append(client)
                ready, _, _ = select.select(watch, [], [])
                if self._wake_r in ready:
                    return
                if self._listener in ready:
                    if client is not None:
                        client.close()
                    client, _ = self._listener.accept()
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if client is not None and client in ready:
                    try:
                        data = client.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        client.close()
                        client = None
                        continue
                    conn = client
                    self._receive(data, conn.sendall)
        finally:
            if client is not None:
                client.close()

    def _receive(self, data: bytes, send: Callable[[bytes], object]) -> None:
        now = time.perf_counter()
        with self._lock:
            before = dict(self._states())
            self.raw.extend(data)
            reply = self._handle(data, now)
            changed = before != self._states()
        if reply:
            try:
                send(reply)
            except OSError:
                pass
        if changed:
            self._changed()


class EmulatedLcusBoard(_EmulatedSerialDevice):
    """An LCUS-1/2/4/8 USB relay board on a pty (or TCP socket) that records every frame.

    Args:
        channels: relays on the board (1, 2, 4 or 8).
        transport: ``"pty"`` or ``"tcp"``.
        link: for a pty, a symlink path that names the port across unplug/replug.
        labels: channel → text for :meth:`render` (e.g. department names).
        on_change: called from the device thread with the new states whenever a relay switches.
    """

    kind = "LCUS board"

    def __init__(
        self,
        channels: int = 4,
        *,
        transport: str = "pty",
        link: str | Path | None = None,
        labels: Mapping[int, str] | None = None,
        on_change: ChangeHandler | None = None,
    ) -> None:
        super().__init__(transport=transport, link=link, labels=labels, on_change=on_change)
        self.model = LcusBoardModel(channels)

    def _handle(self, data: bytes, now: float) -> bytes:
        for frame, command in self.model.feed(data):
            self.received.append(Received(now, frame, command))
        return b""

    def _states(self) -> dict[int, ChannelState]:
        return self.model.states

    def _power_cycle(self) -> None:
        self.model.power_cycle()


class EmulatedAsciiLamp(_EmulatedSerialDevice):
    """A microcontroller lamp running our ascii firmware, on a pty (or TCP socket).

    Args:
        channels: outputs of the lamp.
        silent: a hung firmware: reads commands, never answers (settable while running).
        others: as :class:`EmulatedLcusBoard`.
    """

    kind = "ascii lamp"

    def __init__(
        self,
        channels: int = 8,
        *,
        silent: bool = False,
        transport: str = "pty",
        link: str | Path | None = None,
        labels: Mapping[int, str] | None = None,
        on_change: ChangeHandler | None = None,
    ) -> None:
        super().__init__(transport=transport, link=link, labels=labels, on_change=on_change)
        self.model = AsciiLampModel(channels)
        self.silent = silent
        self._lines = LineBuffer(ASCII_MAX_LINE)

    def _handle(self, data: bytes, now: float) -> bytes:
        replies = bytearray()
        for line in self._lines.feed(data):
            if self.silent:
                self.received.append(Received(now, line, line.decode("ascii", "replace")))
                continue
            reply = self.model.handle_line(line)
            command = line.decode("ascii", "replace").strip()
            self.received.append(
                Received(now, line, command if reply.startswith(b"OK") else f"BAD {command}")
            )
            replies.extend(reply)
        return bytes(replies)

    def _states(self) -> dict[int, ChannelState]:
        return self.model.states

    def _power_cycle(self) -> None:
        self.model.power_cycle()
        self._lines.clear()


def main(argv: list[str] | None = None) -> int:
    """Run an emulated lamp in the foreground and redraw its state on every change."""
    ap = argparse.ArgumentParser(prog="python -m kiosk.devices.emulated", description=main.__doc__)
    ap.add_argument("kind", choices=("lcus", "ascii"))
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--link", help="symlink to create for the pty (e.g. /tmp/lamp)")
    ap.add_argument("--tcp", action="store_true", help="listen on 127.0.0.1 instead of a pty")
    args = ap.parse_args(argv)
    cls = EmulatedLcusBoard if args.kind == "lcus" else EmulatedAsciiLamp
    device = cls(args.channels, transport="tcp" if args.tcp else "pty", link=args.link)
    device.on_change = lambda _states: print(device.render(), flush=True)
    with device:
        print(f"{device.kind} listening on {device.url}  (Ctrl-C to stop)", flush=True)
        print(device.render(), flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
