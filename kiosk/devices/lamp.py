"""Indicator lamp: command encoding (pure), drivers, a serial port opened from a URL, and the device owner.

Layers, from the wire up (``docs/devices.md``, part "Lamp", is the prose form):

* **Encoding** (pure, no I/O): :func:`lcus_command` builds the 4-byte frames of the CH340-based LCUS-1/2/4/8
  USB relay boards; :func:`ascii_command`, :class:`LineBuffer` and :func:`parse_ascii_reply` implement our own
  acknowledged line protocol for a microcontroller lamp (``contrib/lamp_firmware/``).
* **Port** (edge): :class:`SerialPort` opens any pyserial URL (``/dev/ttyUSB0``, ``hwgrep://1a86:7523``,
  ``socket://host:port``, ``rfc2217://…``, ``loop://``) and runs every blocking call in one worker thread, so
  the event loop never waits on the device and commands keep their order. ``serial`` is imported only there.
* **Drivers**: :class:`LcusDriver`, :class:`AsciiDriver`, :class:`NullDriver` behind :class:`LampDriver`
  (set one channel, all off, close), chosen by ``[lamp] driver`` through :func:`open_lamp_driver`.
* **Device owner**: :class:`LampDevice` holds the desired channel states and is the only writer to the port.
  It opens the port with backoff, re-applies the whole state after every (re)open, blinks channels in software
  for boards that cannot blink themselves, probes the device while idle so an unplug is noticed, and turns
  everything off on :meth:`LampDevice.close`.

Errors form one tree: :class:`LampError` → :class:`LampPortError` (port missing, unplugged, I/O failed),
:class:`LampNoAckError` (device silent), :class:`LampCommandError` (device refused a command).
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from common.backoff import Backoff
from common.logs import event
from kiosk.lamp_board import ChannelState, config_channels

if TYPE_CHECKING:
    from kiosk.config import LampConfig

log = logging.getLogger(__name__)

__all__ = [
    "ASCII_OPS",
    "AsciiDriver",
    "AsciiReply",
    "ChannelState",
    "LCUS_MAX_CHANNEL",
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
    "config_channels",
    "lcus_command",
    "open_lamp_driver",
    "parse_ascii_reply",
]


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------
class LampError(Exception):
    """Base of every lamp problem."""


class LampPortError(LampError):
    """The serial port is missing, was unplugged, or an I/O call on it failed."""


class LampNoAckError(LampError):
    """An acknowledging device did not answer a command in time: treated like an unplugged device."""


class LampCommandError(LampError):
    """The device answered ``ERR ...``: it is alive but refused the command (e.g. a channel it lacks)."""


# ---------------------------------------------------------------------------------------------------------------
# LCUS encoding (pure)
# ---------------------------------------------------------------------------------------------------------------
LCUS_START = 0xA0
LCUS_MAX_CHANNEL = 8  # LCUS-1/2/4/8: the largest board has eight relays
LCUS_BAUDRATE = 9600


def lcus_command(channel: int, on: bool) -> bytes:
    """The 4-byte frame that switches relay ``channel`` (1-based) of an LCUS board on or off.

    Frame: ``0xA0, channel, state (0x00 off / 0x01 on), checksum = (0xA0 + channel + state) mod 256``;
    e.g. channel 1 on is ``A0 01 01 A2`` and channel 1 off is ``A0 01 00 A1``.

    Raises:
        ValueError: channel outside 1..8.
    """
    if not 1 <= channel <= LCUS_MAX_CHANNEL:
        raise ValueError(f"LCUS channel must be 1..{LCUS_MAX_CHANNEL}, got {channel}")
    state = 0x01 if on else 0x00
    return bytes((LCUS_START, channel, state, (LCUS_START + channel + state) & 0xFF))


# ---------------------------------------------------------------------------------------------------------------
# ASCII line protocol (pure)
# ---------------------------------------------------------------------------------------------------------------
ASCII_OPS = ("ON", "OFF", "BLINK", "ALLOFF", "PING")
ASCII_MAX_CHANNEL = 64
ASCII_MAX_LINE = 64  # bytes; a longer line without a newline is garbage and is dropped


def ascii_command(op: str, channel: int | None = None) -> bytes:
    """One command line of the ascii lamp protocol, newline included.

    ``ON n``, ``OFF n``, ``BLINK n`` take a 1-based channel; ``ALLOFF`` and ``PING`` take none.
    The device answers each line with ``OK <the line>`` or ``ERR <reason> <the line>``.

    Raises:
        ValueError: unknown op, a channel missing, given where none belongs, or outside 1..64.
    """
    if op not in ASCII_OPS:
        raise ValueError(f"unknown ascii lamp command '{op}'; known: {', '.join(ASCII_OPS)}")
    if op in ("ALLOFF", "PING"):
        if channel is not None:
            raise ValueError(f"ascii lamp command {op} takes no channel, got {channel}")
        return f"{op}\n".encode("ascii")
    if channel is None or not 1 <= channel <= ASCII_MAX_CHANNEL:
        raise ValueError(f"ascii lamp command {op} needs a channel 1..{ASCII_MAX_CHANNEL}, got {channel}")
    return f"{op} {channel}\n".encode("ascii")


def ascii_state_command(channel: int, state: ChannelState) -> bytes:
    """The ascii command line that puts ``channel`` into ``state``."""
    op = {ChannelState.ON: "ON", ChannelState.OFF: "OFF", ChannelState.BLINK: "BLINK"}[state]
    return ascii_command(op, channel)


class AsciiReply:
    """A parsed reply line: ``ok`` is True for ``OK …``; ``command`` is the echoed command; ``reason`` for ERR."""

    __slots__ = ("ok", "command", "reason")

    def __init__(self, ok: bool, command: str, reason: str = "") -> None:
        self.ok = ok
        self.command = command
        self.reason = reason

    def __repr__(self) -> str:
        return f"AsciiReply(ok={self.ok}, command={self.command!r}, reason={self.reason!r})"


def parse_ascii_reply(line: bytes) -> AsciiReply | None:
    """Parse one device line (without its newline); None for lines that are not replies (``READY``, noise).

    ``OK ON 3`` → ok, command ``ON 3``. ``ERR CHANNEL ON 9`` → not ok, reason ``CHANNEL``, command ``ON 9``.
    """
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if text.startswith("OK "):
        return AsciiReply(True, text[3:].strip())
    if text.startswith("ERR "):
        parts = text[4:].strip().split(" ", 1)
        return AsciiReply(False, parts[1].strip() if len(parts) > 1 else "", parts[0])
    return None


class LineBuffer:
    """Splits a byte stream into lines (LF-terminated, a CR before it dropped); pure.

    A line longer than ``max_line`` without a newline is discarded up to the next newline, so noise on the
    wire (a board resetting, a wrong baud rate) cannot grow the buffer without bound.
    """

    def __init__(self, max_line: int = ASCII_MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete lines they finish."""
        lines: list[bytes] = []
        for byte in data:
            if byte == 0x0A:
                if not self._discarding:
                    lines.append(bytes(self._buf).rstrip(b"\r"))
                self._buf.clear()
                self._discarding = False
            elif not self._discarding:
                self._buf.append(byte)
                if len(self._buf) > self.max_line:
                    self._buf.clear()
                    self._discarding = True
        return lines

    def clear(self) -> None:
        """Forget a partial line."""
        self._buf.clear()
        self._discarding = False


# ---------------------------------------------------------------------------------------------------------------
# Port (edge): a pyserial URL, blocking calls in one worker thread
# ---------------------------------------------------------------------------------------------------------------
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
                log.debug("closing lamp port %s: %s", self.url, err)
        self._shutdown_executor()

    def _close_blocking(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            port.close()

    def _shutdown_executor(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


# ---------------------------------------------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------------
# Device owner
# ---------------------------------------------------------------------------------------------------------------
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
                log.warning("lamp task did not stop within %.1f s; cancelled", timeout)
            except Exception:
                log.exception("lamp task failed")
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
                log.exception("lamp status handler failed")

    async def _sleep_unless_closing(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._closed.wait(), delay)
        except TimeoutError:
            pass
