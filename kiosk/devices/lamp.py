"""Indicator lamp: the device owner, on the protocols, port and drivers of its sibling modules.

Layers, from the wire up (``docs/devices.md``, part "Lamp", is the prose form):

* **Protocols** (pure, no I/O): :mod:`kiosk.devices.lamp_protocol` — LCUS frames of the CH340-based LCUS-1/2/4/8
  USB relay boards, our acknowledged ascii line protocol for a microcontroller lamp (``contrib/lamp_firmware/``),
  and the error tree (:class:`LampError` → :class:`LampPortError`, :class:`LampNoAckError`,
  :class:`LampCommandError`).
* **Port** (edge): :class:`~kiosk.devices.serial_port.SerialPort` opens any pyserial URL and runs every blocking call
  in one worker thread, so the event loop never waits on the device and commands keep their order.
* **Drivers**: :mod:`kiosk.devices.lamp_drivers` — :class:`LcusDriver`, :class:`AsciiDriver`, :class:`NullDriver`
  behind :class:`LampDriver`, chosen by ``[lamp] driver`` through :func:`open_lamp_driver`.
* **Device owner** (here): :class:`LampDevice` holds the desired channel states and is the only writer to the port.
  It opens the port with backoff, re-applies the whole state after every (re)open, blinks channels in software
  for boards that cannot blink themselves, probes the device while idle so an unplug is noticed, and turns
  everything off on :meth:`LampDevice.close`.

Every name of the layers below is importable from here too (``from kiosk.devices.lamp import ChannelState``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from common.backoff import Backoff
from common.logs import event
from kiosk.devices.lamp_drivers import AsciiDriver, LampDriver, LcusDriver, NullDriver, open_lamp_driver
from kiosk.devices.lamp_protocol import (
    ASCII_MAX_LINE,
    ASCII_OPS,
    LCUS_MAX_CHANNEL,
    LCUS_START,
    AsciiReply,
    LampCommandError,
    LampError,
    LampNoAckError,
    LampPortError,
    LineBuffer,
    ascii_command,
    ascii_state_command,
    lcus_command,
    parse_ascii_reply,
)
from kiosk.devices.serial_port import SerialPort
from kiosk.lamp_board import ChannelState, config_channels

if TYPE_CHECKING:
    from kiosk.config import LampConfig

log = logging.getLogger(__name__)

__all__ = [
    "ASCII_MAX_LINE",
    "ASCII_OPS",
    "AsciiDriver",
    "AsciiReply",
    "ChannelState",
    "LCUS_MAX_CHANNEL",
    "LCUS_START",
    "LampCommandError",
    "LampDevice",
    "LampDriver",
    "LampError",
    "LampNoAckError",
    "LampPortError",
    "LcusDriver",
    "LineBuffer",
    "NullDriver",
    "SerialPort",
    "ascii_command",
    "ascii_state_command",
    "config_channels",
    "lcus_command",
    "open_lamp_driver",
    "parse_ascii_reply",
]

StatusHandler = Callable[[bool, str], None]
DriverFactory = Callable[[], Awaitable[LampDriver]]


class LampDevice:
    """Owns one lamp: the desired channel states and the only task that writes them to the device.

    Callers say what the lamp should show with :meth:`apply` (never blocks, never raises); a background task
    makes the device match. If the port is missing or fails, it logs one clear line, closes it, retries with
    exponential backoff, and on success re-applies every channel. While idle it probes the device every
    ``keepalive`` seconds (``PING`` for ascii, re-writing the state for lcus), so an unplug is noticed even
    when nothing rings.

    Args:
        config: the ``[lamp]`` section.
        port: overrides ``config.port`` (``--lamp-port``).
        open_driver: factory for the driver; default :func:`open_lamp_driver` with ``config``.
        backoff: delays between attempts to open the port (a :class:`~common.backoff.Backoff`, or its short form
            ``(initial, maximum)`` in seconds, doubling).
        blink_interval: half-period of software blinking, in seconds.
        keepalive: seconds of idleness before the device is probed.
        on_status: called with ``(ok, detail)`` when the device becomes usable or fails.
    """

    def __init__(
        self,
        config: LampConfig,
        *,
        port: str | None = None,
        open_driver: DriverFactory | None = None,
        backoff: Backoff | tuple[float, float] = (0.25, 5.0),
        blink_interval: float = 0.5,
        keepalive: float = 5.0,
        on_status: StatusHandler | None = None,
    ) -> None:
        self.config = config
        self.url = config.port if port is None else port
        self._open_driver = open_driver or (lambda: open_lamp_driver(config, self.url))
        self.backoff = Backoff.of(backoff)
        self.blink_interval = blink_interval
        self.keepalive = keepalive
        self.on_status = on_status
        self.channels = config_channels(config)
        self.desired: dict[int, ChannelState] = {ch: ChannelState.OFF for ch in self.channels}
        self.applied: dict[int, ChannelState] = {}
        self.driver: LampDriver | None = None
        self.opened = 0  # how many times the device was opened (1 + number of recoveries)
        self.last_error = ""
        self.ready = asyncio.Event()  # set while the device matches the desired state
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = asyncio.Event()  # wakes the backoff sleep only on close, not on every apply()
        self._last_io = 0.0
        self._refused: dict[int, ChannelState] = {}

    # -- public ------------------------------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Start the background task that opens the port and keeps the lamp in the desired state."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lamp-device")
        return self._task

    def apply(self, states: Mapping[int, ChannelState]) -> None:
        """Set the desired state of the given channels (others keep theirs); the task writes the change."""
        changed = False
        for ch, state in states.items():
            if self.desired.get(ch) is not state:
                self.desired[ch] = state
                changed = True
        if changed:
            self.ready.clear()
            self._wake.set()

    @property
    def connected(self) -> bool:
        """Whether the device is open and working."""
        return self.driver is not None

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the device shows the desired state."""
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop, switch every channel off and close the port (best effort: a vanished device is not an error)."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                event(log, "lamp_task_stuck", logging.WARNING, timeout_s=timeout, action="cancelled")
            except Exception:
                event(log, "lamp_task_failed", logging.ERROR, exc_info=True)
            self._task = None
        driver, self.driver = self.driver, None
        if driver is not None:
            try:
                await driver.all_off()
                event(log, "lamp_all_off", port=self.url)
            except LampError as err:
                event(log, "lamp_all_off_failed", logging.WARNING, port=self.url, error=err)
            await driver.close()
            event(log, "lamp_port_closed", port=self.url)

    async def __aenter__(self) -> LampDevice:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the task ----------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        retry = self.backoff.start()
        while not self._closing:
            if self.driver is None:
                try:
                    self.driver = await self._open_driver()
                except (LampError, ValueError) as err:
                    delay = retry.next()
                    self._report_failure("lamp_port_unavailable", err, delay, retry.failures)
                    await self._sleep_unless_closing(retry.jittered(delay))
                    continue
                retry.reset()
                self.opened += 1
                self.applied.clear()  # unknown after (re)open: write every channel
                self._refused.clear()
                self.last_error = ""
                event(
                    log, "lamp_port_open", port=self.url, driver=self.driver.kind, channels=len(self.channels)
                )
                self._status(True, f"{self.driver.kind} lamp on {self.url}")
            try:
                await self._sync()
                timeout = self._next_wakeup()
                if timeout is not None and timeout <= 0:
                    await self._probe()
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
            except LampError as err:
                await self._drop_driver(err)

    async def _sync(self) -> None:
        """Write every channel whose shown state differs from the desired one."""
        assert self.driver is not None
        while True:
            self._wake.clear()
            phase_on = self._blink_phase_on()
            todo: list[tuple[int, ChannelState]] = []
            for ch, state in self.desired.items():
                shown = state
                if state is ChannelState.BLINK and not self.driver.hardware_blink:
                    shown = ChannelState.ON if phase_on else ChannelState.OFF
                if self.applied.get(ch) is not shown and self._refused.get(ch) is not shown:
                    todo.append((ch, shown))
            if not todo:
                if not self._wake.is_set():
                    self.ready.set()
                return
            for ch, shown in todo:
                try:
                    await self.driver.set(ch, shown)
                except LampCommandError as err:
                    # The device is alive but refuses this: log once, do not retry until something changes.
                    self._refused[ch] = shown
                    event(log, "lamp_command_refused", logging.ERROR, port=self.url, channel=ch, error=err)
                    continue
                self._last_io = time.monotonic()
                self.applied[ch] = shown

    def _blink_phase_on(self) -> bool:
        return int(time.monotonic() / self.blink_interval) % 2 == 0

    def _next_wakeup(self) -> float | None:
        """Seconds until the next blink edge or keepalive probe."""
        assert self.driver is not None
        now = time.monotonic()
        waits = [self._last_io + self.keepalive - now]
        if not self.driver.hardware_blink and ChannelState.BLINK in self.desired.values():
            waits.append(self.blink_interval - (now % self.blink_interval) + 0.001)
        return min(waits)

    async def _probe(self) -> None:
        assert self.driver is not None
        if self.driver.can_check:
            await self.driver.check()
        else:
            # A write-only board cannot be asked; re-writing the state notices an unplug (the write fails)
            # and repairs a board that was power-cycled behind our back.
            self.applied.clear()
            await self._sync()
        self._last_io = time.monotonic()

    async def _drop_driver(self, err: Exception) -> None:
        driver, self.driver = self.driver, None
        self.ready.clear()
        self.applied.clear()
        event(log, "lamp_port_failed", logging.WARNING, port=self.url, error=err, action="reopening")
        self.last_error = str(err)
        self._status(False, str(err))
        if driver is not None:
            await driver.close()

    def _report_failure(self, name: str, err: Exception, delay: float, attempts: int) -> None:
        text = str(err)
        # One warning per distinct problem, then a reminder now and then, not a line every backoff step.
        if text != self.last_error or attempts % 20 == 0:
            event(
                log,
                name,
                logging.WARNING,
                port=self.url,
                error=text,
                attempt=attempts,
                retry_in=f"{delay:.2f}s",
            )
            if text != self.last_error:
                self._status(False, text)
        self.last_error = text

    def _status(self, ok: bool, detail: str) -> None:
        if self.on_status is not None:
            try:
                self.on_status(ok, detail)
            except Exception:
                event(log, "lamp_status_handler_failed", logging.ERROR, exc_info=True)

    async def _sleep_unless_closing(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._closed.wait(), delay)
        except TimeoutError:
            pass
