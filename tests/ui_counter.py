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


def relay_config(*, closed: tuple[str, ...] = (), **overrides: Any) -> Any:
    """The demo relay config (port 0, in-memory log) with some departments never open."""
    from helpers import make_relay_config

    from relay_server.config import Hours

    cfg = make_relay_config(**overrides)
    departments = dict(cfg.departments)
    for dept in closed:
        d = departments[dept]
        departments[dept] = replace(d, hours=Hours(d.hours.tz, ((),) * 7))
    return replace(cfg, departments=departments)


def button_widgets(root: Any) -> list[Any]:
    """Every touchable widget under ``root`` (buttons and button-behaviour layouts) that is shown."""
    from kivy.uix.behaviors import ButtonBehavior

    from kiosk.ui.driver import walk

    return [w for w in walk(root) if isinstance(w, ButtonBehavior) and w.opacity > 0 and w.width > 0]


def overflow_problems(root: Any, window: tuple[float, float]) -> list[str]:
    """Widgets shown outside the window, and texts bigger than their box (cut off or spilling over)."""
    from kivy.uix.label import Label

    from kiosk.ui.driver import walk

    problems = []
    for w in walk(root):
        if w.opacity <= 0 or w.width <= 1 or w.height <= 1:
            continue
        x, y = w.to_window(*w.pos)
        if x < -1 or y < -1 or x + w.width > window[0] + 1 or y + w.height > window[1] + 1:
            problems.append(
                f"{type(w).__name__} {getattr(w, 'text', '')!r} at {x:.0f},{y:.0f} "
                f"size {w.width:.0f}×{w.height:.0f} is outside the {window[0]}×{window[1]} window"
            )
        if isinstance(w, Label) and w.text:
            w.texture_update()
            tw, th = w.texture_size
            if tw > w.width + 2 or th > w.height + 2:
                problems.append(
                    f"text {w.text!r} needs {tw}×{th} px but its box is {w.width:.0f}×{w.height:.0f}"
                )
    return problems
