"""What the screenshot scenes (``counter_shots``, ``office_shots``) and the station's UI tests share."""

from __future__ import annotations

from dataclasses import replace

from kiosk.config import CameraConfig, TerminalConfig

__all__ = ["small_media", "window_sized"]


def window_sized(cfg: TerminalConfig) -> TerminalConfig:
    """The config with ``[terminal] width``/``height`` set to the window's size (the scenes run at several sizes;
    sizes in millimetres scale with the width, as on a real screen of that many pixels)."""
    from kivy.core.window import Window

    width, height = (int(v) for v in Window.size)
    return cfg.with_overrides(ui=replace(cfg.ui, width=width, height=height))


def small_media(
    cfg: TerminalConfig, camera: tuple[int, int], document: tuple[int, int] | None
) -> TerminalConfig:
    """The config with synthetic sources of the given sizes and media on 127.0.0.1."""
    media = cfg.media
    assert media is not None
    doc = None
    if document is not None and media.document_camera is not None:
        doc = CameraConfig(media.document_camera.source, document[0], document[1], 5.0)
    cam = CameraConfig("synthetic:camera", camera[0], camera[1], 15.0)
    net = replace(media.network, ice_addresses=("127.0.0.1",))
    return cfg.with_overrides(media=replace(media, camera=cam, document_camera=doc, network=net))
