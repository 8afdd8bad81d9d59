"""Terminal configuration (counter kiosk, staff station, lamp agent): TOML → frozen dataclasses.

Every key is documented in ``docs/configuration.md``. Unknown keys are errors (a typo must not be
silently ignored) and every error names the file, the line and the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common.logs import event
from common.tomlconf import ConfigError, Section, load, reporting_stray_keys

__all__ = [
    "AudioConfig",
    "CameraConfig",
    "ConfigError",
    "LampConfig",
    "MediaConfig",
    "NetworkConfig",
    "PrinterConfig",
    "RelayLink",
    "TerminalConfig",
    "UiConfig",
    "load_terminal_config",
]

log = logging.getLogger(__name__)

LAMP_DRIVERS = ("lcus", "ascii", "none")
ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class RelayLink:
    url: str
    token: str
    ca_file: str = ""


@dataclass(frozen=True)
class UiConfig:
    language: str = "ja"
    fullscreen: bool = False
    width: int = 1280
    height: int = 800
    screen_width_mm: float = 344.0  # physical width of the screen, for touch target sizes
    idle_timeout: float = 60.0  # seconds without a touch before a non-call screen returns to Start
    result_timeout: float = 20.0  # unanswered/closed/unavailable screens return to Start after this
    thanks_timeout: float = 8.0
    pin: str = ""  # technician menu PIN; empty = menu disabled
    font: str = ""  # path to a CJK font; empty = found automatically
    ring_sound: bool = True
    # counter only: shown when the relay never told this counter a department's phone (it was never reached)
    fallback_phone: str = ""
    fallback_hours: str = ""


@dataclass(frozen=True)
class CameraConfig:
    source: str
    width: int
    height: int
    fps: float
    rotation: int = 0
    adapt: bool = (
        False  # [camera] adapt: lower the resolution while the PC cannot encode it (kiosk.video.adapt)
    )


@dataclass(frozen=True)
class AudioConfig:
    input: str = "synthetic:tone"
    output: str = "null"
    tone_hz: float = 440.0


@dataclass(frozen=True)
class NetworkConfig:
    # Local addresses ICE may use; empty = every interface (aioice's default, minus loopback).
    ice_addresses: tuple[str, ...] = ()
    codec: str = "vp8"
    # Seconds an outage of a call's media may last while the members rebuild it, before the call ends.
    reconnect_window: float = 30.0


@dataclass(frozen=True)
class MediaConfig:
    camera: CameraConfig | None
    document_camera: CameraConfig | None
    audio: AudioConfig
    network: NetworkConfig


@dataclass(frozen=True)
class LampConfig:
    driver: str
    port: str
    channels: dict[str, int]  # department id → 1-based channel
    blink: bool = False
    in_call_channel: int = 0  # 0 = none
    fault_channel: int = 0  # 0 = none
    baudrate: int = 9600
    ack_timeout: float = 0.5


@dataclass(frozen=True)
class PrinterConfig:
    """``[printer]`` of a counter: the CUPS queue that prints the papers staff hand over the screen."""

    queue: str
    timeout: float = 60.0  # seconds a job may take before the resident and staff are told it did not print
    options: tuple[str, ...] = ()  # extra ``lp -o`` options, e.g. "media=A4"


@dataclass(frozen=True)
class TerminalConfig:
    path: Path
    relay: RelayLink
    ui: UiConfig = field(default_factory=UiConfig)
    media: MediaConfig | None = None
    lamp: LampConfig | None = None
    printer: PrinterConfig | None = None  # counter only
    emblems: dict[str, str] = field(
        default_factory=dict
    )  # counter only: office id → emblem image (absolute path)
    papers_folder: str = (
        ""  # office only: the folder of papers staff can hand over the screen (absolute path)
    )

    def with_overrides(self, **changes: Any) -> TerminalConfig:
        return replace(self, **changes)


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _parse_relay(sec: Section) -> RelayLink:
    url = sec.get(
        "url",
        str,
        check=lambda u: None if u.startswith(("ws://", "wss://")) else "must start with ws:// or wss://",
    )
    token = sec.get("token", str, check=lambda t: None if t else "must not be empty")
    ca_file = sec.get("ca_file", str, "")
    sec.done()
    return RelayLink(url, token, ca_file)


def _parse_ui(sec: Section) -> UiConfig:
    d = UiConfig()
    ui = UiConfig(
        language=sec.get(
            "language", str, d.language, check=lambda v: None if v in ("ja", "en") else "must be 'ja' or 'en'"
        ),
        fullscreen=sec.get("fullscreen", bool, d.fullscreen),
        width=sec.get("width", int, d.width, check=_positive),
        height=sec.get("height", int, d.height, check=_positive),
        screen_width_mm=sec.get("screen_width_mm", float, d.screen_width_mm, check=_positive),
        idle_timeout=sec.get("idle_timeout", float, d.idle_timeout, check=_positive),
        result_timeout=sec.get("result_timeout", float, d.result_timeout, check=_positive),
        thanks_timeout=sec.get("thanks_timeout", float, d.thanks_timeout, check=_positive),
        pin=sec.get(
            "pin", str, d.pin, check=lambda p: None if p == "" or p.isdigit() else "must be digits only"
        ),
        font=sec.get("font", str, d.font),
        ring_sound=sec.get("ring_sound", bool, d.ring_sound),
        fallback_phone=sec.get("fallback_phone", str, d.fallback_phone),
        fallback_hours=sec.get("fallback_hours", str, d.fallback_hours),
    )
    sec.done()
    return ui


CAMERA_DEFAULT = ((1280, 720), 30.0)  # [camera] without width, height, fps
DOCUMENT_CAMERA_DEFAULT = ((1920, 1080), 5.0)  # [document_camera] likewise: full HD, a low rate


def _parse_camera(
    sec: Section, default_source: str, size: tuple[int, int], fps: float, *, adaptable: bool
) -> CameraConfig | None:
    if sec.has("enabled") and not sec.get("enabled", bool):
        sec.done(["source", "width", "height", "fps", "rotation", "adapt"])
        return None
    if not adaptable and sec.has("adapt"):
        raise sec.error(
            "adapt",
            "the document camera is never scaled down (staff read small print): lower its fps instead",
        )
    cam = CameraConfig(
        source=sec.get("source", str, default_source),
        width=sec.get("width", int, size[0], check=_positive),
        height=sec.get("height", int, size[1], check=_positive),
        fps=sec.get("fps", float, fps, check=_positive),
        rotation=sec.get(
            "rotation", int, 0, check=lambda r: None if r in ROTATIONS else "must be 0, 90, 180 or 270"
        ),
        adapt=sec.get("adapt", bool, True) if adaptable else False,
    )
    sec.done(["enabled"])
    return cam


def _parse_media(root: Section, role: str) -> MediaConfig:
    camera = _parse_camera(root.section("camera"), "synthetic:camera", *CAMERA_DEFAULT, adaptable=True)
    doc_sec = root.section("document_camera")
    if role == "counter":
        document = _parse_camera(doc_sec, "synthetic:document", *DOCUMENT_CAMERA_DEFAULT, adaptable=False)
    else:
        if doc_sec.data:
            raise doc_sec.error("source", "only a counter terminal has a document camera")
        document = None
    a = root.section("audio")
    audio = AudioConfig(
        input=a.get("input", str, AudioConfig.input),
        output=a.get("output", str, AudioConfig.output),
        tone_hz=a.get("tone_hz", float, AudioConfig.tone_hz, check=_positive),
    )
    a.done()
    n = root.section("network")
    net = NetworkConfig(
        ice_addresses=tuple(n.get_list("ice_addresses", str, [])),
        codec=n.get(
            "codec", str, "vp8", check=lambda c: None if c in ("vp8", "h264") else "must be 'vp8' or 'h264'"
        ),
        reconnect_window=n.get(
            "reconnect_window",
            float,
            NetworkConfig.reconnect_window,
            check=lambda v: None if 5 <= v <= 600 else "must be between 5 and 600 seconds",
        ),
    )
    n.done()
    return MediaConfig(camera, document, audio, net)


def parse_lamp(sec: Section) -> LampConfig:
    driver = sec.get(
        "driver",
        str,
        check=lambda d: None if d in LAMP_DRIVERS else f"must be one of {', '.join(LAMP_DRIVERS)}",
    )
    port = sec.get("port", str, "" if driver == "none" else ...)
    ch = sec.section("channels")
    channels: dict[str, int] = {}
    for dept in ch.data:
        channels[dept] = ch.get(dept, int, check=lambda n: None if 1 <= n <= 64 else "channel must be 1..64")
    # Several departments may share one lamp; the in-call and fault lamps must be lamps of their own.
    max_channel = 8 if driver == "lcus" else 64
    for dept, n in channels.items():
        if n > max_channel:
            raise ch.error(dept, f"an LCUS board has channels 1..{max_channel}, got {n}")

    def _extra_channel(n: int) -> str | None:
        if not 0 <= n <= max_channel:
            return f"must be 0 (none) or a channel 1..{max_channel}"
        if n in channels.values():
            return f"channel {n} is already a department's channel"
        return None

    in_call = sec.get("in_call_channel", int, 0, check=_extra_channel)
    fault = sec.get(
        "fault_channel",
        int,
        0,
        check=lambda n: (
            _extra_channel(n) or ("must differ from in_call_channel" if n and n == in_call else None)
        ),
    )
    lamp = LampConfig(
        driver=driver,
        port=port,
        channels=channels,
        blink=sec.get("blink", bool, False),
        in_call_channel=in_call,
        fault_channel=fault,
        baudrate=sec.get("baudrate", int, 9600, check=_positive),
        ack_timeout=sec.get("ack_timeout", float, 0.5, check=_positive),
    )
    sec.done()
    return lamp


@reporting_stray_keys
def load_terminal_config(path: str | Path, role: str) -> TerminalConfig:
    """Load a counter, office or lamp terminal config.

    Args:
        path: the TOML file.
        role: ``counter``, ``office`` or ``lamp``: which sections are allowed.

    Raises:
        ConfigError: naming file, line and key.
    """
    file, root = load(path)
    relay = _parse_relay(root.section("relay", required=True))
    ui = _parse_ui(root.section("terminal")) if role in ("counter", "office") else UiConfig()
    media = _parse_media(root, role) if role in ("counter", "office") else None
    lamp_sec = root.section("lamp", required=(role == "lamp"))
    lamp = parse_lamp(lamp_sec) if lamp_sec.data or role == "lamp" else None
    if role == "counter" and lamp is not None:
        raise root.error("lamp", "a counter terminal has no lamp; lamps belong to the office")
    printer_sec, emblem_sec = root.section("printer"), root.section("emblems")
    printer, emblems = None, {}
    if role == "counter":
        printer = _parse_printer(printer_sec) if printer_sec.data else None
        for office in emblem_sec.data:
            rel = emblem_sec.get(office, str, check=lambda v: None if v else "must be an image file path")
            full = Path(rel) if Path(rel).is_absolute() else Path(path).resolve().parent / rel
            if full.is_file():
                emblems[office] = str(full)
            else:  # a missing picture must not stop the counter: the town button shows its name alone
                event(
                    log,
                    "emblem_missing",
                    file=path,
                    key=f"emblems.{office}",
                    image=full,
                    effect="the town is shown without it",
                )
        emblem_sec.done()
    elif printer_sec.data or emblem_sec.data:
        raise root.error(
            "printer" if printer_sec.data else "emblems", "only a counter terminal has this section"
        )
    papers_sec = root.section("papers")
    papers_folder = ""
    if papers_sec.data:
        if role != "office":
            raise root.error("papers", "only a staff station hands papers over the screen")
        folder = papers_sec.get("folder", str, check=lambda v: None if v else "must be a folder path")
        papers_folder = str(
            Path(folder) if Path(folder).is_absolute() else Path(path).resolve().parent / folder
        )
        papers_sec.done()
    root.done()
    return TerminalConfig(Path(path), relay, ui, media, lamp, printer, emblems, papers_folder)


def _parse_printer(sec: Section) -> PrinterConfig:
    p = PrinterConfig(
        queue=sec.get(
            "queue",
            str,
            check=lambda q: None if q and " " not in q else "must be a CUPS queue name (see `lpstat -p`)",
        ),
        timeout=sec.get("timeout", float, PrinterConfig.timeout, check=_positive),
        options=tuple(sec.get_list("options", str, [])),
    )
    sec.done()
    return p
