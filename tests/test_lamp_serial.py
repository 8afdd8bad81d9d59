"""Lamp drivers and LampDevice doing real serial I/O through a pty (or TCP) to the emulated devices."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from kiosk.config import LampConfig
from kiosk.devices.emulated import EmulatedAsciiLamp, EmulatedLcusBoard
from kiosk.devices.lamp import (
    AsciiDriver,
    ChannelState,
    LampCommandError,
    LampDevice,
    LampNoAckError,
    LampPortError,
    LcusDriver,
    SerialPort,
    lcus_command,
    open_lamp_driver,
)

ON, OFF, BLINK = ChannelState.ON, ChannelState.OFF, ChannelState.BLINK
FAST: dict[str, Any] = {"backoff": (0.02, 0.1), "keepalive": 0.05}


@pytest.fixture
async def lcus_board() -> AsyncIterator[EmulatedLcusBoard]:
    board = EmulatedLcusBoard(4).start()
    yield board
    board.close()


@pytest.fixture
async def ascii_lamp() -> AsyncIterator[EmulatedAsciiLamp]:
    lamp = EmulatedAsciiLamp(4).start()
    yield lamp
    lamp.close()


async def test_lcus_driver_writes_exact_bytes_per_channel(lcus_board: EmulatedLcusBoard) -> None:
    """On and off for each channel reach the board through the pty as exactly the documented 4-byte frames."""
    port = SerialPort(lcus_board.url)
    await port.open()
    async with LcusDriver(port, [1, 2, 3, 4]) as driver:
        expected = b""
        for ch in (1, 2, 3, 4):
            await driver.set(ch, ON)
            await driver.set(ch, OFF)
            expected += lcus_command(ch, True) + lcus_command(ch, False)
        await lcus_board.wait_for(lambda: len(lcus_board.raw) >= len(expected), what="all frames")
    assert bytes(lcus_board.raw) == expected
    assert bytes(lcus_board.raw[:8]).hex(" ") == "a0 01 01 a2 a0 01 00 a1"
    assert lcus_board.commands() == ["ON 1", "OFF 1", "ON 2", "OFF 2", "ON 3", "OFF 3", "ON 4", "OFF 4"]


async def test_lcus_all_off_switches_every_relay(lcus_board: EmulatedLcusBoard) -> None:
    """all_off() sends an off frame for every relay up to the highest configured channel."""
    port = SerialPort(lcus_board.url)
    await port.open()
    async with LcusDriver(port, [1, 3]) as driver:
        await driver.set(3, ON)
        await lcus_board.wait_state({3: ON})
        await driver.all_off()
        await lcus_board.wait_for(lambda: len(lcus_board.received) == 4, what="three off frames")
    assert lcus_board.commands()[1:] == ["OFF 1", "OFF 2", "OFF 3"]
    assert lcus_board.snapshot()[3] is OFF


async def test_lcus_over_tcp_socket_url() -> None:
    """The same driver works over socket://127.0.0.1:PORT (a serial server or the TCP emulator)."""
    with EmulatedLcusBoard(2, transport="tcp") as board:
        assert board.url.startswith("socket://127.0.0.1:")
        driver = await open_lamp_driver(LampConfig("lcus", board.url, {"juumin": 2}))
        async with driver:
            await driver.set(2, ON)
            await board.wait_state({2: ON})
        assert bytes(board.raw) == lcus_command(2, True)


async def test_ascii_driver_acknowledged_commands(ascii_lamp: EmulatedAsciiLamp) -> None:
    """Each ascii command is one exact line and returns only after the device's OK echo."""
    driver = await open_lamp_driver(LampConfig("ascii", ascii_lamp.url, {"juumin": 1}, ack_timeout=0.5))
    async with driver:
        await driver.set(1, ON)
        assert ascii_lamp.snapshot()[1] is ON  # acknowledged means the device already switched
        await driver.set(2, BLINK)
        await driver.set(1, OFF)
        await driver.all_off()
    assert bytes(ascii_lamp.raw) == b"PING\nON 1\nBLINK 2\nOFF 1\nALLOFF\n"
    assert ascii_lamp.commands() == ["PING", "ON 1", "BLINK 2", "OFF 1", "ALLOFF"]


async def test_ascii_dead_device_is_detected(ascii_lamp: EmulatedAsciiLamp) -> None:
    """A device that stops answering makes the next command fail with a no-acknowledgement error."""
    port = SerialPort(ascii_lamp.url)
    await port.open()
    async with AsciiDriver(port, ack_timeout=0.1) as driver:
        await driver.start()
        ascii_lamp.silent = True
        with pytest.raises(LampNoAckError, match=r"did not acknowledge 'ON 1' within 0.10 s"):
            await driver.set(1, ON)


async def test_ascii_silent_at_open_is_reported(ascii_lamp: EmulatedAsciiLamp) -> None:
    """A port with no answering lamp behind it fails the open handshake with a hint at the likely causes."""
    ascii_lamp.silent = True
    port = SerialPort(ascii_lamp.url)
    await port.open()
    driver = AsciiDriver(port, ack_timeout=0.05, ready_timeout=0.2)
    with pytest.raises(LampNoAckError, match="did not answer PING"):
        await driver.start()
    await driver.close()


async def test_ascii_refused_channel_is_a_command_error(ascii_lamp: EmulatedAsciiLamp) -> None:
    """A channel the device lacks comes back as ERR and raises LampCommandError naming the command."""
    port = SerialPort(ascii_lamp.url)
    await port.open()
    async with AsciiDriver(port) as driver:
        with pytest.raises(LampCommandError, match="refused 'ON 7': CHANNEL"):
            await driver.set(7, ON)


async def test_missing_port_is_a_port_error(tmp_path: Path) -> None:
    """Opening a port that does not exist raises LampPortError naming the port."""
    missing = str(tmp_path / "ttyUSB9")
    with pytest.raises(LampPortError, match="ttyUSB9"):
        await SerialPort(missing).open()


async def test_write_to_unplugged_device_fails(lcus_board: EmulatedLcusBoard) -> None:
    """After the device side goes away a write raises LampPortError instead of hanging."""
    port = SerialPort(lcus_board.url)
    await port.open()
    lcus_board.unplug()
    with pytest.raises(LampPortError, match="write failed"):
        await port.write(lcus_command(1, True))
    await port.close()


# -- LampDevice: retry, re-apply, blink, close ------------------------------------------------------------------
async def test_device_waits_for_missing_port_then_applies_state(tmp_path: Path) -> None:
    """A missing port is logged and retried; when the board appears the current state is written."""
    link = tmp_path / "ttyLAMP"
    board = EmulatedLcusBoard(4, link=link)
    cfg = LampConfig("lcus", str(link), {"juumin": 1, "zeimu": 2})
    async with LampDevice(cfg, **FAST) as device:
        device.apply({2: ON})
        await wait_until(lambda: "No such file" in device.last_error, timeout=2)
        assert not device.connected
        with board:
            await board.wait_state({1: OFF, 2: ON})
            assert device.connected


@pytest.mark.parametrize("kind", ["lcus", "ascii"])
async def test_unplug_and_replug_reapplies_state(tmp_path: Path, kind: str) -> None:
    """Unplugging is noticed even while idle; after replugging (board powered off) the state is restored."""
    link = tmp_path / "ttyLAMP"
    board = (EmulatedLcusBoard(4, link=link) if kind == "lcus" else EmulatedAsciiLamp(4, link=link)).start()
    cfg = LampConfig(kind, str(link), {"juumin": 1, "zeimu": 2, "hoken": 3}, ack_timeout=0.2)
    try:
        async with LampDevice(cfg, **FAST) as device:
            device.apply({1: ON, 3: ON})
            await board.wait_state({1: ON, 2: OFF, 3: ON})
            board.unplug()
            await wait_until(lambda: not device.connected, timeout=2)
            board.replug()
            assert board.snapshot()[1] is OFF  # the replugged board lost power
            await board.wait_state({1: ON, 2: OFF, 3: ON})
            assert device.opened == 2
    finally:
        board.close()


async def test_state_changes_while_unplugged_are_applied_on_replug(tmp_path: Path) -> None:
    """What changed while the board was away is what the board shows when it is back."""
    link = tmp_path / "ttyLAMP"
    with EmulatedLcusBoard(4, link=link) as board:
        async with LampDevice(LampConfig("lcus", str(link), {"a": 1, "b": 2}), **FAST) as device:
            device.apply({1: ON})
            await board.wait_state({1: ON})
            board.unplug()
            device.apply({1: OFF, 2: ON})
            await wait_until(lambda: not device.connected, timeout=2)
            board.replug()
            await board.wait_state({1: OFF, 2: ON})


async def test_lcus_blinks_in_software(lcus_board: EmulatedLcusBoard) -> None:
    """A board that cannot blink is switched on and off by LampDevice at the blink interval."""
    cfg = LampConfig("lcus", lcus_board.url, {"juumin": 1}, blink=True)
    async with LampDevice(cfg, blink_interval=0.02, **FAST) as device:
        device.apply({1: BLINK})
        await lcus_board.wait_for(
            lambda: lcus_board.commands().count("ON 1") >= 3 and lcus_board.commands().count("OFF 1") >= 2,
            what="three blinks",
        )
        device.apply({1: OFF})
        await device.wait_ready(2)
        await lcus_board.wait_state({1: OFF})
        blinks = lcus_board.commands().count("ON 1")
    # Steady off now: after the keepalive re-write (0.05 s) no more ON frames arrive.
    assert lcus_board.commands().count("ON 1") == blinks and lcus_board.snapshot()[1] is OFF


async def test_ascii_blinks_in_hardware(ascii_lamp: EmulatedAsciiLamp) -> None:
    """An ascii lamp is told BLINK once and blinks by itself (no stream of on/off commands)."""
    cfg = LampConfig("ascii", ascii_lamp.url, {"juumin": 1}, blink=True)
    async with LampDevice(cfg, **FAST) as device:
        device.apply({1: BLINK})
        await ascii_lamp.wait_state({1: BLINK})
        assert ascii_lamp.commands().count("BLINK 1") == 1


async def test_refused_channel_is_logged_once_and_others_still_work(ascii_lamp: EmulatedAsciiLamp) -> None:
    """A channel the device refuses does not block the other channels or cause a reconnect loop."""
    cfg = LampConfig("ascii", ascii_lamp.url, {"juumin": 1, "big": 7})
    async with LampDevice(cfg, **FAST) as device:
        device.apply({7: ON, 1: ON})
        await ascii_lamp.wait_state({1: ON})
        await device.wait_ready(2)
        assert device.opened == 1
    assert ascii_lamp.commands().count("BAD ON 7") == 1


async def test_close_turns_everything_off_and_closes_port(ascii_lamp: EmulatedAsciiLamp) -> None:
    """Closing the device switches every channel off and releases the port."""
    device = LampDevice(LampConfig("ascii", ascii_lamp.url, {"a": 1, "b": 2}), **FAST)
    device.start()
    device.apply({1: ON, 2: BLINK})
    await ascii_lamp.wait_state({1: ON, 2: BLINK})
    await device.close()
    assert set(ascii_lamp.snapshot().values()) == {OFF}
    assert ascii_lamp.commands()[-1] == "ALLOFF"
    assert not device.connected


async def test_none_driver_logs_only() -> None:
    """The 'none' driver needs no port and keeps working (for terminals without a lamp)."""
    async with LampDevice(LampConfig("none", "", {"juumin": 1}), **FAST) as device:
        device.apply({1: ON})
        await device.wait_ready(2)
        assert device.connected and device.applied == {1: ON}
