"""What terminals report for the fleet page: device states from real sources and a real lamp port, the speaker's
sound card, and the reporter that sends on link up and on change, through a real relay."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from fleet_support import fleet_relay
from helpers import COUNTER, LAMP, ROOT, WsClient, wait_until, write_relay_config

from kiosk.config import CameraConfig, load_terminal_config
from kiosk.devices.emulated import EmulatedLcusBoard
from kiosk.devices.lamp import LampDevice
from kiosk.health import HealthReporter, device_states, lamp_state, speaker_state, video_state
from kiosk.video.sources import open_video_source

LAMP_CONFIG = load_terminal_config(ROOT / "config" / "lamp.toml", "lamp").lamp
assert LAMP_CONFIG is not None


async def test_cameras_report_ok_or_missing_with_the_reason() -> None:
    """A synthetic camera that delivers frames is ok; a device path that does not exist is missing, with why."""
    good = open_video_source(CameraConfig("synthetic:camera", 160, 90, 10.0), name="camera")
    bad = open_video_source(CameraConfig("/dev/video-health-missing", 160, 90, 10.0), name="document")
    try:
        await wait_until(lambda: video_state(good) == {"state": "ok"}, timeout=10, interval=0.05)
        await wait_until(lambda: video_state(bad)["state"] == "missing", timeout=10, interval=0.05)
        assert "/dev/video-health-missing" in video_state(bad)["reason"]
    finally:
        good.close()
        bad.close()


async def test_lamp_port_missing_then_ok_on_an_emulated_board() -> None:
    """A lamp port that cannot be opened is missing with the error; the same device on a board is ok."""
    assert LAMP_CONFIG is not None
    missing = LampDevice(replace(LAMP_CONFIG, port="/dev/ttyUSB-health-missing"), backoff=(0.05, 0.2))
    missing.start()
    try:
        await wait_until(lambda: bool(missing.last_error), timeout=5)
        state = lamp_state(missing)
        assert state["state"] == "missing" and "ttyUSB-health-missing" in state["reason"]
    finally:
        await missing.close()
    with EmulatedLcusBoard(4) as board:
        device = LampDevice(replace(LAMP_CONFIG, port=board.url))
        device.start()
        try:
            await wait_until(lambda: lamp_state(device) == {"state": "ok"}, timeout=5)
            assert device_states(lamp_device=device) == {"lamp_port": {"state": "ok"}}
        finally:
            await device.close()


def test_speaker_is_checked_by_its_sound_card(tmp_path: Path) -> None:
    """hw:N needs card N; a named ALSA device needs any card; null and recorder are no device."""
    (tmp_path / "card1").mkdir()
    (tmp_path / "cards").write_text(" 1 [USB            ]: USB-Audio - USB Speaker\n")
    assert speaker_state("alsa:hw:1,0", tmp_path) == {"state": "ok"}
    assert speaker_state("hw:2,0", tmp_path) == {"state": "missing", "reason": "no sound card 2 (hw:2,0)"}
    assert speaker_state("alsa:default", tmp_path) == {"state": "ok"}
    (tmp_path / "cards").write_text("--- no soundcards ---\n")
    assert (speaker_state("alsa:default", tmp_path) or {}).get("state") == "missing"
    assert speaker_state("null", tmp_path) is None and speaker_state("recorder", tmp_path) is None


async def test_reporter_sends_on_link_up_and_on_change_only(tmp_path: Path) -> None:
    """The first 'up' sends a report, an unchanged look sends nothing, a device change sends again, a new 'up' (a
    restarted relay) sends again; the relay keeps the latest and the history."""
    async with fleet_relay(tmp_path, seed=False) as rig:
        client = await WsClient.open(rig.relay.url, LAMP)
        devices: dict[str, Any] = {"lamp_port": {"state": "ok"}}
        sent: list[dict[str, Any]] = []

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)
            await client.send(msg)

        reporter = HealthReporter(lambda: dict(devices), send, interval=0.05)
        reporter.start()
        try:
            reporter.on_link("up")
            await wait_until(lambda: len(sent) == 1, timeout=5)
            await asyncio.sleep(0.3)  # several looks at an unchanged terminal: nothing new may be sent
            assert len(sent) == 1
            devices["lamp_port"] = {"state": "failing", "reason": "write failed"}
            await wait_until(lambda: len(sent) == 2, timeout=5)
            await wait_until(lambda: rig.relay.fleet.state.problems(LAMP) != [], timeout=5)
            assert rig.relay.fleet.state.problems(LAMP) == [
                {"kind": "failing", "device": "lamp_port", "reason": "write failed"}
            ]
            reporter.on_link("down")
            reporter.on_link("up")
            await wait_until(lambda: len(sent) == 3, timeout=5)
            assert sent[2] == sent[1]
        finally:
            await reporter.close()
            await client.close()


async def test_a_bad_health_report_is_refused_and_the_terminal_carries_on(tmp_path: Path) -> None:
    """An unknown device state gets bad_message and is not kept; the connection keeps working."""
    async with fleet_relay(tmp_path, seed=False) as rig:
        counter = await WsClient.open(rig.relay.url, COUNTER)
        await counter.send({"type": "health", "version": "x", "devices": {"camera": {"state": "smoking"}}})
        err = await counter.expect("error")
        assert err["code"] == "bad_message" and err["ref"] == "health"
        assert COUNTER not in rig.relay.fleet.state.health
        await counter.send({"type": "ping", "id": 1})
        await counter.expect("pong")
        await counter.close()


def test_a_fleet_port_in_use_is_named_at_start(tmp_path: Path) -> None:
    """relay-server exits 1 naming the fleet page's port (not the relay's) when that port is taken."""
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = write_relay_config(
            tmp_path,
            {
                '[fleet]\nenabled = true\nhost = "127.0.0.1"\nport = 0': (
                    f'[fleet]\nenabled = true\nhost = "127.0.0.1"\nport = {port}'
                )
            },
        )
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "relay_server",
                "--config",
                str(cfg),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert out.returncode == 1, out.stderr
    assert f"cannot serve the fleet page on 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr
