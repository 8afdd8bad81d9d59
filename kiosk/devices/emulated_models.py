"""The emulated lamp devices' behaviour, pure (no pty, no thread): an LCUS relay board and our ascii lamp firmware.

:class:`LcusBoardModel` takes the bytes an LCUS-1/2/4/8 board receives and switches its relays as the real board
does (a bad frame is ignored); :class:`AsciiLampModel` answers each line as ``contrib/lamp_firmware/`` does. Both
keep their channel states and lose them on a power cycle. :func:`render_states` shows states to a person. The
serial side that feeds them real bytes is :mod:`kiosk.devices.emulated_link`; the devices are
:mod:`kiosk.devices.emulated`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kiosk.devices.lamp_protocol import LCUS_START
from kiosk.lamp_board import ChannelState

__all__ = ["ASCII_SYMBOLS", "SYMBOLS", "AsciiLampModel", "LcusBoardModel", "Received", "render_states"]

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
