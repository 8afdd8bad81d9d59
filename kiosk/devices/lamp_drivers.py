"""The lamp drivers: one device kind each, behind :class:`LampDriver` (set one channel, all off, check, close).

:class:`LcusDriver` writes LCUS frames (no answers; blinking is done in software by the device owner),
:class:`AsciiDriver` speaks our acknowledged line protocol (``READY``, ``OK``/``ERR`` per command, ``PING``),
:class:`NullDriver` only logs. :func:`open_lamp_driver` opens the one ``[lamp] driver`` names on its
:class:`~kiosk.devices.serial_port.SerialPort` and runs its handshake. The bytes are
:mod:`kiosk.devices.lamp_protocol`'s; the owner that keeps the device in the desired state is
:class:`~kiosk.devices.lamp.LampDevice`.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from common.logs import event
from kiosk.devices.lamp_protocol import (
    LCUS_MAX_CHANNEL,
    LampCommandError,
    LampNoAckError,
    ascii_command,
    ascii_state_command,
    lcus_command,
    parse_ascii_reply,
)
from kiosk.devices.serial_port import SerialPort
from kiosk.lamp_board import ChannelState, config_channels

if TYPE_CHECKING:
    from kiosk.config import LampConfig

__all__ = ["AsciiDriver", "LampDriver", "LcusDriver", "NullDriver", "open_lamp_driver"]

log = logging.getLogger(__name__)


class LampDriver(abc.ABC):
    """One lamp device: set a channel, all off, close.

    ``hardware_blink`` says whether :meth:`set` accepts :attr:`ChannelState.BLINK` (otherwise
    :class:`LampDevice` blinks in software); ``acknowledged`` whether a successful :meth:`set` means the
    device confirmed it (ascii) or only that the bytes were written (lcus).
    """

    kind: ClassVar[str] = ""
    hardware_blink: ClassVar[bool] = False
    acknowledged: ClassVar[bool] = False
    #: Whether :meth:`check` can tell that the device is alive; if not, LampDevice re-writes the state instead.
    can_check: ClassVar[bool] = False

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Handshake after the port opened (e.g. wait for a board that resets when opened)."""

    @abc.abstractmethod
    async def set(self, channel: int, state: ChannelState) -> None:
        """Put ``channel`` (1-based) into ``state``."""

    @abc.abstractmethod
    async def all_off(self) -> None:
        """Switch every channel off."""

    async def check(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`LampError` if the device is known to be gone (only when ``can_check``)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the port."""

    async def __aenter__(self) -> LampDriver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class NullDriver(LampDriver):
    """For terminals without a lamp: logs what a lamp would show."""

    kind = "none"
    hardware_blink = True
    can_check = True  # nothing to probe: keeps the keepalive from re-logging the state

    def __init__(self) -> None:
        self.states: dict[int, ChannelState] = {}

    async def set(self, channel: int, state: ChannelState) -> None:
        self.states[channel] = state
        event(log, "lamp_channel_logged", channel=channel, state=state.value)

    async def all_off(self) -> None:
        for ch in self.states:
            self.states[ch] = ChannelState.OFF
        event(log, "lamp_all_off_logged")

    async def close(self) -> None:
        pass


class LcusDriver(LampDriver):
    """An LCUS-1/2/4/8 USB relay board (CH340, 9600 8N1, write-only: the board never answers).

    Args:
        port: an open :class:`SerialPort`.
        channels: the channels this installation wires; :meth:`all_off` switches 1..max of them.
    """

    kind = "lcus"

    def __init__(self, port: SerialPort, channels: Iterable[int]) -> None:
        chans = sorted(set(channels))
        for ch in chans:
            if not 1 <= ch <= LCUS_MAX_CHANNEL:
                raise ValueError(f"LCUS boards have channels 1..{LCUS_MAX_CHANNEL}; configured channel {ch}")
        self.port = port
        self.channels = list(range(1, max(chans) + 1)) if chans else []

    async def set(self, channel: int, state: ChannelState) -> None:
        if state is ChannelState.BLINK:
            raise ValueError("an LCUS board cannot blink by itself; LampDevice blinks it in software")
        await self.port.write(lcus_command(channel, state is ChannelState.ON))

    async def all_off(self) -> None:
        if self.channels:
            await self.port.write(b"".join(lcus_command(ch, False) for ch in self.channels))

    async def close(self) -> None:
        await self.port.close()


class AsciiDriver(LampDriver):
    """A microcontroller lamp speaking our acknowledged line protocol (``docs/devices.md``).

    Every command waits for its ``OK`` echo, so a dead or unplugged device is detected on the next command.

    Args:
        port: an open :class:`SerialPort`.
        ack_timeout: seconds to wait for each acknowledgement.
        ready_timeout: on :meth:`start`, how long to keep sending ``PING`` until the device answers (boards
            such as an Arduino Uno reset when the port opens and need a second or two to boot).
    """

    kind = "ascii"
    hardware_blink = True
    acknowledged = True
    can_check = True

    def __init__(self, port: SerialPort, *, ack_timeout: float = 0.5, ready_timeout: float = 3.0) -> None:
        self.port = port
        self.ack_timeout = ack_timeout
        self.ready_timeout = ready_timeout

    async def start(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                await self.port.discard_input()
                await self.command(ascii_command("PING"))
                return
            except LampNoAckError:
                if time.monotonic() + self.ack_timeout > deadline:
                    raise LampNoAckError(
                        f"lamp at {self.port.url} did not answer PING within {self.ready_timeout:.1f} s "
                        "(wrong port, wrong baud rate, or not our firmware?)"
                    ) from None

    async def command(self, line: bytes) -> None:
        """Send one command line and wait for its acknowledgement.

        Raises:
            LampNoAckError: no ``OK`` echo within ``ack_timeout``.
            LampCommandError: the device answered ``ERR``.
            LampPortError: the port failed.
        """
        expected = line.decode("ascii").strip()
        await self.port.write(line)
        deadline = time.monotonic() + self.ack_timeout
        while True:
            left = deadline - time.monotonic()
            reply_line = await self.port.read_line(left) if left > 0 else None
            if reply_line is None:
                raise LampNoAckError(
                    f"lamp at {self.port.url} did not acknowledge '{expected}' within {self.ack_timeout:.2f} s"
                )
            reply = parse_ascii_reply(reply_line)
            # Other lines (a boot banner, a late echo of an earlier command) are not ours: skip them.
            if reply is None or reply.command != expected:
                continue
            if not reply.ok:
                raise LampCommandError(f"lamp at {self.port.url} refused '{expected}': {reply.reason}")
            return

    async def set(self, channel: int, state: ChannelState) -> None:
        await self.command(ascii_state_command(channel, state))

    async def all_off(self) -> None:
        await self.command(ascii_command("ALLOFF"))

    async def check(self) -> None:
        await self.command(ascii_command("PING"))

    async def close(self) -> None:
        await self.port.close()


async def open_lamp_driver(config: LampConfig, port: str | None = None) -> LampDriver:
    """Open the driver ``config.driver`` on ``port`` (default ``config.port``) and run its handshake.

    Raises:
        LampPortError: the port cannot be opened.
        LampNoAckError: an ascii lamp did not answer.
        ValueError: a channel the board cannot have.
    """
    url = config.port if port is None else port
    if config.driver == "none":
        return NullDriver()
    serial_port = SerialPort(url, baudrate=config.baudrate)
    await serial_port.open()
    driver: LampDriver
    try:
        if config.driver == "lcus":
            driver = LcusDriver(serial_port, config_channels(config))
        elif config.driver == "ascii":
            driver = AsciiDriver(serial_port, ack_timeout=config.ack_timeout)
        else:
            raise ValueError(f"unknown lamp driver '{config.driver}'")
        await driver.start()
    except BaseException:
        await serial_port.close()
        raise
    return driver
