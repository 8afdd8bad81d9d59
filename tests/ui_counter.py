"""Helpers for the counter kiosk's UI tests: small-video configs, a relay, a staff station, the app."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from kiosk.config import CameraConfig, TerminalConfig, load_terminal_config

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1280, 800


def small_media(config: TerminalConfig, *, document_source: str | None = None) -> TerminalConfig:
    """The config with tiny cameras (tests stay cheap on 2 cores) and media on 127.0.0.1."""
    media = config.media
    assert media is not None
    camera = CameraConfig("synthetic:camera", 160, 90, 10.0)
    document = None
    if media.document_camera is not None:
        document = CameraConfig(document_source or "synthetic:document", 320, 180, 5.0)
    net = replace(media.network, ice_addresses=("127.0.0.1",))
    return config.with_overrides(media=replace(media, camera=camera, document_camera=document, network=net))


def counter_config(*, document_source: str | None = None, **ui: Any) -> TerminalConfig:
    """config/counter.toml with small video and ``[terminal]`` overrides (e.g. ``idle_timeout=0.5``)."""
    cfg = load_terminal_config(ROOT / "config" / "counter.toml", "counter")
    ui.setdefault("ring_sound", False)
    cfg = cfg.with_overrides(ui=replace(cfg.ui, width=WIDTH, height=HEIGHT, **ui))
    return small_media(cfg, document_source=document_source)


def office_config(name: str = "office.toml") -> TerminalConfig:
    """A staff station config with small video."""
    return small_media(load_terminal_config(ROOT / "config" / name, "office"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
