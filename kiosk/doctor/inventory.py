"""The inventory family: the config file itself, and what this PC has (video devices, serial ports, sound cards,
the network interfaces ``[network] ice_addresses`` names).

The device lists always pass: they are there to help a technician pick ``[camera] source``, ``[lamp] port`` and
``[audio]`` names. A config that does not load fails with the loader's file:line:key message and advice chosen
from the kind of :class:`~common.tomlconf.ConfigError` it raised (:class:`ConfigCause`).
"""

from __future__ import annotations

import contextlib
import enum
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path

from common.tomlconf import ConfigFileNotFound, ConfigSyntaxError, MissingKeyError, UnknownKeyError
from kiosk.config import ConfigError, TerminalConfig, load_terminal_config
from kiosk.doctor.report import CheckResult

__all__ = [
    "ROLES",
    "ConfigCause",
    "audio_devices_result",
    "check_config",
    "check_ice_addresses",
    "config_cause",
    "infer_role",
    "list_serial_ports",
    "list_video_devices",
    "serial_ports_result",
    "video_devices_result",
]

ROLES = ("counter", "office", "lamp")


class ConfigCause(enum.Enum):
    """Why a terminal config did not load."""

    FILE_MISSING = "file_missing"
    SYNTAX = "syntax"
    UNKNOWN_KEY = "unknown_key"
    MISSING_KEY = "missing_key"
    BAD_VALUE = "bad_value"  # a wrong type or value, or an unreadable file


def config_cause(err: ConfigError) -> ConfigCause:
    """The cause of a loader error, from its type."""
    for kind, cause in (
        (ConfigFileNotFound, ConfigCause.FILE_MISSING),
        (ConfigSyntaxError, ConfigCause.SYNTAX),
        (UnknownKeyError, ConfigCause.UNKNOWN_KEY),
        (MissingKeyError, ConfigCause.MISSING_KEY),
    ):
        if isinstance(err, kind):
            return cause
    return ConfigCause.BAD_VALUE


def config_advice(cause: ConfigCause, path: str | Path) -> str:
    """One line a technician can act on, for each :class:`ConfigCause`."""
    return {
        ConfigCause.FILE_MISSING: (
            f"no file at {path}: check the path (terminal configs usually live in /etc/kiosk/ "
            "or config/ of the installation)"
        ),
        ConfigCause.UNKNOWN_KEY: (
            "correct the key name on that line (a misspelt key is never silently ignored); "
            "docs/configuration.md lists every key"
        ),
        ConfigCause.SYNTAX: "fix the TOML syntax on that line (quotes around strings, one key = value per line)",
        ConfigCause.MISSING_KEY: "add the missing key or table; docs/configuration.md shows an example of each",
        ConfigCause.BAD_VALUE: (
            "fix the value on that line; docs/configuration.md gives the type and an example of each key"
        ),
    }[cause]


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
        return CheckResult("config", False, str(err), config_advice(config_cause(err), path)), None, role
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
        return CheckResult(
            "ICE addresses",
            False,
            str(err),
            "set [network] ice_addresses to interfaces or addresses this PC has (`ip -br addr`), "
            "or remove the key to use every interface",
        )
    return CheckResult("ICE addresses", True, f"media will use {', '.join(resolved)}")


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
        return CheckResult(
            "video devices", True, "none (no /dev/video*): only synthetic: and file: cameras work"
        )
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
        return CheckResult(
            "serial ports", True, "none found (USB serial adapters show up as /dev/ttyUSB*, /dev/ttyACM*)"
        )
    return CheckResult("serial ports", True, "\n".join(lines))


def audio_devices_result(asound: str | Path = "/proc/asound") -> CheckResult:
    """Always passes: the sound cards and their playback/capture PCMs, from ``/proc/asound``."""
    root = Path(asound)
    try:
        pcm = (root / "pcm").read_text().strip().splitlines()
    except OSError:
        pcm = []
    if not pcm:
        return CheckResult(
            "audio devices",
            True,
            "no sound cards (/proc/asound/pcm is empty or missing): only "
            "synthetic: inputs and the null output work",
        )
    # "00-00: ALC892 Analog : ALC892 Analog : playback 1 : capture 1" → "hw:0,0 ALC892 Analog (playback, capture)"
    lines = []
    for entry in pcm:
        ident, _, rest = entry.partition(":")
        parts = [p.strip() for p in rest.split(":")]
        card, _, device = ident.partition("-")
        kinds = [p.split()[0] for p in parts[2:] if p]
        lines.append(f"hw:{int(card)},{int(device)}  {parts[0]} ({', '.join(kinds)})")
    return CheckResult("audio devices", True, "\n".join(lines))
