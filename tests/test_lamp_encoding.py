"""Lamp command encoding, reply parsing and the emulated device models: pure, byte for byte, no event loop."""

from __future__ import annotations

import pytest

from kiosk.devices.emulated import AsciiLampModel, LcusBoardModel, render_states
from kiosk.devices.lamp import (
    AsciiReply,
    ChannelState,
    LineBuffer,
    ascii_command,
    ascii_state_command,
    lcus_command,
    parse_ascii_reply,
)

ON, OFF, BLINK = ChannelState.ON, ChannelState.OFF, ChannelState.BLINK

# The frames printed in LCUS board manuals, channel 1..4.
LCUS_FRAMES = {
    (1, True): "a0 01 01 a2",
    (1, False): "a0 01 00 a1",
    (2, True): "a0 02 01 a3",
    (2, False): "a0 02 00 a2",
    (3, True): "a0 03 01 a4",
    (3, False): "a0 03 00 a3",
    (4, True): "a0 04 01 a5",
    (4, False): "a0 04 00 a4",
}


@pytest.mark.parametrize(("channel", "on"), sorted(LCUS_FRAMES))
def test_lcus_frames_match_the_board_manual(channel: int, on: bool) -> None:
    """Each on/off frame is exactly the 4 bytes the LCUS board documentation gives."""
    assert lcus_command(channel, on).hex(" ") == LCUS_FRAMES[(channel, on)]


def test_lcus_checksum_for_every_channel() -> None:
    """The 4th byte is the sum of the first three mod 256 for all eight channels and both states."""
    for ch in range(1, 9):
        for on in (False, True):
            frame = lcus_command(ch, on)
            assert len(frame) == 4 and frame[0] == 0xA0 and frame[1] == ch and frame[2] == int(on)
            assert frame[3] == sum(frame[:3]) % 256


@pytest.mark.parametrize("channel", [0, 9, -1])
def test_lcus_rejects_channels_no_board_has(channel: int) -> None:
    """A channel outside 1..8 is refused with a message naming the range, not sent as garbage."""
    with pytest.raises(ValueError, match=r"1\.\.8"):
        lcus_command(channel, True)


def test_ascii_commands_are_exact_lines() -> None:
    """The ascii protocol's command lines are exactly as documented in docs/devices.md."""
    assert ascii_command("ON", 3) == b"ON 3\n"
    assert ascii_command("OFF", 12) == b"OFF 12\n"
    assert ascii_command("BLINK", 1) == b"BLINK 1\n"
    assert ascii_command("ALLOFF") == b"ALLOFF\n"
    assert ascii_command("PING") == b"PING\n"
    assert ascii_state_command(2, BLINK) == b"BLINK 2\n"
    assert ascii_state_command(2, OFF) == b"OFF 2\n"


@pytest.mark.parametrize(("op", "channel"), [("ON", None), ("ON", 0), ("OFF", 65), ("PING", 1), ("FLASH", 1)])
def test_ascii_command_rejects_malformed_requests(op: str, channel: int | None) -> None:
    """Missing, surplus or out-of-range channels and unknown ops raise instead of producing a bad line."""
    with pytest.raises(ValueError):
        ascii_command(op, channel)


def test_ascii_replies_parse() -> None:
    """OK echoes, ERR with reason, and non-reply lines (boot banner, noise) are told apart."""
    ok = parse_ascii_reply(b"OK ON 3")
    assert isinstance(ok, AsciiReply) and ok.ok and ok.command == "ON 3"
    err = parse_ascii_reply(b"ERR CHANNEL ON 9")
    assert err is not None and not err.ok and err.reason == "CHANNEL" and err.command == "ON 9"
    assert parse_ascii_reply(b"READY 8") is None
    assert parse_ascii_reply(b"\xff\xfe") is None


def test_line_buffer_splits_crlf_and_partial_lines() -> None:
    """Lines may arrive in pieces and end in CR LF; each complete line comes out once, without terminator."""
    buf = LineBuffer()
    assert buf.feed(b"OK O") == []
    assert buf.feed(b"N 1\r\nOK OFF") == [b"OK ON 1"]
    assert buf.feed(b" 1\n") == [b"OK OFF 1"]


def test_line_buffer_drops_overlong_noise() -> None:
    """Garbage without newlines (wrong baud rate) is discarded instead of growing the buffer forever."""
    buf = LineBuffer(max_line=8)
    assert buf.feed(b"x" * 100) == []
    assert buf.feed(b"tail\nOK PING\n") == [b"OK PING"]


def test_lcus_model_decodes_split_frames_and_ignores_bad_checksums() -> None:
    """The emulated board acts on valid frames even when split, and ignores a frame with a wrong checksum."""
    board = LcusBoardModel(4)
    frame = lcus_command(2, True)
    assert board.feed(frame[:3]) == []
    assert board.feed(frame[3:]) == [(frame, "ON 2")]
    assert board.states[2] is ON
    results = board.feed(bytes.fromhex("a0 03 01 00") + lcus_command(2, False))
    assert [c for _, c in results][-1] == "OFF 2"
    assert any(c.startswith("BAD checksum") for _, c in results)
    assert board.states == {1: OFF, 2: OFF, 3: OFF, 4: OFF}


def test_ascii_model_acknowledges_and_refuses() -> None:
    """The emulated firmware echoes OK for good commands and ERR for unknown channels or commands."""
    lamp = AsciiLampModel(4)
    assert lamp.handle_line(b"BLINK 2") == b"OK BLINK 2\n"
    assert lamp.states[2] is BLINK
    assert lamp.handle_line(b"ON 9") == b"ERR CHANNEL ON 9\n"
    assert lamp.handle_line(b"DANCE") == b"ERR UNKNOWN DANCE\n"
    assert lamp.handle_line(b"ALLOFF") == b"OK ALLOFF\n"
    assert set(lamp.states.values()) == {OFF}


def test_render_shows_each_channel_with_its_label() -> None:
    """The text view a person sees names each channel and marks it on, off or blinking."""
    text = render_states({1: ON, 2: OFF, 3: BLINK}, {1: "juumin", 2: "zeimu"})
    assert text == "[1 juumin ●] [2 zeimu ○] [3 ◐]"
    assert render_states({1: ON, 2: OFF}, unicode=False) == "[1 #] [2 .]"
