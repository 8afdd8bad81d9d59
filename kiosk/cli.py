"""Command-line pieces the terminal commands share: camera sources given on the command line, and the words
every command uses for a relay link problem and for an unknown id.

``--camera`` and ``--document-camera`` take the same spec strings as ``[camera] source`` and
``[document_camera] source`` (``/dev/video0``, ``/dev/v4l/by-id/…``, an index, ``file:PATH``,
``synthetic:camera``, ``synthetic:document``; see ``docs/devices.md``) and win over the config file,
so a technician can try another camera without editing it.
"""

from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass, replace

from kiosk.config import CAMERA_DEFAULT, DOCUMENT_CAMERA_DEFAULT, CameraConfig, TerminalConfig

__all__ = ["CameraOverrides", "add_camera_arguments", "link_problem", "unknown_id"]


def link_problem(state: str, detail: str, url: str) -> str | None:
    """One line naming what is wrong with the relay link, or None while it is fine (``up``, ``connecting``).

    ``unauthorized`` (the relay refused this terminal's token) and ``down`` (the relay cannot be reached) are
    worded apart on purpose: the first is fixed in the config or relay.toml, the second on the network.
    """
    if state == "unauthorized":
        why = f" ({detail})" if detail else ""
        return (
            f"this terminal's token was refused by the relay at {url}{why}: make one with "
            "`relay-server token TERMINAL_ID` and put it into [relay] token (docs/operations.md, Tokens)"
        )
    if state == "down":
        why = f": {detail}" if detail else ""
        return f"cannot reach the relay at {url}{why}"
    return None


def unknown_id(kind: str, value: str, valid: list[str] | tuple[str, ...]) -> str:
    """``no department 'jumin'; valid ids: juumin, zeimu (did you mean 'juumin'?)``."""
    hint = difflib.get_close_matches(value, list(valid), n=1)
    tip = f" (did you mean '{hint[0]}'?)" if hint else ""
    return f"no {kind} '{value}'; valid ids: {', '.join(valid) or 'none'}{tip}"


@dataclass(frozen=True)
class CameraOverrides:
    """Camera sources that replace the config file's; ``None`` keeps the file's."""

    camera: str | None = None
    document: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CameraOverrides:
        return cls(getattr(args, "camera", None), getattr(args, "document_camera", None))

    def apply(self, cfg: TerminalConfig) -> TerminalConfig:
        """``cfg`` with these sources; size, frame rate and rotation stay as configured.

        A ``--camera`` for a terminal whose ``[camera]`` is disabled turns it on at the default size;
        a ``--document-camera`` likewise, at 1920×1080 and 5 fps.
        """
        media = cfg.media
        if media is None or (self.camera is None and self.document is None):
            return cfg
        cam = media.camera
        if self.camera:
            (w, h), fps = CAMERA_DEFAULT
            cam = (
                replace(cam, source=self.camera) if cam else CameraConfig(self.camera, w, h, fps, adapt=True)
            )
        doc = media.document_camera
        if self.document:
            (w, h), fps = DOCUMENT_CAMERA_DEFAULT
            doc = replace(doc, source=self.document) if doc else CameraConfig(self.document, w, h, fps)
        return replace(cfg, media=replace(media, camera=cam, document_camera=doc))


def add_camera_arguments(parser: argparse.ArgumentParser, *, document: bool) -> None:
    """``--camera`` (and, for a counter, ``--document-camera``) on ``parser``."""
    parser.add_argument(
        "--camera",
        metavar="SPEC",
        help="camera source instead of [camera] source, e.g. /dev/video0 or synthetic:camera",
    )
    if document:
        parser.add_argument(
            "--document-camera",
            metavar="SPEC",
            help="document camera instead of [document_camera] source, e.g. /dev/v4l/by-id/…",
        )
