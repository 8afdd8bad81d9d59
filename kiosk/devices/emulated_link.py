"""The serial side of an emulated device: a pseudo-terminal (or a TCP listener) served by its own thread.

:class:`EmulatedSerialDevice` sits on the leader side of a pty from ``os.openpty()`` (pyserial opens the follower
like a USB adapter) or, with ``transport="tcp"``, behind a ``socket://127.0.0.1:PORT`` listener, so the lamp code
under test does real serial I/O. Its daemon thread works the same from a pytest-asyncio test, a synchronous script
or the Kivy demo. It records what it was told (:attr:`~EmulatedSerialDevice.received`,
:attr:`~EmulatedSerialDevice.raw`), keeps the channel states (``snapshot``), shows them (``render``, ``on_change``),
and can be unplugged and plugged back in: with ``link=PATH`` the follower is reached through a symlink that
disappears while unplugged and points at a fresh pty afterwards, like a udev ``/dev/serial/by-id/…`` name. What the
device does with the bytes is a subclass's (:mod:`kiosk.devices.emulated`), on a pure model
(:mod:`kiosk.devices.emulated_models`).
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import sys
import threading
import time
import tty
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

from kiosk.devices.emulated_models import Received, render_states
from kiosk.lamp_board import ChannelState

__all__ = ["ChangeHandler", "EmulatedSerialDevice"]

ChangeHandler = Callable[[dict[int, ChannelState]], None]


class EmulatedSerialDevice:
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
