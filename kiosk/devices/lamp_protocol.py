"""The indicator lamp's wire protocols, pure (no I/O, no pyserial): the lamp errors, LCUS frames and our ascii lines.

* :func:`lcus_command` builds the 4-byte frames of the CH340-based LCUS-1/2/4/8 USB relay boards.
* :func:`ascii_command`, :class:`LineBuffer` and :func:`parse_ascii_reply` implement our own acknowledged line
  protocol for a microcontroller lamp (``contrib/lamp_firmware/``; ``docs/devices.md``, part "Lamp").

Framing lives apart from the port (as pyserial keeps it), so it is tested with bytes alone and shared by the drivers
(:mod:`kiosk.devices.lamp_drivers`) and the emulated devices (:mod:`kiosk.devices.emulated`). The errors form one
tree: :class:`LampError` → :class:`LampPortError` (port missing, unplugged, I/O failed), :class:`LampNoAckError`
(device silent), :class:`LampCommandError` (device refused a command).
"""

from __future__ import annotations

from kiosk.lamp_board import ChannelState

__all__ = [
    "ASCII_MAX_CHANNEL",
    "ASCII_MAX_LINE",
    "ASCII_OPS",
    "LCUS_BAUDRATE",
    "LCUS_MAX_CHANNEL",
    "LCUS_START",
    "AsciiReply",
    "LampCommandError",
    "LampError",
    "LampNoAckError",
    "LampPortError",
    "LineBuffer",
    "ascii_command",
    "ascii_state_command",
    "lcus_command",
    "parse_ascii_reply",
]


class LampError(Exception):
    """Base of every lamp problem."""


class LampPortError(LampError):
    """The serial port is missing, was unplugged, or an I/O call on it failed."""


class LampNoAckError(LampError):
    """An acknowledging device did not answer a command in time: treated like an unplugged device."""


class LampCommandError(LampError):
    """The device answered ``ERR ...``: it is alive but refused the command (e.g. a channel it lacks)."""


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
