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

This module is the two device kinds and that command; the pty/TCP side they share is
:mod:`kiosk.devices.emulated_link`, and the device models (:class:`LcusBoardModel`, :class:`AsciiLampModel`) are
pure, in :mod:`kiosk.devices.emulated_models`, tested on their own.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from kiosk.devices.emulated_link import ChangeHandler, EmulatedSerialDevice
from kiosk.devices.emulated_models import AsciiLampModel, LcusBoardModel, Received, render_states
from kiosk.devices.lamp_protocol import ASCII_MAX_LINE, LineBuffer
from kiosk.lamp_board import ChannelState

__all__ = [
    "AsciiLampModel",
    "EmulatedAsciiLamp",
    "EmulatedLcusBoard",
    "EmulatedSerialDevice",
    "LcusBoardModel",
    "Received",
    "render_states",
]


class EmulatedLcusBoard(EmulatedSerialDevice):
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


class EmulatedAsciiLamp(EmulatedSerialDevice):
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
