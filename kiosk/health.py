"""What a terminal tells the relay about itself: the ``health`` message (docs/protocol.md, "Health").

:func:`device_states` looks at the sources and devices the terminal already has open (it opens nothing: a check
never disturbs a call) and turns each into ``ok`` / ``missing`` / ``failing`` with the reason; :func:`call_summary`
notes the media path and quality of the call in progress; :class:`HealthReporter` sends a report when the link
comes up and whenever it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from common.logs import event
from kiosk.client import NotConnected

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0  # how often the devices are looked at; a change is reported at the next look


def software_version() -> str:
    try:
        return "kiosk " + metadata.version("remote-counter")
    except metadata.PackageNotFoundError:
        return "kiosk (source)"


def _short(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "…"


def video_state(source: Any) -> dict[str, str]:
    """A camera source's ``status`` as a device state: never a frame = ``missing``, frames stopped = ``failing``."""
    status = str(source.status)
    if status in ("ok", "starting"):
        return {"state": "ok"} if status == "ok" else {"state": "ok", "reason": "starting"}
    reason = _short(status.removeprefix("unavailable: "))
    return {"state": "failing" if getattr(source, "frames_captured", 0) else "missing", "reason": reason}


def microphone_state(audio: Any) -> dict[str, str]:
    status = str(getattr(audio, "status", "ok"))
    if status == "ok":
        return {"state": "ok"}
    return {"state": "missing", "reason": _short(status.removeprefix("unavailable: "))}


def speaker_state(output: str, asound: Path = Path("/proc/asound")) -> dict[str, str] | None:
    """An ALSA output's card is present (``hw:N``: that card; a named device: any card); None when not a device."""
    spec = output.strip().removeprefix("alsa:")
    if output.strip() in ("null", "recorder") or not spec:
        return None
    if spec.startswith(("hw:", "plughw:")):
        card = spec.split(":", 1)[1].split(",", 1)[0]
        present = (asound / f"card{card}").exists() if card.isdigit() else (asound / card).exists()
        return (
            {"state": "ok"} if present else {"state": "missing", "reason": f"no sound card {card} ({output})"}
        )
    cards = asound / "cards"
    if cards.exists() and cards.read_text().strip() and "no soundcards" not in cards.read_text():
        return {"state": "ok"}
    return {"state": "missing", "reason": f"no sound card for {output}"}


def lamp_state(device: Any) -> dict[str, str]:
    """A :class:`~kiosk.devices.lamp.LampDevice`: open = ok; never opened = missing; lost since = failing."""
    if getattr(device, "driver", None) is not None:
        return {"state": "ok"}
    error = str(getattr(device, "last_error", "") or "not open yet")
    return {"state": "failing" if getattr(device, "opened", 0) else "missing", "reason": _short(error)}


def device_states(
    *, local: Any = None, audio_output: str = "null", lamp_device: Any = None
) -> dict[str, Any]:
    """Every device this terminal has, by the names of docs/protocol.md."""
    devices: dict[str, Any] = {}
    if local is not None:
        if local.camera is not None:
            devices["camera"] = video_state(local.camera)
        if local.document is not None:
            devices["document_camera"] = video_state(local.document)
        if local.audio is not None:
            devices["microphone"] = microphone_state(local.audio)
    speaker = speaker_state(audio_output)
    if speaker is not None:
        devices["speaker"] = speaker
    if lamp_device is not None:
        devices["lamp_port"] = lamp_state(lamp_device)
    return devices


def call_summary(session: Any) -> dict[str, str] | None:
    """The media path of the call in progress (``CallSession.media_path``: candidate type/transport of each
    connected peer, e.g. ``host/udp``, ``relay/tls ↔ srflx``) and a quality line (what was received), or None."""
    if session is None:
        return None
    paths = []
    for member in session.members:
        path = session.media_path(member)
        if path:
            paths.append(str(path.get("summary") or f"{path.get('local')}/{path.get('transport')}"))
    quality = []
    for track in session.remote_tracks():
        if track.label in ("camera", "document") and track.frames:
            w, h = track.resolution
            quality.append(f"{track.member} {track.label} {w}×{h} {track.frames} frames")
    if not paths and not quality:
        return None
    out = {}
    if paths:
        out["path"] = _short(", ".join(sorted(set(paths))))
    if quality:
        out["quality"] = _short("; ".join(quality))
    return out


class HealthReporter:
    """Sends ``health`` on every link up and whenever the report changes (looked at every ``interval`` s).

    Args:
        devices: returns the current :func:`device_states`.
        send: sends one message to the relay (raises when the link is down; the report is sent again on up).
        session: returns the call session in progress, if any (its summary becomes ``last_call``).
    """

    def __init__(
        self,
        devices: Callable[[], dict[str, Any]],
        send: Callable[[dict[str, Any]], Awaitable[Any]],
        *,
        session: Callable[[], Any] = lambda: None,
        interval: float = CHECK_SECONDS,
    ) -> None:
        self.devices = devices
        self.send = send
        self.session = session
        self.interval = interval
        self.last_call: dict[str, str] | None = None
        self.sent: dict[str, Any] | None = None
        self._up = False
        self._closing = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def report(self) -> dict[str, Any]:
        summary = call_summary(self.session())
        if summary:
            self.last_call = summary
        msg: dict[str, Any] = {"type": "health", "version": software_version(), "devices": self.devices()}
        if self.last_call:
            msg["last_call"] = self.last_call
        return msg

    def on_link(self, state: str) -> None:
        """Feed the relay client's link state: every ``up`` gets a fresh report (the relay may have restarted)."""
        self._up = state == "up"
        if self._up:
            self.sent = None
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._closing:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that races the wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            if not self._up or self._closing:
                continue
            try:
                msg = self.report()
                if msg != self.sent:
                    await self.send(msg)
                    self.sent = msg
            except (
                NotConnected,
                ConnectionError,
            ) as err:  # the link dropped mid-send: the next 'up' sends again
                event(log, "health_not_sent", logging.DEBUG, problem=err)
            except Exception:
                event(log, "health_report_failed", logging.ERROR, exc_info=True)

    async def close(self) -> None:
        self._closing = True  # ends the loop even if a cancel is lost
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
