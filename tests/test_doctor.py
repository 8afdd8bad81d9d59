"""``kiosk doctor``: each check on its own, and the whole command against good and broken installations.

Everything is real: a relay process (or an in-process RelayServer) on 127.0.0.1, synthetic cameras and audio,
an emulated LCUS board or ascii lamp on a pty, a STUN responder on a UDP port of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, TOKENS, RelayProcess, make_cert, make_relay_config, write_relay_config

from common.messages import Welcome
from kiosk import doctor
from kiosk.config import CameraConfig, LampConfig
from kiosk.devices.emulated import EmulatedAsciiLamp, EmulatedLcusBoard
from relay_server.server import RelayServer

LAMP_CHANNELS = {"juumin": 1, "zeimu": 2, "hoken": 3, "kensetsu": 4}


# ---------------------------------------------------------------------------------------------------------------
# Config files for the tests
# ---------------------------------------------------------------------------------------------------------------
def counter_toml(url: str, token: str = TOKENS["counter-sapporo-1"], camera: str = "synthetic:camera") -> str:
    """A counter config with small synthetic cameras (fast to render) and a synthetic microphone."""
    return f"""
[relay]
url = "{url}"
token = "{token}"

[terminal]
language = "ja"

[camera]
source = "{camera}"
width = 160
height = 120
fps = 20

[document_camera]
source = "synthetic:document"
width = 320
height = 240
fps = 8

[audio]
input = "synthetic:tone"
output = "null"

[network]
ice_addresses = ["127.0.0.1"]
"""


def lamp_toml(url: str, port: str, driver: str = "lcus") -> str:
    """A lamp agent config with four department channels."""
    channels = "\n".join(f"{d} = {ch}" for d, ch in LAMP_CHANNELS.items())
    return f"""
[relay]
url = "{url}"
token = "{TOKENS["lamp-tobetsu-1"]}"

[lamp]
driver = "{driver}"
port = "{port}"

[lamp.channels]
{channels}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write a config file and return its path."""
    p = tmp_path / name
    p.write_text(text)
    return p


def run_doctor_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m kiosk doctor ARGS`` as a real process, with short measuring windows."""
    return subprocess.run(
        [sys.executable, "-m", "kiosk", "doctor", "--camera-seconds", "0.3", "--lamp-dwell", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "KIVY_NO_ARGS": "1"},
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def by_name(results: list[doctor.CheckResult]) -> dict[str, doctor.CheckResult]:
    """Results keyed by check name."""
    return {r.name: r for r in results}


@pytest.fixture(scope="module")
def relay_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """One real relay-server process for the command-level tests of this module."""
    tmp = tmp_path_factory.mktemp("relay")
    with RelayProcess(write_relay_config(tmp)) as relay:
        yield relay


@pytest.fixture
async def relay() -> AsyncIterator[RelayServer]:
    """An in-process relay on 127.0.0.1 with the demo terminals."""
    async with RelayServer(make_relay_config()) as server:
        yield server


@pytest.fixture
def lcus_board() -> Iterator[EmulatedLcusBoard]:
    """An emulated 4-relay LCUS board on a pty."""
    board = EmulatedLcusBoard(4)
    board.start()
    try:
        yield board
    finally:
        board.close()


# ---------------------------------------------------------------------------------------------------------------
# The command, as a process
# ---------------------------------------------------------------------------------------------------------------
def test_good_counter_all_checks_pass(relay_process: RelayProcess, tmp_path: Path) -> None:
    """A correct counter config against a running relay gives all ✓, exit 0, and a snapshot per camera."""
    cfg = write(tmp_path, "counter.toml", counter_toml(relay_process.url))
    snaps = tmp_path / "snaps"
    proc = run_doctor_process("--config", str(cfg), "--snapshot-dir", str(snaps))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "✗" not in proc.stdout
    for name in (
        "config",
        "camera",
        "document camera",
        "microphone",
        "speaker",
        "relay reachable",
        "relay token",
        "terminal role",
        "relay round trip",
        "clock offset",
        "ICE servers",
    ):
        assert any(line.startswith(f"✓ {name} ") for line in proc.stdout.splitlines()), (name, proc.stdout)
    assert "accepted as counter-sapporo-1" in proc.stdout
    assert "160x120" in proc.stdout and "320x240" in proc.stdout
    assert (snaps / "camera.png").stat().st_size > 0
    assert (snaps / "document_camera.png").stat().st_size > 0
    assert "checks passed" in proc.stdout


def test_good_lamp_all_checks_pass(
    relay_process: RelayProcess, tmp_path: Path, lcus_board: EmulatedLcusBoard
) -> None:
    """A lamp config with an emulated LCUS board on a pty passes, and each channel was switched on and off."""
    cfg = write(tmp_path, "lamp.toml", lamp_toml(relay_process.url, lcus_board.url))
    proc = run_doctor_process("--config", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "✓ lamp " in proc.stdout and "✓ lamp departments" in proc.stdout
    assert "(lamp)" in proc.stdout.splitlines()[0]
    commands = lcus_board.commands()
    for ch in LAMP_CHANNELS.values():
        assert f"ON {ch}" in commands and f"OFF {ch}" in commands


def test_wrong_token_process(relay_process: RelayProcess, tmp_path: Path) -> None:
    """A wrong token exits 1 and tells the technician to make a token with relay-server token."""
    cfg = write(tmp_path, "counter.toml", counter_toml(relay_process.url, token="not-the-token"))
    proc = run_doctor_process("--config", str(cfg), "--skip", "camera", "--skip", "audio")
    assert proc.returncode == 1
    assert "✗ relay token" in proc.stdout
    assert "→ token rejected: run `relay-server token" in proc.stdout
    assert "– terminal role" in proc.stdout


def test_relay_down_process(tmp_path: Path) -> None:
    """With no relay listening, exit 1 with 'relay unreachable at ws://…: is relay-server running? … port'."""
    port = free_port()
    cfg = write(tmp_path, "counter.toml", counter_toml(f"ws://127.0.0.1:{port}"))
    proc = run_doctor_process("--config", str(cfg), "--skip", "camera", "--skip", "audio", "--timeout", "2")
    assert proc.returncode == 1
    assert "✗ relay reachable" in proc.stdout
    assert f"→ relay unreachable at ws://127.0.0.1:{port}: is relay-server running" in proc.stdout
    assert f"check firewall port {port}" in proc.stdout


def test_typo_in_key_process(tmp_path: Path) -> None:
    """A misspelt key exits 1, names file, line and key with a suggestion, and says how to fix it."""
    text = counter_toml("ws://127.0.0.1:9").replace("width = 160", "widht = 160")
    cfg = write(tmp_path, "counter.toml", text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("widht"))
    proc = run_doctor_process("--config", str(cfg), "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    first = report["checks"][0]
    assert first["name"] == "config" and first["ok"] is False
    assert f"{cfg}:{line}: camera.widht: unknown key (did you mean 'width'?)" in first["detail"]
    assert first["advice"].startswith("correct the key name on that line")
    assert not any(c["name"].startswith("relay") for c in report["checks"])


# ---------------------------------------------------------------------------------------------------------------
# The command, in-process (exit code and advice without a process start)
# ---------------------------------------------------------------------------------------------------------------
def test_missing_camera_command(
    relay_process: RelayProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """source = "/dev/video99" exits 1 with advice to plug the camera in and use its by-id path."""
    cfg = write(tmp_path, "counter.toml", counter_toml(relay_process.url, camera="/dev/video99"))
    code = doctor.main(
        ["--config", str(cfg), "--camera-seconds", "0.3", "--skip", "audio", "--snapshot-dir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "✗ camera " in out and "/dev/video99: V4L2 /dev/video99: no such device" in out
    assert "→ camera /dev/video99 is not there: plug it in" in out
    assert "✓ document camera" in out
    assert "✓ relay token" in out


def test_lamp_port_absent_command(
    relay_process: RelayProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lamp port that does not exist exits 1 with advice about the USB board, by-id names and group dialout."""
    cfg = write(tmp_path, "lamp.toml", lamp_toml(relay_process.url, str(tmp_path / "ttyUSB7")))
    code = doctor.main(["--config", str(cfg), "--lamp-dwell", "0"])
    out = capsys.readouterr().out
    assert code == 1
    assert "✗ lamp " in out
    assert f"→ the lamp port {tmp_path / 'ttyUSB7'} cannot be opened: plug in the USB relay board" in out
    assert "dialout" in out
    assert "✓ relay token" in out and "✓ lamp departments" in out


# ---------------------------------------------------------------------------------------------------------------
# Config and role
# ---------------------------------------------------------------------------------------------------------------
def test_infer_role_from_demo_configs() -> None:
    """The demo configs are recognised as counter, office and lamp without --role."""
    assert doctor.infer_role(ROOT / "config/counter.toml")[0] == "counter"
    assert doctor.infer_role(ROOT / "config/office.toml")[0] == "office"
    assert doctor.infer_role(ROOT / "config/office-2.toml")[0] == "office"
    assert doctor.infer_role(ROOT / "config/lamp.toml")[0] == "lamp"


def test_check_config_missing_file(tmp_path: Path) -> None:
    """A config path that does not exist fails with advice to check the path."""
    result, cfg, _ = doctor.check_config(tmp_path / "nope.toml", "counter")
    assert not result.ok and cfg is None
    assert "config file not found" in result.detail
    assert result.advice.startswith(f"no file at {tmp_path / 'nope.toml'}")


def test_check_config_bad_value_is_located(tmp_path: Path) -> None:
    """A wrong value names file, line and key, and the advice points at docs/configuration.md."""
    text = counter_toml("ws://127.0.0.1:9").replace("fps = 20", "fps = -1")
    p = write(tmp_path, "counter.toml", text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t == "fps = -1")
    result, _, role = doctor.check_config(p)
    assert role == "counter"
    assert not result.ok and f"{p}:{line}: camera.fps: must be greater than 0" in result.detail
    assert "docs/configuration.md" in result.advice


def test_ice_addresses_unknown_interface() -> None:
    """An ice_addresses entry that is no interface of this PC fails with advice to use `ip -br addr`."""
    assert doctor.check_ice_addresses(["127.0.0.1"]).ok
    bad = doctor.check_ice_addresses(["no-such-if0"])
    assert not bad.ok and "no-such-if0" in bad.detail and "ip -br addr" in bad.advice


# ---------------------------------------------------------------------------------------------------------------
# Cameras
# ---------------------------------------------------------------------------------------------------------------
async def test_synthetic_camera_measured(tmp_path: Path) -> None:
    """A synthetic camera delivers the configured size near the configured rate and a PNG snapshot is saved."""
    cfg = CameraConfig("synthetic:camera", 160, 120, 20.0)
    result = await doctor.check_camera(cfg, "camera", "camera", seconds=0.4, snapshot_dir=tmp_path)
    assert result.ok, result
    assert "160x120" in result.detail
    assert (tmp_path / "camera.png").read_bytes().startswith(b"\x89PNG")


async def test_rotated_camera_size_is_swapped() -> None:
    """A camera turned by 90 degrees is expected to deliver height × width."""
    cfg = CameraConfig("synthetic:camera", 160, 120, 20.0, rotation=90)
    m = await doctor.measure_camera(cfg, "camera", seconds=0.3)
    assert (m.width, m.height) == (120, 160)
    assert doctor.camera_result("camera", "camera", cfg, m).ok


async def test_camera_from_missing_file() -> None:
    """A file: source that does not exist fails with advice to fix the path."""
    cfg = CameraConfig("file:/nonexistent/loop.avi", 160, 120, 10.0)
    result = await doctor.check_camera(cfg, "camera", "camera", seconds=0.3)
    assert not result.ok and "no such file" in result.detail
    assert "does not exist: fix the path" in result.advice


async def test_malformed_camera_spec() -> None:
    """A source that is no valid spec fails with the accepted forms in the advice."""
    cfg = CameraConfig("webcam-1", 160, 120, 10.0)
    result = await doctor.check_camera(cfg, "camera", "camera", seconds=0.3)
    assert not result.ok
    assert result.advice.startswith("fix [camera] source") and "/dev/video0" in result.advice


def test_camera_result_wrong_size_and_slow_rate() -> None:
    """A camera delivering another size, or too few frames per second, fails with what to change."""
    cfg = CameraConfig("/dev/video0", 1280, 720, 30.0)
    small = doctor.CameraMeasurement("/dev/video0", frames=30, fps=30.0, width=640, height=480)
    r = doctor.camera_result("camera", "camera", cfg, small)
    assert not r.ok and "v4l2-ctl --list-formats-ext -d /dev/video0" in r.advice
    slow = doctor.CameraMeasurement("/dev/video0", frames=15, fps=15.0, width=1280, height=720)
    r = doctor.camera_result("camera", "camera", cfg, slow)
    assert not r.ok and "slower than [camera] fps = 30" in r.advice
    fine = doctor.CameraMeasurement("/dev/video0", frames=29, fps=28.0, width=1280, height=720)
    assert doctor.camera_result("camera", "camera", cfg, fine).ok


def test_device_lists_from_a_fake_dev_tree(tmp_path: Path) -> None:
    """/dev/video* nodes are listed with their driver names and by-id links with their targets."""
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    (dev / "v4l" / "by-id").mkdir(parents=True)
    for n in ("video0", "video1", "video10"):
        (dev / n).touch()
        (sysfs / n).mkdir(parents=True)
        (sysfs / n / "name").write_text(f"Cam {n}\n")
    (dev / "v4l" / "by-id" / "usb-Logi_C920-video-index0").symlink_to(dev / "video0")
    # As in sysfs: videoN/device links to the USB interface, whose parent (the device) has idVendor/idProduct.
    usb = tmp_path / "devices" / "usb1" / "1-1"
    (usb / "1-1:1.0").mkdir(parents=True)
    (usb / "idVendor").write_text("046d\n")
    (usb / "idProduct").write_text("082d\n")
    (sysfs / "video0" / "device").symlink_to(usb / "1-1:1.0")
    lines = doctor.list_video_devices(dev, sysfs)
    assert lines[:3] == [
        f"{dev}/video0  Cam video0 USB 046d:082d",
        f"{dev}/video1  Cam video1",
        f"{dev}/video10  Cam video10",
    ]
    assert lines[3] == f"{dev}/v4l/by-id/usb-Logi_C920-video-index0 -> {dev}/video0"
    assert doctor.video_devices_result(lines).ok
    assert "only synthetic" in doctor.video_devices_result([]).detail


def test_audio_devices_from_proc_asound(tmp_path: Path) -> None:
    """ALSA PCMs from /proc/asound/pcm are shown as hw:CARD,DEV names with playback/capture."""
    (tmp_path / "pcm").write_text(
        "00-00: ALC892 Analog : ALC892 Analog : playback 1 : capture 1\n"
        "01-00: USB Audio : USB Audio : capture 1\n"
    )
    r = doctor.audio_devices_result(tmp_path)
    assert r.ok
    assert r.detail.splitlines() == [
        "hw:0,0  ALC892 Analog (playback, capture)",
        "hw:1,0  USB Audio (capture)",
    ]


def test_microphone_judgement() -> None:
    """A microphone that is loud enough passes; one that opens but stays silent, or sends nothing, fails with advice
    (no sound card on these machines: the judgement is tested on the numbers a device would give)."""
    ok = doctor.microphone_result("alsa:default", "alsa", 0.02, 312.0, 8000, 0.5)
    assert ok.ok and "312 Hz" in ok.detail
    silent = doctor.microphone_result("alsa:default", "alsa", 0.0, None, 8000, 0.5)
    assert not silent.ok and "(silent)" in silent.detail and "alsamixer" in silent.advice
    dead = doctor.microphone_result("alsa:default", "alsa", 0.0, None, 0, 0.5)
    assert not dead.ok and "no audio arrived" in dead.detail and "arecord -D" in dead.advice
    assert doctor.microphone_result("synthetic:silence", "silence", 0.0, None, 8000, 0.5).ok


def test_serial_ports_listed() -> None:
    """Listing serial ports never fails, found or not."""
    assert doctor.serial_ports_result(doctor.list_serial_ports()).ok


# ---------------------------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------------------------
async def test_audio_synthetic_tone_passes() -> None:
    """A synthetic tone is heard at its frequency and the null speaker opens."""
    from kiosk.config import AudioConfig

    results = by_name(await doctor.check_audio(AudioConfig("synthetic:tone", "null", 660.0), seconds=0.2))
    assert results["microphone"].ok and "660 Hz" in results["microphone"].detail
    assert results["speaker"].ok


async def test_audio_missing_alsa_devices_fail() -> None:
    """ALSA devices that cannot be opened fail with advice naming arecord -L / aplay -L."""
    from kiosk.config import AudioConfig

    results = by_name(await doctor.check_audio(AudioConfig("alsa:hw:9,0", "alsa:hw:9,0"), seconds=0.2))
    assert not results["microphone"].ok and "arecord -L" in results["microphone"].advice
    assert not results["speaker"].ok and "aplay -L" in results["speaker"].advice


# ---------------------------------------------------------------------------------------------------------------
# Lamp
# ---------------------------------------------------------------------------------------------------------------
async def test_lamp_ascii_channels_acknowledged() -> None:
    """Every channel of an ascii lamp is acknowledged, and the device saw ON and OFF for each."""
    with EmulatedAsciiLamp(8) as lamp:
        cfg = LampConfig("ascii", lamp.url, dict(LAMP_CHANNELS), ack_timeout=1.0)
        result = await doctor.check_lamp(cfg, dwell=0)
        assert result.ok, result
        assert result.detail.count("acknowledged") == 4
        for ch in LAMP_CHANNELS.values():
            assert f"ON {ch}" in lamp.commands() and f"OFF {ch}" in lamp.commands()


async def test_lamp_refusing_channel() -> None:
    """A lamp with fewer channels than configured fails with advice to fix the channel numbers."""
    with EmulatedAsciiLamp(2) as lamp:
        cfg = LampConfig("ascii", lamp.url, dict(LAMP_CHANNELS), ack_timeout=1.0)
        result = await doctor.check_lamp(cfg, dwell=0)
        assert not result.ok
        assert "fewer channels than [lamp.channels]" in result.advice


async def test_lamp_silent_device() -> None:
    """A device that never answers PING fails with advice about the wrong port, baud rate or firmware."""
    with EmulatedAsciiLamp(8, silent=True) as lamp:
        cfg = LampConfig("ascii", lamp.url, {"juumin": 1}, ack_timeout=0.1)
        result = await doctor.check_lamp(cfg, dwell=0)
        assert not result.ok and "does not answer like our lamp" in result.advice


def test_lamp_departments_mismatch() -> None:
    """A [lamp.channels] department the relay does not send this terminal is reported."""
    cfg = LampConfig("lcus", "/dev/null", {"juumin": 1, "kensetu": 2})
    welcome: Welcome = {
        "type": "welcome",
        "terminal": "lamp-1",
        "role": "lamp",
        "ice_servers": [],
        "departments": [{"id": "juumin"}, {"id": "kensetsu"}],
    }
    r = doctor.lamp_departments_result(cfg, welcome, "lamp")
    assert not r.ok and "'kensetu'" in r.detail and "relay.toml" in r.advice


# ---------------------------------------------------------------------------------------------------------------
# Relay
# ---------------------------------------------------------------------------------------------------------------
async def test_probe_good_relay(relay: RelayServer) -> None:
    """Against a live relay: reachable, no TLS, token accepted, right role, fast round trips, small offset."""
    probe = await doctor.probe_relay(relay.url, TOKENS["counter-sapporo-1"], timeout=2)
    assert probe.welcome is not None and len(probe.rtts) == 3
    results = [
        doctor.reachable_result(probe),
        doctor.tls_result(probe),
        doctor.token_result(probe),
        doctor.role_result(probe, "counter"),
        doctor.rtt_result(probe),
        doctor.clock_result(probe),
    ]
    assert all(r.ok for r in results), results
    assert "juumin" in results[2].detail


async def test_probe_wrong_token(relay: RelayServer) -> None:
    """A wrong token is reported as rejected (not as unreachable), and the dependent checks are skipped."""
    probe = await doctor.probe_relay(relay.url, "wrong", timeout=2)
    assert doctor.reachable_result(probe).ok
    r = doctor.token_result(probe, "counter.toml")
    assert not r.ok and "unknown token" in r.detail
    assert r.advice.startswith("token rejected: run `relay-server token") and "counter.toml" in r.advice
    assert doctor.rtt_result(probe).skipped and doctor.clock_result(probe).skipped


async def test_probe_wrong_role(relay: RelayServer) -> None:
    """An office token in a file checked as a counter fails the role check with the role the relay knows."""
    probe = await doctor.probe_relay(relay.url, TOKENS["office-tobetsu-1"], timeout=2)
    r = doctor.role_result(probe, "counter")
    assert not r.ok and "office-tobetsu-1 as office" in r.detail and "--role office" in r.advice


async def test_clock_offset_detected() -> None:
    """A relay whose clock runs 30 s ahead makes the clock check fail and say this PC is behind."""
    async with RelayServer(make_relay_config(), clock=lambda: __import__("time").time() + 30) as server:
        probe = await doctor.probe_relay(server.url, TOKENS["counter-sapporo-1"], timeout=2)
    r = doctor.clock_result(probe)
    assert not r.ok and "behind the relay" in r.detail and "timedatectl set-ntp true" in r.advice
    assert abs(float(r.detail.split()[3]) - 30) < 1


async def test_not_a_relay() -> None:
    """A port where something else answers (plain TCP that closes) is reported as not the relay."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        probe = await doctor.probe_relay(f"ws://127.0.0.1:{port}", "x", timeout=2)
    r = doctor.reachable_result(probe)
    assert not r.ok and "not like the relay" in r.advice
    assert doctor.token_result(probe).skipped


def test_rtt_result_slow_link() -> None:
    """Round trips over the limit fail with advice to look at the link."""
    probe = doctor.RelayProbe(
        "ws://relay:8765",
        host="relay",
        port=8765,
        welcome={"type": "welcome", "terminal": "k", "role": "counter", "departments": [], "ice_servers": []},
        rtts=[0.45, 0.5, 0.6],
        offsets=[0.0, 0.0, 0.0, 0.0],
    )
    r = doctor.rtt_result(probe)
    assert not r.ok and "500.0 ms median" in r.detail and "mtr relay" in r.advice


# ---------------------------------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------------------------------
async def test_tls_untrusted_then_trusted(tmp_path: Path) -> None:
    """wss:// with a self-signed certificate fails without ca_file (advice: set it) and passes with it."""
    cert, key = make_cert(tmp_path)
    async with RelayServer(make_relay_config(tls_cert=str(cert), tls_key=str(key))) as server:
        url = f"wss://127.0.0.1:{server.port}"
        bad = await doctor.probe_relay(url, TOKENS["counter-sapporo-1"], timeout=2)
        good = await doctor.probe_relay(url, TOKENS["counter-sapporo-1"], ca_file=str(cert), timeout=2)
    r = doctor.tls_result(bad)
    assert not r.ok and "ca_file" in r.advice
    assert doctor.token_result(bad).skipped
    r = doctor.tls_result(good)
    assert r.ok and "relay.test" in r.detail and "days" in r.detail, r
    assert doctor.token_result(good).ok


async def test_tls_certificate_about_to_expire(tmp_path: Path) -> None:
    """A certificate that expires within two weeks fails with advice to renew it."""
    cert, key = make_cert(tmp_path, days=5)
    async with RelayServer(make_relay_config(tls_cert=str(cert), tls_key=str(key))) as server:
        probe = await doctor.probe_relay(
            f"wss://127.0.0.1:{server.port}", TOKENS["counter-sapporo-1"], ca_file=str(cert), timeout=2
        )
    r = doctor.tls_result(probe)
    assert not r.ok and "renew" in r.advice


async def test_wss_to_a_plain_relay(relay: RelayServer) -> None:
    """wss:// to a relay without TLS says the relay does not speak TLS on that port."""
    probe = await doctor.probe_relay(f"wss://127.0.0.1:{relay.port}", "x", timeout=2)
    r = doctor.tls_result(probe)
    assert not r.ok and "does not speak TLS" in r.advice, r


# ---------------------------------------------------------------------------------------------------------------
# STUN / ICE servers
# ---------------------------------------------------------------------------------------------------------------
def stun_success(request: bytes, addr: tuple[str, int]) -> bytes:
    """A Binding success response carrying XOR-MAPPED-ADDRESS for ``addr`` (written out by hand, RFC 5389)."""
    tid = request[8:20]
    ip = bytes(a ^ b for a, b in zip(socket.inet_aton(addr[0]), struct.pack("!I", 0x2112A442), strict=True))
    attr = struct.pack("!HHBBH", 0x0020, 8, 0, 1, addr[1] ^ 0x2112) + ip
    return struct.pack("!HHI", 0x0101, len(attr), 0x2112A442) + tid + attr


class StunResponder(asyncio.DatagramProtocol):
    """A STUN server that answers every Binding request on 127.0.0.1."""

    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[:2] == b"\x00\x01":
            self.transport.sendto(stun_success(data, addr), addr)


@pytest.fixture
async def stun_port() -> AsyncIterator[int]:
    """The UDP port of a STUN responder on 127.0.0.1."""
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        StunResponder, local_addr=("127.0.0.1", 0)
    )
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def test_stun_codec() -> None:
    """A Binding request has the RFC 5389 header; a success response yields the mapped address."""
    tid = bytes(range(12))
    req = doctor.stun_binding_request(tid)
    assert req == b"\x00\x01\x00\x00\x21\x12\xa4\x42" + tid
    assert doctor.parse_stun_response(stun_success(req, ("192.0.2.7", 40000)), tid) == "192.0.2.7:40000"
    assert doctor.parse_stun_response(stun_success(req, ("192.0.2.7", 40000)), bytes(12)) is None
    error = (
        struct.pack("!HHI", 0x0111, 16, 0x2112A442)
        + tid
        + struct.pack("!HHHBB", 0x0009, 12, 0, 4, 1)
        + b"Unauthor"
    )
    with pytest.raises(ValueError, match="STUN error 401"):
        doctor.parse_stun_response(error, tid)


def test_parse_ice_urls() -> None:
    """STUN/TURN URLs give host, port (3478 or 5349 by default) and transport."""
    assert doctor.parse_ice_url("stun:127.0.0.1") == ("127.0.0.1", 3478, "udp")
    assert doctor.parse_ice_url("turn:turn.example.jp:3479?transport=tcp") == ("turn.example.jp", 3479, "tcp")
    assert doctor.parse_ice_url("turns:turn.example.jp") == ("turn.example.jp", 5349, "tls")
    assert doctor.parse_ice_url("stun:[::1]:3478") == ("::1", 3478, "udp")
    with pytest.raises(ValueError):
        doctor.parse_ice_url("http://example.jp")


async def test_ice_servers_from_welcome(stun_port: int) -> None:
    """The STUN server from the relay's welcome answers; a dead one fails with UDP/firewall advice."""
    dead = free_port()
    servers = (
        {"urls": [f"stun:127.0.0.1:{stun_port}"]},
        {"urls": f"turn:127.0.0.1:{dead}", "username": "u", "credential": "c"},
    )
    async with RelayServer(make_relay_config(ice_servers=servers)) as server:
        probe = await doctor.probe_relay(server.url, TOKENS["counter-sapporo-1"], timeout=2)
    assert probe.welcome is not None
    results = await doctor.check_ice_servers(probe.welcome["ice_servers"], timeout=0.5)
    assert results[0].ok and "sees this PC as 127.0.0.1:" in results[0].detail
    assert not results[1].ok and "does not answer" in results[1].advice and "turns:" in results[1].advice


async def test_no_ice_servers_is_fine() -> None:
    """Without STUN/TURN servers the check passes and explains that both ends must reach each other."""
    (r,) = await doctor.check_ice_servers([])
    assert r.ok and "host candidates only" in r.detail


async def test_tcp_ice_server(relay: RelayServer) -> None:
    """A turn: URL with transport=tcp is checked with a TCP connection."""
    probe = await doctor.stun_ping(f"turn:127.0.0.1:{relay.port}?transport=tcp", timeout=1)
    assert probe.ok and probe.transport == "tcp"


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------
def test_report_format() -> None:
    """The checklist shows ✓, ✗ with an arrowed advice line, – for skipped, and a summary naming failures."""
    text = doctor.format_report(
        [
            doctor.CheckResult("config", True, "ok"),
            doctor.CheckResult("camera", False, "gone\nsecond line", "plug it in"),
            doctor.CheckResult("relay token", False, "skipped: no relay", skipped=True),
        ],
        "title",
    )
    lines = text.splitlines()
    assert lines[0] == "title"
    assert lines[1].startswith("✓ config ")
    assert lines[2].startswith("✗ camera ") and lines[3].strip() == "second line"
    assert lines[4].strip() == "→ plug it in"
    assert lines[5].startswith("– relay token")
    assert lines[-1] == "1 check(s) failed: camera"


async def test_run_doctor_office_with_lamp(
    relay: RelayServer, tmp_path: Path, lcus_board: EmulatedLcusBoard
) -> None:
    """An office station with a lamp gets media, lamp and relay checks together, all passing."""
    text = counter_toml(relay.url, token=TOKENS["office-tobetsu-1"]).replace(
        '[document_camera]\nsource = "synthetic:document"\nwidth = 320\nheight = 240\nfps = 8\n', ""
    )
    text += (
        f'\n[lamp]\ndriver = "lcus"\nport = "{lcus_board.url}"\n\n[lamp.channels]\njuumin = 1\nzeimu = 2\n'
    )
    cfg = write(tmp_path, "station.toml", text)
    opts = doctor.DoctorOptions(str(cfg), camera_seconds=0.3, lamp_dwell=0, timeout=2, skip=("audio",))
    results, role = await doctor.run_doctor(opts)
    assert role == "office"
    named = by_name(results)
    assert all(not r.failed for r in results), [r for r in results if r.failed]
    assert {"camera", "lamp", "lamp departments", "relay token", "terminal role"} <= set(named)
    assert "document camera" not in named
