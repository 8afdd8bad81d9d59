"""A serial device opened from a pyserial URL, every blocking call in one worker thread (the lamp's port).

:class:`SerialPort` opens any pyserial URL (``/dev/ttyUSB0``, ``hwgrep://1a86:7523``, ``socket://host:port``,
``rfc2217://…``, ``loop://``), so a field install and a test with an emulated device on a pty or a socket use the
same code. It moves bytes and lines only; what they mean is :mod:`kiosk.devices.lamp_protocol`'s. ``serial`` is
imported here and nowhere else, inside the worker thread's open, so nothing else loads pyserial.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any

from common.logs import event
from kiosk.devices.lamp_protocol import LampPortError, LineBuffer

__all__ = ["SerialPort"]

log = logging.getLogger(__name__)


class SerialPort:
    """A serial device opened from a pyserial URL; every blocking call runs in one worker thread.

    One thread (not the loop's shared executor) keeps writes and reads in order and keeps a hung device from
    starving other users of the default executor. pyserial errors become :class:`LampPortError` naming the URL.

    Args:
        url: ``/dev/ttyUSB0``, ``hwgrep://1a86:7523``, ``socket://127.0.0.1:7000``, ``rfc2217://…``, ``loop://``.
        baudrate: line speed (8N1 always).
        write_timeout: a write that cannot finish in this time (device hung) fails instead of blocking.
    """

    def __init__(self, url: str, *, baudrate: int = 9600, write_timeout: float = 1.0) -> None:
        self.url = url
        self.baudrate = baudrate
        self.write_timeout = write_timeout
        self._serial: Any = None
        self._lines = LineBuffer()
        self._pending: list[bytes] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            raise LampPortError(f"lamp port {self.url}: not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        """Open the port.

        Raises:
            LampPortError: the device is missing, busy or the URL is invalid.
        """
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lamp-serial")
        try:
            self._serial = await self._call(self._open_blocking)
        except LampPortError:
            self._shutdown_executor()
            raise

    def _open_blocking(self) -> Any:
        import serial  # the edge: only this class touches pyserial

        try:
            return serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                bytesize=8,
                parity="N",
                stopbits=1,
                timeout=0.05,
                write_timeout=self.write_timeout,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise LampPortError(f"cannot open lamp port {self.url}: {err}") from err

    async def write(self, data: bytes) -> None:
        """Write all of ``data``.

        Raises:
            LampPortError: the device went away or the write timed out.
        """
        await self._call(self._write_blocking, data)

    def _write_blocking(self, data: bytes) -> None:
        import serial

        port = self._serial
        if port is None:
            raise LampPortError(f"lamp port {self.url}: not open")
        try:
            written = port.write(data)
        except (serial.SerialException, OSError) as err:
            raise LampPortError(f"lamp port {self.url}: write failed: {err}") from err
        if written is not None and written != len(data):
            raise LampPortError(f"lamp port {self.url}: wrote {written} of {len(data)} bytes")

    async def read_line(self, timeout: float) -> bytes | None:
        """The next complete line (without newline), or None if none arrives within ``timeout`` seconds.

        Raises:
            LampPortError: the device went away.
        """
        result: bytes | None = await self._call(self._read_line_blocking, timeout)
        return result

    def _read_line_blocking(self, timeout: float) -> bytes | None:
        import serial

        deadline = time.monotonic() + timeout
        while not self._pending:
            port = self._serial
            if port is None:
                raise LampPortError(f"lamp port {self.url}: not open")
            if time.monotonic() >= deadline:
                return None
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as err:
                raise LampPortError(f"lamp port {self.url}: read failed: {err}") from err
            self._pending.extend(self._lines.feed(data))
        return self._pending.pop(0)

    async def discard_input(self) -> None:
        """Drop everything received so far (stale replies, a boot banner)."""
        await self._call(self._discard_blocking)

    def _discard_blocking(self) -> None:
        import serial

        self._pending.clear()
        self._lines.clear()
        if self._serial is not None:
            try:
                self._serial.reset_input_buffer()
            except (serial.SerialException, OSError) as err:
                raise LampPortError(f"lamp port {self.url}: cannot reset input: {err}") from err

    async def close(self) -> None:
        """Close the port (idempotent; errors on an already vanished device are ignored)."""
        if self._executor is None:
            return
        if self._serial is not None:
            try:
                await self._call(self._close_blocking)
            except Exception as err:  # closing a vanished device must not stop shutdown
                event(log, "lamp_port_close_error", logging.DEBUG, port=self.url, error=err)
        self._shutdown_executor()

    def _close_blocking(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            port.close()

    def _shutdown_executor(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
