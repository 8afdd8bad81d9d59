"""``kiosk doctor``: a technician's checklist for one terminal, with one line of advice per problem.

::

    kiosk doctor --config /etc/kiosk/counter.toml [--role counter|office|lamp] [--url URL] [--json]
                 [--snapshot-dir DIR] [--lamp-port URL] [--skip CHECK] ...

Each check is a small function that returns :class:`CheckResult` (name, ok, detail, advice), so each can be
tested on its own; the I/O they need is done by a few probes (:func:`probe_relay`, :func:`measure_camera`,
:func:`stun_ping`, …) whose raw findings are turned into results by pure functions (``*_result``). The
command prints ✓/✗ per check and exits 1 if anything failed (2 for a bad command line).

What is checked, per role (``counter`` and ``office``: media; ``lamp``, or an ``office`` with ``[lamp]``: lamp):

* ``config``: the file loads (errors name file, line and key); the role comes from ``--role``, else from the
  file's sections, else from its name.
* ``video devices``, ``serial ports``, ``audio devices``: what this PC has (always ✓; for reference).
* ``camera``, ``document camera``: opens, delivers frames of the configured size at the configured rate
  (measured over a short window) and saves a snapshot PNG.
* ``microphone``, ``speaker``: the devices open; the microphone hears something.
* ``ICE addresses``: every ``[network] ice_addresses`` entry exists on this PC.
* ``lamp``: each configured channel is switched on and off once (the lamp agent's own channel test).
* ``relay reachable``, ``relay TLS``, ``relay token``, ``terminal role``, ``relay round trip``,
  ``clock offset``: TCP, TLS certificate, ``hello``/``welcome``, ``ping``/``pong`` (docs/protocol.md).
* ``lamp departments``: ``[lamp.channels]`` matches the departments the relay sends this terminal.
* ``ICE server …``: each STUN/TURN server from ``welcome.ice_servers`` answers a STUN binding request.

Note: the doctor logs in to the relay with this terminal's token. A kiosk running on this PC with the same token
is disconnected for a moment (close code 4409) and reconnects by itself; do not run the doctor during a call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import secrets
import socket
import ssl
import statistics
import struct
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kiosk.config import (
    AudioConfig,
    CameraConfig,
    ConfigError,
    LampConfig,
    TerminalConfig,
    load_terminal_config,
)

__all__ = [
    "CameraMeasurement", "CheckResult", "IceProbe", "RelayProbe", "audio_devices_result", "camera_result",
    "check_audio", "check_camera", "check_config", "check_ice_addresses", "check_ice_servers", "check_lamp",
    "clock_result", "format_report", "ice_server_result", "infer_role", "lamp_departments_result",
    "list_serial_ports", "list_video_devices", "main", "measure_camera", "parse_ice_url", "parse_stun_response",
    "probe_relay", "reachable_result", "role_result", "rtt_result", "run_doctor", "serial_ports_result",
    "stun_binding_request", "stun_ping", "tls_result", "token_result", "video_devices_result",
]

log = logging.getLogger(__name__)

ROLES = ("counter", "office", "lamp")
FPS_TOLERANCE = 0.85  # a camera delivering at least 85 % of the configured rate passes
RTT_LIMIT_S = 0.3  # a round trip to the relay above this makes calls sluggish
CLOCK_LIMIT_S = 2.0  # clock offset to the relay above this is a problem (logs, TURN credentials, TLS)
CERT_MIN_DAYS = 14  # warn this long before the relay's certificate expires
MIC_MIN_LEVEL = 0.0003  # RMS of full scale (about -70 dBFS): below this a real microphone hears nothing
STUN_MAGIC = 0x2112A442
CHECK_NAMES = ("config", "devices", "camera", "audio", "lamp", "relay", "ice")


# ---------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: short name shown in the checklist (``camera``, ``relay token``).
        ok: passed (✓) or failed (✗).
        detail: what was found; may span several lines (device lists).
        advice: for a failure, one line a technician on site can act on.
        skipped: not run because an earlier check it depends on failed (shown as –, never a failure by itself).
    """

    name: str
    ok: bool
    detail: str
    advice: str = ""
    skipped: bool = False

    @property
    def failed(self) -> bool:
        """Whether this result counts as a failure."""
        return not self.ok and not self.skipped


def _skip(name: str, why: str) -> CheckResult:
    return CheckResult(name, False, f"skipped: {why}", skipped=True)


def format_report(results: Iterable[CheckResult], title: str = "") -> str:
    """The checklist as text: ``✓ name  detail``, ``✗ …`` with ``→ advice`` below, and a summary line."""
    results = list(results)
    width = max([len(r.name) for r in results] + [10])
    lines = [title] if title else []
    for r in results:
        mark = "–" if r.skipped else ("✓" if r.ok else "✗")
        detail_lines = r.detail.splitlines() or [""]
        lines.append(f"{mark} {r.name:<{width}}  {detail_lines[0]}")
        lines += [f"  {'':<{width}}  {extra}" for extra in detail_lines[1:]]
        if r.failed and r.advice:
            lines.append(f"  {'':<{width}}  → {r.advice}")
    failed = [r.name for r in results if r.failed]
    if failed:
        lines.append(f"\n{len(failed)} check(s) failed: {', '.join(failed)}")
    else:
        lines.append(f"\nall {len(results)} checks passed")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------
def infer_role(path: str | Path) -> tuple[str | None, str]:
    """Guess a terminal config's role from its sections, else its file name.

    Returns:
        ``(role, how)``; role is None when the file cannot be parsed (loading it then reports the error).
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None, ""
    media = {"terminal", "camera", "audio", "network", "document_camera"} & set(data)
    if "document_camera" in data:
        return "counter", "it has [document_camera]"
    if "lamp" in data and not media:
        return "lamp", "it has [lamp] and no media sections"
    name = Path(path).name.lower()
    for role in ROLES:
        if role in name:
            return role, f"its file name contains '{role}'"
    if "lamp" in data:
        return "office", "it has [lamp] and media sections"
    return "office", "a guess (no [document_camera]); pass --role to be sure"


def check_config(path: str | Path, role: str | None = None) -> tuple[CheckResult, TerminalConfig | None, str]:
    """Load the terminal config as ``role`` (or the inferred one).

    Returns:
        ``(result, config or None, role used)``.
    """
    how = "from --role"
    if role is None:
        guessed, how = infer_role(path)
        role = guessed or "office"
    try:
        cfg = load_terminal_config(path, role)
    except ConfigError as err:
        text = str(err)
        if "config file not found" in text:
            advice = (f"no file at {path}: check the path (terminal configs usually live in /etc/kiosk/ or "
                      "config/ of the installation)")
        elif "unknown key" in text:
            advice = ("correct the key name on that line (a misspelt key is never silently ignored); "
                      "docs/configuration.md lists every key")
        elif "TOML syntax error" in text:
            advice = "fix the TOML syntax on that line (quotes around strings, one key = value per line)"
        elif "required" in text:
            advice = "add the missing key or table; docs/configuration.md shows an example of each"
        else:
            advice = "fix the value on that line; docs/configuration.md gives the type and an example of each key"
        return CheckResult("config", False, text, advice), None, role
    return CheckResult("config", True, f"{path} is valid (role {role}: {how})"), cfg, role


def check_ice_addresses(entries: Iterable[str]) -> CheckResult:
    """Every ``[network] ice_addresses`` entry is an IP address or an interface of this PC."""
    entries = list(entries)
    if not entries:
        return CheckResult("ICE addresses", True, "not restricted: ICE may use every interface but loopback")
    from kiosk.video.ice import IceConfigError, resolve_ice_addresses

    try:
        resolved = resolve_ice_addresses(entries)
    except IceConfigError as err:
        return CheckResult("ICE addresses", False, str(err),
                           "set [network] ice_addresses to interfaces or addresses this PC has (`ip -br addr`), "
                           "or remove the key to use every interface")
    return CheckResult("ICE addresses", True, f"media will use {', '.join(resolved)}")


# ---------------------------------------------------------------------------------------------------------------
# Device lists
# ---------------------------------------------------------------------------------------------------------------
def list_video_devices(dev: str | Path = "/dev", sysfs: str | Path = "/sys/class/video4linux") -> list[str]:
    """``/dev/video*`` with the driver's name and USB VID:PID, then ``/dev/v4l/by-id/*`` links and their targets."""
    dev, sysfs = Path(dev), Path(sysfs)
    lines = []
    for node in sorted(dev.glob("video*"), key=lambda p: (len(p.name), p.name)):
        name = ""
        with contextlib.suppress(OSError):
            name = (sysfs / node.name / "name").read_text().strip()
        usb = _usb_id(sysfs / node.name / "device")
        lines.append(f"{node}  {name}{f' USB {usb}' if usb else ''}".rstrip())
    by_id = dev / "v4l" / "by-id"
    if by_id.is_dir():
        for link in sorted(by_id.iterdir()):
            lines.append(f"{link} -> {os.path.realpath(link)}")
    return lines


def _usb_id(device: Path) -> str:
    """``vvvv:pppp`` of the USB device a sysfs ``device`` link belongs to (its interface's parent), or ""."""
    try:
        here = device.resolve(strict=True)
    except OSError:
        return ""
    for folder in (here, *list(here.parents)[:3]):
        try:
            vid = (folder / "idVendor").read_text().strip()
            pid = (folder / "idProduct").read_text().strip()
        except OSError:
            continue
        return f"{vid}:{pid}"
    return ""


def video_devices_result(lines: list[str]) -> CheckResult:
    """Always passes: the list helps pick ``[camera] source`` (a by-id path survives re-plugging)."""
    if not lines:
        return CheckResult("video devices", True, "none (no /dev/video*): only synthetic: and file: cameras work")
    return CheckResult("video devices", True, "\n".join(lines))


def list_serial_ports() -> list[str]:
    """Serial ports pyserial finds, with description and USB VID:PID, and ``/dev/serial/by-id`` links."""
    from serial.tools import list_ports

    lines = []
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        usb = f" USB {port.vid:04x}:{port.pid:04x}" if port.vid is not None and port.pid is not None else ""
        serial_no = f" serial {port.serial_number}" if port.serial_number else ""
        desc = port.description if port.description and port.description != "n/a" else ""
        lines.append(f"{port.device}  {desc}{usb}{serial_no}".rstrip())
    by_id = Path("/dev/serial/by-id")
    if by_id.is_dir():
        for link in sorted(by_id.iterdir()):
            lines.append(f"{link} -> {os.path.realpath(link)}")
    return lines


def serial_ports_result(lines: list[str]) -> CheckResult:
    """Always passes: the list shows the lamp's port (an LCUS board is a CH340, USB 1a86:7523)."""
    if not lines:
        return CheckResult("serial ports", True, "none found (USB serial adapters show up as /dev/ttyUSB*, "
                                                 "/dev/ttyACM*)")
    return CheckResult("serial ports", True, "\n".join(lines))


def audio_devices_result(asound: str | Path = "/proc/asound") -> CheckResult:
    """Always passes: the sound cards and their playback/capture PCMs, from ``/proc/asound``."""
    root = Path(asound)
    try:
        pcm = (root / "pcm").read_text().strip().splitlines()
    except OSError:
        pcm = []
    if not pcm:
        return CheckResult("audio devices", True, "no sound cards (/proc/asound/pcm is empty or missing): only "
                                                  "synthetic: inputs and the null output work")
    # "00-00: ALC892 Analog : ALC892 Analog : playback 1 : capture 1" → "hw:0,0 ALC892 Analog (playback, capture)"
    lines = []
    for entry in pcm:
        ident, _, rest = entry.partition(":")
        parts = [p.strip() for p in rest.split(":")]
        card, _, device = ident.partition("-")
        kinds = [p.split()[0] for p in parts[2:] if p]
        lines.append(f"hw:{int(card)},{int(device)}  {parts[0]} ({', '.join(kinds)})")
    return CheckResult("audio devices", True, "\n".join(lines))


# ---------------------------------------------------------------------------------------------------------------
# Cameras
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraMeasurement:
    """What a camera did during the measuring window.

    Attributes:
        source: the spec string from the config.
        error: why it could not deliver (empty when it did).
        frames: frames received in the window.
        fps: measured frame rate (0 when fewer than two frames).
        width, height: size of the frames delivered.
        snapshot: path of the PNG saved, or empty.
    """

    source: str
    error: str = ""
    frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    snapshot: str = ""


async def measure_camera(cfg: CameraConfig, name: str, *, seconds: float = 2.0, open_timeout: float = 5.0,
                         snapshot_dir: str | Path | None = None) -> CameraMeasurement:
    """Open ``cfg.source`` the way the kiosk does, count frames for ``seconds`` and save a snapshot.

    The window is at least four frame periods, so a 5 fps document camera is measured fairly.
    """
    from kiosk.devices.cameras import CameraError
    from kiosk.video.sources import open_video_source

    try:
        source = open_video_source(cfg, name=name)
    except CameraError as err:  # a malformed spec
        return CameraMeasurement(cfg.source, error=str(err))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + open_timeout
        while source.status != "ok":
            if source.status.startswith("unavailable"):
                return CameraMeasurement(cfg.source, error=source.status.removeprefix("unavailable: "))
            if loop.time() > deadline:
                return CameraMeasurement(cfg.source, error=f"no frame within {open_timeout:g} s of opening it")
            await asyncio.sleep(0.01)
        track = source.track()
        window = max(seconds, 4.0 / cfg.fps)
        stamps: list[float] = []
        width = height = 0
        end = loop.time() + window
        try:
            while loop.time() < end:
                frame = await asyncio.wait_for(track.recv(), max(0.1, end - loop.time() + 1.0))
                if source.status != "ok":  # the placeholder, not the camera
                    return CameraMeasurement(cfg.source, error=source.status.removeprefix("unavailable: "),
                                             frames=len(stamps))
                stamps.append(loop.time())
                width, height = getattr(frame, "width", 0), getattr(frame, "height", 0)
        except TimeoutError:
            pass
        finally:
            track.stop()
        fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
        snapshot = ""
        picture = source.latest_frame()
        if snapshot_dir is not None and picture is not None:
            snapshot = await asyncio.to_thread(_save_png, picture, Path(snapshot_dir) / f"{name}.png")
        return CameraMeasurement(cfg.source, frames=len(stamps), fps=fps, width=width, height=height,
                                 snapshot=snapshot)
    finally:
        await source.aclose()


def _save_png(rgb: Any, path: Path) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return str(path)


def camera_result(label: str, key: str, cfg: CameraConfig, m: CameraMeasurement) -> CheckResult:
    """Judge a measurement against ``cfg``: the size must match exactly, the rate reach 85 % of ``fps``."""
    want_w, want_h = (cfg.height, cfg.width) if cfg.rotation in (90, 270) else (cfg.width, cfg.height)
    src = cfg.source
    if m.error:
        err = m.error
        if "no such device" in err:
            advice = (f"camera {src} is not there: plug it in (directly, not through a hub), then put its "
                      f"/dev/v4l/by-id/… path from 'video devices' into [{key}] source")
        elif "no such file" in err:
            advice = f"the video file of [{key}] source = \"{src}\" does not exist: fix the path"
        elif "busy" in err or "permission" in err:
            advice = (f"{src} cannot be opened: stop whatever uses it (the kiosk service: `systemctl --user stop "
                      "kiosk-counter`), and make sure this user is in group video (`sudo usermod -aG video $USER`, "
                      "then log in again)")
        elif "expected" in err or "unknown synthetic" in err:
            advice = f"fix [{key}] source: {err.split(': ', 1)[-1]}"
        elif "no frame within" in err:
            advice = (f"{src} opened but sends nothing: replug it, try another USB port or cable, and look at "
                      "`dmesg | tail` for USB errors")
        else:
            advice = (f"{src} stopped delivering frames: replug it, try another USB port or cable, and look at "
                      "`dmesg | tail`")
        return CheckResult(label, False, f"{src}: {err}", advice)
    detail = f"{src}: {m.width}x{m.height} at {m.fps:.1f} fps (configured {want_w}x{want_h} at {cfg.fps:g})"
    if m.snapshot:
        detail += f"\nsnapshot: {m.snapshot}"
    if (m.width, m.height) != (want_w, want_h):
        return CheckResult(label, False, detail,
                           f"the camera does not deliver {want_w}x{want_h}: set [{key}] width and height to a size "
                           f"it supports (`v4l2-ctl --list-formats-ext -d {src}`)")
    if m.fps < FPS_TOLERANCE * cfg.fps:
        return CheckResult(label, False, detail,
                           f"the camera is slower than [{key}] fps = {cfg.fps:g}: give it more light (auto-exposure "
                           "lowers the rate in dim light), plug it into its own USB port, or lower fps")
    return CheckResult(label, True, detail)


async def check_camera(cfg: CameraConfig, label: str, key: str, *, seconds: float = 2.0,
                       snapshot_dir: str | Path | None = None) -> CheckResult:
    """Measure one camera and judge it."""
    return camera_result(label, key, cfg, await measure_camera(cfg, key, seconds=seconds,
                                                               snapshot_dir=snapshot_dir))


# ---------------------------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------------------------
def microphone_result(name: str, kind: str, level: float, freq: float | None, samples: int,
                      seconds: float) -> CheckResult:
    """Judge what a microphone delivered in ``seconds``: its level (0..1 of full scale) and strongest frequency."""
    detail = f"{name}: level {level:.4f} of full scale"
    if freq:
        detail += f", strongest {freq:.0f} Hz"
    if kind == "silence":
        return CheckResult("microphone", True, f"{name}: sends silence by design (no microphone)")
    if level >= MIC_MIN_LEVEL or kind == "tone":
        return CheckResult("microphone", True, detail)
    if samples == 0:
        return CheckResult("microphone", False, f"{name}: no audio arrived in {seconds:g} s",
                           "the microphone opened but sends nothing: replug it and check "
                           "`arecord -D DEVICE -d 2 /tmp/t.wav`")
    return CheckResult("microphone", False, detail + " (silent)",
                       "the microphone hears nothing: unmute it and raise its capture level (`alsamixer`, F4), "
                       "check the cable, and speak while the doctor runs")


async def check_audio(cfg: AudioConfig, *, seconds: float = 0.5) -> list[CheckResult]:
    """The microphone opens and hears something; the speaker opens."""
    from kiosk.devices.audio import AudioError, open_audio_sink, open_audio_source, parse_audio_input

    results: list[CheckResult] = []
    try:
        spec = parse_audio_input(cfg.input)
        source = open_audio_source(cfg)
    except AudioError as err:
        results.append(CheckResult("microphone", False, str(err),
                                   "fix [audio] input: synthetic:tone, synthetic:silence or an ALSA device such as "
                                   "alsa:default or plughw:CARD=Device,DEV=0 (`arecord -L` lists them)"))
    else:
        if source.status != "ok":
            source.close()
            results.append(CheckResult(
                "microphone", False, source.status,
                f"the microphone {spec.device!r} cannot be opened: check it is plugged in, pick a name from "
                "'audio devices' or `arecord -L` for [audio] input, and make sure this user is in group audio"))
        else:
            sink = open_audio_sink("null")
            task = asyncio.get_running_loop().create_task(sink.consume(source.track()))
            deadline = time.monotonic() + seconds + 2.0
            try:
                while sink.received_samples < seconds * sink.sample_rate and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                level = sink.level(seconds)
                freq = sink.dominant_frequency(seconds)
            finally:
                sink.close()
                source.close()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            results.append(microphone_result(cfg.input, spec.kind, level, freq, sink.received_samples, seconds))
    try:
        sink = open_audio_sink(cfg.output)
    except AudioError as err:
        results.append(CheckResult("speaker", False, str(err),
                                   "fix [audio] output: null or an ALSA device such as alsa:default "
                                   "(`aplay -L` lists them)"))
        return results
    try:
        if sink.status != "ok":
            results.append(CheckResult("speaker", False, sink.status,
                                       f"the speaker {cfg.output!r} cannot be opened: check it is plugged in and "
                                       "pick a name from 'audio devices' or `aplay -L` for [audio] output"))
        elif cfg.output == "null":
            results.append(CheckResult("speaker", True, "null: call audio is discarded (no speaker configured)"))
        else:
            results.append(CheckResult("speaker", True, f"{cfg.output}: opened"))
    finally:
        sink.close()
    return results


# ---------------------------------------------------------------------------------------------------------------
# Lamp
# ---------------------------------------------------------------------------------------------------------------
async def check_lamp(cfg: LampConfig, *, dwell: float = 0.5) -> CheckResult:
    """Switch each configured channel on and off once with the lamp agent's channel test and judge the report."""
    from kiosk.lamp_agent import run_check

    out = io.StringIO()
    code = await run_check(cfg, dwell=dwell, out=out)
    lines = [ln.strip() for ln in out.getvalue().splitlines() if ln.strip()]
    detail = "\n".join(lines)
    if code == 0:
        return CheckResult("lamp", True, detail)
    text = out.getvalue()
    port = cfg.port
    if "cannot open lamp port" in text:
        advice = (f"the lamp port {port} cannot be opened: plug in the USB relay board, pick its /dev/serial/by-id/… "
                  "name from 'serial ports' (or hwgrep://1a86:7523) for [lamp] port, and make sure this user is in "
                  "group dialout")
    elif "did not answer PING" in text:
        advice = (f"something is on {port} but it does not answer like our lamp: wrong port (another serial "
                  "device?), wrong [lamp] baudrate, or the lamp firmware is not flashed")
    elif "refused" in text:
        advice = "the lamp refuses a channel: it has fewer channels than [lamp.channels] uses; fix the channel numbers"
    elif "did not acknowledge" in text:
        advice = f"the lamp on {port} stopped answering: check the USB cable and the lamp's power supply"
    else:
        advice = f"the lamp on {port} failed: check the USB cable, then run `kiosk lamp --test` for details"
    return CheckResult("lamp", False, detail, advice)


def lamp_departments_result(cfg: LampConfig, welcome: Mapping[str, Any], role: str) -> CheckResult:
    """``[lamp.channels]`` names exactly the departments the relay sends this terminal."""
    from kiosk.lamp_agent import LampBoard

    board = LampBoard(cfg)
    board.on_message(dict(welcome))
    problems = board.welcome_problems()
    if problems:
        return CheckResult("lamp departments", False, "\n".join(problems),
                           "make [lamp.channels] and this terminal's departments in relay.toml list the same "
                           "department ids")
    return CheckResult("lamp departments", True,
                       ", ".join(f"{d}→{ch}" for d, ch in sorted(cfg.channels.items(), key=lambda kv: kv[1]))
                       or "no department channels")


# ---------------------------------------------------------------------------------------------------------------
# Relay
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class RelayProbe:
    """Raw findings of one visit to the relay (filled in by :func:`probe_relay`, judged by ``*_result``).

    Attributes:
        tcp_error: the TCP connection failed (refused, timeout, unknown host).
        tls_error: the TLS handshake failed (certificate not trusted, expired, wrong name, not TLS).
        ws_error: something answered, but no websocket handshake (not the relay, or a proxy in the way).
        auth_error: the relay refused the token (its ``unauthorized`` message, or close code 4401).
        welcome: the ``welcome`` message.
        rtts: seconds per ping/pong round trip.
        offsets: relay clock minus local clock, per ping (midpoint of the round trip).
        cert_subject, cert_not_after, tls_version: the relay's certificate (wss only).
    """

    url: str
    host: str = ""
    port: int = 0
    secure: bool = False
    tcp_error: str = ""
    tls_error: str = ""
    ws_error: str = ""
    auth_error: str = ""
    welcome: dict[str, Any] | None = None
    rtts: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)
    cert_subject: str = ""
    cert_not_after: float = 0.0
    tls_version: str = ""
    connect_s: float = 0.0


def _ssl_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file or None)


async def probe_relay(url: str, token: str, *, ca_file: str = "", timeout: float = 5.0, pings: int = 3,
                      now: Callable[[], float] = time.time) -> RelayProbe:
    """Connect, authenticate with ``hello``, and time ``pings`` ping/pong round trips (docs/protocol.md)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

    from common import protocol

    parts = urlsplit(url)
    probe = RelayProbe(url, secure=parts.scheme == "wss")
    try:
        probe.host = parts.hostname or ""
        probe.port = parts.port or (443 if probe.secure else 80)
    except ValueError as err:
        probe.tcp_error = f"bad URL: {err}"
        return probe
    started = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(probe.host, probe.port), timeout)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except socket.gaierror as err:
        probe.tcp_error = f"cannot resolve host name '{probe.host}': {err.strerror}"
        return probe
    except ConnectionRefusedError:
        probe.tcp_error = "connection refused"
        return probe
    except TimeoutError:
        probe.tcp_error = f"no answer within {timeout:g} s"
        return probe
    except OSError as err:
        probe.tcp_error = err.strerror or str(err)
        return probe
    ctx = _ssl_context(ca_file) if probe.secure else None
    try:
        async with connect(url, ssl=ctx, open_timeout=timeout, ping_interval=None, close_timeout=1,
                           max_size=protocol.MAX_MESSAGE_BYTES * 4) as ws:
            probe.connect_s = time.perf_counter() - started
            ssl_object = ws.transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                _read_cert(probe, ssl_object)
            await ws.send(protocol.encode({"type": "hello", "token": token, "protocol": protocol.PROTOCOL_VERSION,
                                           "client": "kiosk doctor"}))
            t0 = now()
            p0 = time.perf_counter()
            first = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            p1 = time.perf_counter()
            if first.get("type") == "error":
                probe.auth_error = str(first.get("message") or first.get("code"))
                return probe
            if first.get("type") != "welcome":
                probe.ws_error = f"expected 'welcome' after hello, got '{first.get('type')}'"
                return probe
            probe.welcome = first
            if isinstance(first.get("time"), int | float):
                probe.offsets.append(first["time"] - (t0 + (p1 - p0) / 2))
            for i in range(pings):
                ping_id = f"doctor-{i}"
                t0 = now()
                p0 = time.perf_counter()
                await ws.send(protocol.encode({"type": "ping", "id": ping_id}))
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                    if msg.get("type") == "pong" and msg.get("id") == ping_id:
                        break
                p1 = time.perf_counter()
                probe.rtts.append(p1 - p0)
                if isinstance(msg.get("time"), int | float):
                    probe.offsets.append(msg["time"] - (t0 + (p1 - p0) / 2))
    except ssl.SSLCertVerificationError as err:
        probe.tls_error = err.verify_message or str(err)
    except ssl.SSLError as err:
        probe.tls_error = err.reason or str(err)
    except ConnectionClosed as err:
        code = err.rcvd.code if err.rcvd else None
        reason = err.rcvd.reason if err.rcvd else ""
        if code == protocol.CLOSE_UNAUTHORIZED:
            probe.auth_error = probe.auth_error or reason or "token rejected"
        elif probe.welcome is None:
            probe.ws_error = f"the relay closed the connection ({code} {reason})".strip()
        elif code == protocol.CLOSE_REPLACED:
            pass  # a running kiosk with this token took its connection back: what we measured stands
        else:
            probe.ws_error = f"the relay closed the connection during the check ({code} {reason})".strip()
    except TimeoutError:
        if probe.welcome is None and not probe.connect_s:
            probe.ws_error = f"no websocket handshake within {timeout:g} s"
        elif probe.welcome is None:
            probe.ws_error = f"no answer to hello within {timeout:g} s"
        else:
            probe.ws_error = f"no pong within {timeout:g} s"
    except (InvalidHandshake, InvalidURI) as err:
        probe.ws_error = str(err)
    except OSError as err:
        text = err.strerror or str(err) or type(err).__name__
        if probe.secure and not probe.connect_s:
            # A plain-HTTP server answers a TLS ClientHello with an error page and hangs up: a reset.
            probe.tls_error = f"TLS handshake failed ({text}): the server may not speak TLS on this port"
        else:
            probe.ws_error = text
    except ValueError as err:  # JSON that is not the relay's
        probe.ws_error = f"not a relay answer: {err}"
    return probe


def _read_cert(probe: RelayProbe, ssl_object: Any) -> None:
    probe.tls_version = ssl_object.version() or ""
    cert = ssl_object.getpeercert() or {}
    subject = dict(item[0] for item in cert.get("subject", ()) if item)
    probe.cert_subject = str(subject.get("commonName", ""))
    if cert.get("notAfter"):
        probe.cert_not_after = ssl.cert_time_to_seconds(cert["notAfter"])


def reachable_result(p: RelayProbe) -> CheckResult:
    """TCP and the websocket handshake."""
    where = f"{p.host}:{p.port}"
    if p.tcp_error:
        if "resolve" in p.tcp_error:
            advice = (f"cannot find {p.host}: check the host name in [relay] url and this PC's DNS "
                      "(`resolvectl query HOST`)")
        elif "bad URL" in p.tcp_error:
            advice = "fix [relay] url: ws://HOST:PORT or wss://HOST:PORT"
        elif "refused" in p.tcp_error:
            advice = (f"relay unreachable at {p.url}: is relay-server running on {p.host}? "
                      f"(`systemctl status relay-server`) check firewall port {p.port}")
        else:
            advice = (f"no answer from {where}: check the network cable or VPN, and that the firewall lets "
                      f"TCP port {p.port} through")
        return CheckResult("relay reachable", False, f"{p.url}: {p.tcp_error}", advice)
    if p.ws_error and p.welcome is None and not p.tls_error and not p.auth_error:
        return CheckResult("relay reachable", False, f"{p.url}: TCP {where} open, but {p.ws_error}",
                           f"something answers on {where} but not like the relay: check the port in [relay] url "
                           "(relay.toml [server] port, 8765 by default), ws:// vs wss://, and any proxy in between")
    return CheckResult("relay reachable", True, f"{p.url}: TCP {where} open"
                       + (f", websocket in {p.connect_s * 1000:.0f} ms" if p.connect_s else ""))


def tls_result(p: RelayProbe, now: float | None = None) -> CheckResult:
    """For ``wss://``: the certificate is trusted, matches the name, and is not about to expire."""
    name = "relay TLS"
    if p.tcp_error:
        return _skip(name, "relay unreachable")
    if not p.secure:
        return CheckResult(name, True, "not used (ws://): fine inside a closed network; use wss:// across the "
                                       "internet")
    if p.tls_error:
        err = p.tls_error
        if "unable to get local issuer" in err or "self-signed" in err or "self signed" in err:
            advice = ("the relay's certificate is not trusted here: set [relay] ca_file to the CA certificate "
                      "that signed it (for a self-signed certificate, the certificate file itself)")
        elif "Hostname mismatch" in err or "hostname" in err.lower():
            advice = (f"the certificate is not for '{p.host}': use the name on the certificate in [relay] url, or "
                      "issue a certificate for this name")
        elif "expired" in err:
            advice = ("the relay's certificate has expired: renew it ([server] tls_cert) and restart relay-server; "
                      "also check this PC's clock (`timedatectl`)")
        elif "WRONG_VERSION_NUMBER" in err.upper() or "may not speak TLS" in err:
            advice = ("the relay does not speak TLS on this port: use ws:// in [relay] url, or give the relay "
                      "[server] tls_cert and tls_key")
        else:
            advice = "TLS handshake failed: check [relay] ca_file and the relay's certificate"
        return CheckResult(name, False, f"{p.url}: {err}", advice)
    if p.ws_error and not p.cert_subject:
        return _skip(name, "no TLS connection was made")
    detail = f"{p.tls_version} certificate for '{p.cert_subject}'"
    if p.cert_not_after:
        days = (p.cert_not_after - (time.time() if now is None else now)) / 86400
        until = datetime.fromtimestamp(p.cert_not_after, UTC).strftime("%Y-%m-%d")
        detail += f", valid until {until} ({days:.0f} days)"
        if days < CERT_MIN_DAYS:
            return CheckResult(name, False, detail,
                               f"the relay's certificate expires in {days:.0f} days: renew it ([server] tls_cert, "
                               "e.g. `certbot renew`) and restart relay-server")
    return CheckResult(name, True, detail)


def token_result(p: RelayProbe, config_path: str | Path = "", role: str = "") -> CheckResult:
    """``hello`` is answered with ``welcome``; ``unauthorized`` means a wrong token."""
    name = "relay token"
    if p.tcp_error or p.tls_error or (p.ws_error and p.welcome is None and not p.auth_error):
        return _skip(name, "no connection to the relay")
    if p.auth_error:
        where = f" of {config_path}" if config_path else ""
        return CheckResult(
            name, False, f"token rejected by the relay: {p.auth_error}",
            "token rejected: run `relay-server token TERMINAL_ID` on the relay (TERMINAL_ID: the id of this "
            f"{role or 'terminal'}'s [[terminal]] entry in relay.toml) and paste its token line into [relay]{where}, "
            "its token_hash line into that [[terminal]], then restart relay-server")
    assert p.welcome is not None
    w = p.welcome
    depts = ", ".join(str(d.get("id")) for d in w.get("departments", []) if isinstance(d, dict))
    label = f" \"{w['name']}\"" if w.get("name") else ""
    return CheckResult(name, True, f"accepted as {w.get('terminal')}{label} ({w.get('role')}); "
                                   f"departments: {depts or 'none'}")


def role_result(p: RelayProbe, role: str) -> CheckResult:
    """The relay knows this token as a terminal of the role the config was checked as."""
    name = "terminal role"
    if p.welcome is None:
        return _skip(name, "not logged in to the relay")
    actual = p.welcome.get("role")
    if actual != role:
        return CheckResult(name, False, f"the config was checked as {role}, but the relay knows "
                                        f"{p.welcome.get('terminal')} as {actual}",
                           f"use the {actual} terminal's config on this PC, or the token of a {role} terminal "
                           f"(or pass --role {actual} if the guess was wrong)")
    return CheckResult(name, True, f"{role}, as in relay.toml")


def rtt_result(p: RelayProbe) -> CheckResult:
    """The median ping/pong round trip is below :data:`RTT_LIMIT_S`."""
    name = "relay round trip"
    if p.welcome is None:
        return _skip(name, "not logged in to the relay")
    if not p.rtts:
        return CheckResult(name, False, f"no pong from the relay ({p.ws_error or 'connection closed'})",
                           "the relay accepted the token but does not answer pings: restart relay-server and "
                           "check its log (`journalctl -u relay-server`)")
    median = statistics.median(p.rtts)
    detail = (f"{median * 1000:.1f} ms median of {len(p.rtts)} "
              f"(min {min(p.rtts) * 1000:.1f}, max {max(p.rtts) * 1000:.1f})")
    if median > RTT_LIMIT_S:
        return CheckResult(name, False, detail,
                           f"round trips over {RTT_LIMIT_S * 1000:.0f} ms make calls lag: look for a congested or "
                           f"mobile link (`mtr {p.host}`) and check the relay host's load")
    return CheckResult(name, True, detail)


def clock_result(p: RelayProbe) -> CheckResult:
    """This PC's clock is within :data:`CLOCK_LIMIT_S` of the relay's (``welcome.time``, ``pong.time``)."""
    name = "clock offset"
    if p.welcome is None:
        return _skip(name, "not logged in to the relay")
    if not p.offsets:
        return CheckResult(name, False, "the relay sent no time", "update relay-server: it should send its time in "
                                                                  "welcome and pong")
    # The sample with the shortest round trip has the smallest error; welcome (index 0) has no rtt of its own.
    best = p.offsets[1 + p.rtts.index(min(p.rtts))] if p.rtts and len(p.offsets) > len(p.rtts) else p.offsets[-1]
    side = "behind" if best > 0 else "ahead of"
    detail = f"this PC is {abs(best):.3f} s {side} the relay"
    if abs(best) > CLOCK_LIMIT_S:
        return CheckResult(name, False, detail,
                           "turn on time sync on this PC (`sudo timedatectl set-ntp true`, then `timedatectl` shows "
                           "'System clock synchronized: yes'), or fix the relay's clock if that one is wrong")
    return CheckResult(name, True, detail)


# ---------------------------------------------------------------------------------------------------------------
# ICE servers (STUN binding request, RFC 5389 section 6)
# ---------------------------------------------------------------------------------------------------------------
def stun_binding_request(transaction_id: bytes) -> bytes:
    """A STUN Binding request (RFC 5389 §6): type 0x0001, no attributes, the magic cookie, 12-byte id."""
    if len(transaction_id) != 12:
        raise ValueError(f"a STUN transaction id has 12 bytes, got {len(transaction_id)}")
    return struct.pack("!HHI12s", 0x0001, 0, STUN_MAGIC, transaction_id)


def parse_stun_response(data: bytes, transaction_id: bytes) -> str | None:
    """The mapped address (``ip:port``) from a Binding success response, ``""`` if it has none.

    Returns None for datagrams that are not a response to ``transaction_id`` (stray packets are ignored).

    Raises:
        ValueError: a Binding error response (0x0111), with its error code (RFC 5389 §15.6).
    """
    if len(data) < 20:
        return None
    kind, length, magic, tid = struct.unpack("!HHI12s", data[:20])
    if magic != STUN_MAGIC or tid != transaction_id or len(data) < 20 + length:
        return None
    attrs: dict[int, bytes] = {}
    pos = 20
    while pos + 4 <= 20 + length:
        atype, alen = struct.unpack("!HH", data[pos:pos + 4])
        attrs.setdefault(atype, data[pos + 4:pos + 4 + alen])
        pos += 4 + alen + (-alen % 4)
    if kind == 0x0111:
        err = attrs.get(0x0009, b"")
        code = (err[2] & 0x07) * 100 + err[3] if len(err) >= 4 else 0
        raise ValueError(f"STUN error {code} {err[4:].decode('utf-8', 'replace')}".strip())
    if kind != 0x0101:
        return None
    for atype, xor in ((0x0020, True), (0x8020, True), (0x0001, False)):
        value = attrs.get(atype)
        if value is None or len(value) < 8:
            continue
        family, port = value[1], struct.unpack("!H", value[2:4])[0]
        raw = value[4:8] if family == 0x01 else value[4:20]
        if xor:
            port ^= STUN_MAGIC >> 16
            mask = struct.pack("!I", STUN_MAGIC) + transaction_id
            raw = bytes(b ^ mask[i] for i, b in enumerate(raw))
        ip = socket.inet_ntop(socket.AF_INET if family == 0x01 else socket.AF_INET6, raw)
        return f"{ip}:{port}" if family == 0x01 else f"[{ip}]:{port}"
    return ""


@dataclass(frozen=True)
class IceProbe:
    """The outcome of contacting one STUN/TURN URL: ``mapped`` is how the server sees this PC (UDP only)."""

    url: str
    host: str
    port: int
    transport: str  # udp, tcp or tls
    ok: bool
    rtt: float = 0.0
    mapped: str = ""
    error: str = ""


def parse_ice_url(url: str) -> tuple[str, int, str]:
    """``stun:host[:port]``, ``turn:host[:port][?transport=udp|tcp]``, ``stuns:``/``turns:`` → (host, port, transport).

    Raises:
        ValueError: not a stun:/stuns:/turn:/turns: URL.
    """
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in ("stun", "stuns", "turn", "turns"):
        raise ValueError(f"'{url}' is not a stun:, stuns:, turn: or turns: URL")
    rest, _, query = rest.partition("?")
    transport = parse_qs(query).get("transport", ["udp"])[0].lower()
    secure = scheme.endswith("s")
    if secure:
        transport = "tls"
    elif transport not in ("udp", "tcp"):
        raise ValueError(f"'{url}': transport must be udp or tcp")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = rest.partition(":")
    if not host:
        raise ValueError(f"'{url}' has no host")
    port = int(port_text) if port_text else (5349 if secure else 3478)
    return host, port, transport


async def stun_ping(url: str, *, timeout: float = 1.5, ca_file: str = "") -> IceProbe:
    """Contact one ICE server: a STUN Binding request over UDP, or a TCP (TLS) connection for tcp/tls URLs."""
    try:
        host, port, transport = parse_ice_url(url)
    except ValueError as err:
        return IceProbe(url, "", 0, "", False, error=str(err))
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    if transport != "udp":
        ctx = _ssl_context(ca_file) if transport == "tls" else None
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None), timeout)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        except TimeoutError:
            return IceProbe(url, host, port, transport, False, error=f"no answer within {timeout:g} s")
        except (OSError, ssl.SSLError) as err:
            return IceProbe(url, host, port, transport, False, error=str(err))
        return IceProbe(url, host, port, transport, True, rtt=time.perf_counter() - started)
    tid = secrets.token_bytes(12)
    answer: asyncio.Future[bytes] = loop.create_future()

    class _Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not answer.done():
                with contextlib.suppress(ValueError):
                    if parse_stun_response(data, tid) is None:
                        return
                answer.set_result(data)

        def error_received(self, exc: Exception) -> None:
            if not answer.done():
                answer.set_exception(exc)

    try:
        transport_obj, _ = await loop.create_datagram_endpoint(_Client, remote_addr=(host, port))
    except OSError as err:
        return IceProbe(url, host, port, "udp", False, error=err.strerror or str(err))
    try:
        request = stun_binding_request(tid)
        # UDP may lose a packet: resend a few times within the timeout (RFC 5389 §7.2.1, shortened).
        deadline = loop.time() + timeout
        interval = timeout / 4
        while True:
            transport_obj.sendto(request)
            try:
                data = await asyncio.wait_for(asyncio.shield(answer), min(interval, deadline - loop.time()))
                break
            except TimeoutError:
                if loop.time() >= deadline - 0.001:
                    return IceProbe(url, host, port, "udp", False, error=f"no answer within {timeout:g} s")
                interval *= 2
            except OSError as err:  # ICMP port unreachable
                return IceProbe(url, host, port, "udp", False, error=err.strerror or str(err))
        try:
            mapped = parse_stun_response(data, tid) or ""
        except ValueError as err:
            return IceProbe(url, host, port, "udp", False, error=str(err))
        return IceProbe(url, host, port, "udp", True, rtt=time.perf_counter() - started, mapped=mapped)
    finally:
        transport_obj.close()


def ice_server_result(probe: IceProbe) -> CheckResult:
    """Judge one ICE server probe."""
    name = f"ICE server {probe.url}"
    if probe.ok:
        detail = f"answered in {probe.rtt * 1000:.0f} ms over {probe.transport.upper()}"
        if probe.mapped:
            detail += f"; it sees this PC as {probe.mapped}"
        return CheckResult(name, True, detail)
    if not probe.host:
        return CheckResult(name, False, probe.error,
                           "fix this entry of relay.toml [ice] servers or turn_urls (stun:HOST:PORT or "
                           "turn:HOST:PORT?transport=udp)")
    if probe.transport == "udp":
        advice = (f"{probe.host} UDP port {probe.port} does not answer: is the STUN/TURN server (coturn) running, "
                  "and does the firewall let UDP through? On networks that block UDP, add a turns: URL on TCP 443 "
                  "to [ice] turn_urls")
    else:
        advice = (f"cannot connect to {probe.host} {probe.transport.upper()} port {probe.port}: check that coturn "
                  "listens there and the firewall allows it")
    return CheckResult(name, False, f"{probe.transport.upper()} {probe.host}:{probe.port}: {probe.error}", advice)


async def check_ice_servers(servers: Iterable[Mapping[str, Any]], *, timeout: float = 1.5) -> list[CheckResult]:
    """Probe every URL of ``welcome.ice_servers``, all at once; contacts nothing else."""
    urls: list[str] = []
    for entry in servers:
        raw = entry.get("urls")
        urls += [raw] if isinstance(raw, str) else [u for u in raw or () if isinstance(u, str)]
    if not urls:
        return [CheckResult("ICE servers", True, "none configured: media uses host candidates only, so both ends "
                                                 "must reach each other directly (one network or VPN)")]
    probes = await asyncio.gather(*(stun_ping(u, timeout=timeout) for u in urls))
    return [ice_server_result(p) for p in probes]


# ---------------------------------------------------------------------------------------------------------------
# The whole checklist
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DoctorOptions:
    """What ``kiosk doctor`` was asked to do (its command line)."""

    config: str
    role: str | None = None
    url: str | None = None
    snapshot_dir: str | None = None
    lamp_port: str | None = None
    camera_seconds: float = 2.0
    lamp_dwell: float = 0.5
    timeout: float = 5.0
    skip: tuple[str, ...] = ()


async def run_doctor(opts: DoctorOptions) -> tuple[list[CheckResult], str]:
    """Run every check that applies; return the results in checklist order and the role used."""
    config_result, cfg, role = check_config(opts.config, opts.role)
    results = [config_result]
    if "devices" not in opts.skip:
        results += [video_devices_result(list_video_devices()), serial_ports_result(list_serial_ports()),
                    audio_devices_result()]
    if cfg is None:
        return results, role
    if opts.url:
        cfg = replace(cfg, relay=replace(cfg.relay, url=opts.url))
    lamp = cfg.lamp
    if lamp is not None and opts.lamp_port:
        lamp = replace(lamp, port=opts.lamp_port)

    async def media() -> list[CheckResult]:
        if cfg.media is None:
            return []
        jobs: list[Awaitable[CheckResult | list[CheckResult]]] = []
        if "camera" not in opts.skip:
            for label, key, cam in (("camera", "camera", cfg.media.camera),
                                    ("document camera", "document_camera", cfg.media.document_camera)):
                if cam is not None:
                    jobs.append(check_camera(cam, label, key, seconds=opts.camera_seconds,
                                             snapshot_dir=opts.snapshot_dir))
        if "audio" not in opts.skip:
            jobs.append(check_audio(cfg.media.audio))
        out = [check_ice_addresses(cfg.media.network.ice_addresses)]
        for r in await asyncio.gather(*jobs):
            out += r if isinstance(r, list) else [r]
        return out

    async def lamp_check() -> list[CheckResult]:
        if lamp is None or "lamp" in opts.skip:
            return []
        return [await check_lamp(lamp, dwell=opts.lamp_dwell)]

    async def relay() -> list[CheckResult]:
        if "relay" in opts.skip:
            return []
        probe = await probe_relay(cfg.relay.url, cfg.relay.token, ca_file=cfg.relay.ca_file, timeout=opts.timeout)
        out = [reachable_result(probe), tls_result(probe), token_result(probe, opts.config, role),
               role_result(probe, role), rtt_result(probe), clock_result(probe)]
        if probe.welcome is not None and lamp is not None:
            out.append(lamp_departments_result(lamp, probe.welcome, role))
        if probe.welcome is not None and cfg.media is not None and "ice" not in opts.skip:
            out += await check_ice_servers(probe.welcome.get("ice_servers") or [], timeout=min(opts.timeout, 1.5))
        return out

    for group in await asyncio.gather(media(), lamp_check(), relay()):
        results += group
    return results, role


def main(argv: list[str]) -> int:
    """``kiosk doctor``: run the checklist, print it (or JSON), exit 1 if anything failed."""
    ap = argparse.ArgumentParser(
        prog="kiosk doctor",
        description="Check a terminal on site: config, cameras, audio, lamp, serial ports, relay, network. "
                    "Prints ✓/✗ per check with advice; exit status 1 if anything failed.")
    ap.add_argument("--config", required=True, help="the terminal's config (TOML), e.g. /etc/kiosk/counter.toml")
    ap.add_argument("--role", choices=ROLES, help="counter, office or lamp (default: guessed from the file)")
    ap.add_argument("--url", help="relay URL overriding [relay] url, e.g. wss://relay.example.jp:8765")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--snapshot-dir", metavar="DIR",
                    help="where to save camera snapshots (default: kiosk-doctor in the temp folder)")
    ap.add_argument("--lamp-port", metavar="URL", help="serial port or pyserial URL overriding [lamp] port")
    ap.add_argument("--camera-seconds", type=float, default=2.0, metavar="S",
                    help="how long to measure each camera's frame rate (default 2)")
    ap.add_argument("--lamp-dwell", type=float, default=0.5, metavar="S",
                    help="how long the lamp test lights each channel (default 0.5)")
    ap.add_argument("--timeout", type=float, default=5.0, metavar="S", help="network timeout (default 5)")
    ap.add_argument("--skip", action="append", default=[], choices=CHECK_NAMES[1:],
                    help="leave out a group of checks (repeatable), e.g. --skip lamp during office hours")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    opts = DoctorOptions(
        config=args.config, role=args.role, url=args.url,
        snapshot_dir=args.snapshot_dir or str(Path(tempfile.gettempdir()) / "kiosk-doctor"),
        lamp_port=args.lamp_port, camera_seconds=args.camera_seconds, lamp_dwell=args.lamp_dwell,
        timeout=args.timeout, skip=tuple(args.skip))
    results, role = asyncio.run(run_doctor(opts))
    failed = any(r.failed for r in results)
    if args.json:
        print(json.dumps({"config": args.config, "role": role, "ok": not failed,
                          "checks": [asdict(r) for r in results]}, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(format_report(results, f"kiosk doctor: {args.config} ({role})"))
    sys.stdout.flush()
    return 1 if failed else 0
