"""The field family: does this config describe a terminal ready for the field, or is it still a demo?

Everything here reads the config only (no I/O besides finding the shipped demo configs). Each finding is a
warning (!) with advice, not a failure: the demo and the test beds use exactly these settings on purpose. An
install script passes ``--strict`` so that a warning fails the check.
"""

from __future__ import annotations

import enum
import ipaddress
import tomllib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from kiosk.config import TerminalConfig
from kiosk.doctor.report import CheckResult, warn

__all__ = ["DEMO_CONFIG_DIR", "FieldCause", "demo_tokens", "field_results", "is_local_host"]

DEMO_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


class FieldCause(enum.Enum):
    """A setting that belongs to the demo or the test bed, not to a terminal in the field."""

    DEMO_TOKEN = "demo_token"
    SYNTHETIC_SOURCE = "synthetic_source"
    NULL_OUTPUT = "null_output"
    LOOPBACK_ICE = "loopback_ice"
    PLAIN_WS = "plain_ws"
    NO_LAMP = "no_lamp"
    NO_FALLBACK_PHONE = "no_fallback_phone"


def demo_tokens(folder: Path = DEMO_CONFIG_DIR) -> set[str]:
    """Every ``[relay] token`` of the shipped demo and example configs (public, printed in the repository)."""
    tokens: set[str] = set()
    for path in sorted(folder.glob("*.toml")) + sorted(folder.glob("examples/*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        token = data.get("relay", {}).get("token") if isinstance(data.get("relay"), dict) else None
        if isinstance(token, str) and token:
            tokens.add(token)
    return tokens


def is_local_host(host: str) -> bool:
    """``localhost`` or a loopback address: traffic that never leaves this PC."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_NAMES = {
    FieldCause.DEMO_TOKEN: "demo token",
    FieldCause.SYNTHETIC_SOURCE: "synthetic sources",
    FieldCause.NULL_OUTPUT: "speaker output",
    FieldCause.LOOPBACK_ICE: "ICE on loopback",
    FieldCause.PLAIN_WS: "relay over ws://",
    FieldCause.NO_LAMP: "lamp driver",
    FieldCause.NO_FALLBACK_PHONE: "fallback phone",
}


def _finding(cause: FieldCause, cfg: TerminalConfig, detail: str) -> CheckResult:
    path = cfg.path
    advice = {
        FieldCause.DEMO_TOKEN: (
            f"make this terminal its own token with `relay-server token TERMINAL_ID` and put it "
            f"into [relay] token of {path}; the demo tokens are public"
        ),
        FieldCause.SYNTHETIC_SOURCE: (
            "plug in the real device and name it in the config (cameras: a "
            "/dev/v4l/by-id/… path from 'video devices'; microphone: an ALSA name from "
            "'audio devices' or `arecord -L`)"
        ),
        FieldCause.NULL_OUTPUT: (
            "set [audio] output to the speaker (an ALSA name from 'audio devices' or "
            "`aplay -L`, e.g. alsa:plughw:CARD=Speakerphone,DEV=0)"
        ),
        FieldCause.LOOPBACK_ICE: (
            "remove [network] ice_addresses or name this PC's LAN interface (`ip -br addr`): "
            "with 127.0.0.1 media can only reach programs on this PC"
        ),
        FieldCause.PLAIN_WS: (
            "use wss:// for a relay on another machine (docs/operations.md, TLS): ws:// sends the "
            "token and the call signalling unencrypted"
        ),
        FieldCause.NO_LAMP: (
            "set [lamp] driver to lcus or ascii and port to the lamp's serial port, or remove "
            "[lamp] if this PC drives no lamp"
        ),
        FieldCause.NO_FALLBACK_PHONE: (
            f"set [terminal] fallback_phone (and fallback_hours) in {path} to the number residents may "
            "call: it is shown when the relay cannot be reached"
        ),
    }[cause]
    return warn(_NAMES[cause], detail, advice)


def field_results(
    cfg: TerminalConfig, *, url: str | None = None, tokens: Iterable[str] | None = None, role: str = ""
) -> list[CheckResult]:
    """Warnings for demo settings in ``cfg`` (one per kind), or one ✓ ``field setup`` when there are none."""
    found: list[CheckResult] = []
    known = set(demo_tokens() if tokens is None else tokens)
    if cfg.relay.token in known:
        found.append(_finding(FieldCause.DEMO_TOKEN, cfg, "[relay] token is one of the shipped demo tokens"))
    media = cfg.media
    if media is not None:
        synthetic = [
            f'[{key}] source = "{cam.source}"'
            for key, cam in (("camera", media.camera), ("document_camera", media.document_camera))
            if cam is not None and cam.source.startswith("synthetic:")
        ]
        if media.audio.input.startswith("synthetic:"):
            synthetic.append(f'[audio] input = "{media.audio.input}"')
        if synthetic:
            found.append(
                _finding(
                    FieldCause.SYNTHETIC_SOURCE,
                    cfg,
                    "test pictures or tones instead of real devices: " + ", ".join(synthetic),
                )
            )
        if media.audio.output == "null":
            found.append(
                _finding(
                    FieldCause.NULL_OUTPUT,
                    cfg,
                    '[audio] output = "null": call audio is discarded, nobody hears the other side',
                )
            )
        loopback = [a for a in media.network.ice_addresses if is_local_host(a) or a == "lo"]
        if loopback:
            found.append(
                _finding(
                    FieldCause.LOOPBACK_ICE,
                    cfg,
                    f"[network] ice_addresses = {list(media.network.ice_addresses)} keeps media on this PC",
                )
            )
    relay_url = url or cfg.relay.url
    parts = urlsplit(relay_url)
    if parts.scheme == "ws" and not is_local_host(parts.hostname or ""):
        found.append(
            _finding(FieldCause.PLAIN_WS, cfg, f"{relay_url}: unencrypted websocket to another machine")
        )
    if cfg.lamp is not None and cfg.lamp.driver == "none":
        found.append(_finding(FieldCause.NO_LAMP, cfg, '[lamp] driver = "none": no lamp lights for a call'))
    if role == "counter" and not cfg.ui.fallback_phone:
        found.append(
            _finding(
                FieldCause.NO_FALLBACK_PHONE,
                cfg,
                "no [terminal] fallback_phone: a counter that cannot reach the relay gives residents no number",
            )
        )
    return found or [
        CheckResult(
            "field setup",
            True,
            "no demo token, synthetic source, null speaker, loopback-only media or unencrypted remote relay",
        )
    ]
