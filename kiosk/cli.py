"""Command-line pieces the terminal commands share: camera sources given on the command line.

``--camera`` and ``--document-camera`` take the same spec strings as ``[camera] source`` and
``[document_camera] source`` (``/dev/video0``, ``/dev/v4l/by-id/…``, an index, ``file:PATH``,
``synthetic:camera``, ``synthetic:document``; see ``docs/devices.md``) and win over the config file,
so a technician can try another camera without editing it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

from kiosk.config import CAMERA_DEFAULT, DOCUMENT_CAMERA_DEFAULT, CameraConfig, TerminalConfig

__all__ = ["CameraOverrides", "add_camera_arguments"]

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
            cam = replace(cam, source=self.camera) if cam else CameraConfig(self.camera, w, h, fps, adapt=True)
        doc = media.document_camera
        if self.document:
            (w, h), fps = DOCUMENT_CAMERA_DEFAULT
            doc = replace(doc, source=self.document) if doc else CameraConfig(self.document, w, h, fps)
        return replace(cfg, media=replace(media, camera=cam, document_camera=doc))


def add_camera_arguments(parser: argparse.ArgumentParser, *, document: bool) -> None:
    """``--camera`` (and, for a counter, ``--document-camera``) on ``parser``."""
    parser.add_argument("--camera", metavar="SPEC",
                        help="camera source instead of [camera] source, e.g. /dev/video0 or synthetic:camera")
    if document:
        parser.add_argument("--document-camera", metavar="SPEC",
                            help="document camera instead of [document_camera] source, e.g. /dev/v4l/by-id/…")
