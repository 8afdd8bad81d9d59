"""Environment for Kivy, set before the first ``import kivy``.

Kivy parses ``sys.argv``, writes ``~/.kivy`` and logs to the console unless told otherwise, and it
needs an SDL video driver that works without a display (``offscreen``; see PLATFORM.md).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile


def prepare_kivy_env(*, headless: bool | None = None, home: str | None = None) -> None:
    """Set Kivy's environment variables; a no-op for variables already set.

    Args:
        headless: force SDL's offscreen driver; default: only when there is no ``DISPLAY``.
        home: ``KIVY_HOME``; default: a fresh temporary directory (Kivy must not write ``~/.kivy``).

    Variables set after Kivy was imported have no effect on it (harmless: the test suite's conftest
    sets the same ones first).
    """
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    if "KIVY_HOME" not in os.environ:
        os.environ["KIVY_HOME"] = home or make_temp_kivy_home()
    if headless is None:
        headless = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    if headless:
        os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
        # No sound card on a headless machine: SDL's dummy audio driver keeps the mixer happy.
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


def make_temp_kivy_home() -> str:
    """A fresh ``KIVY_HOME`` that is removed when this process exits (normally, or on SIGTERM through the app's
    own handler): a terminal or test run leaves no ``kivy-home-*`` folder behind."""
    path = tempfile.mkdtemp(prefix="kivy-home-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def configure_window(width: int, height: int, *, fullscreen: bool = False) -> None:
    """Window size and input settings; call after :func:`prepare_kivy_env`, before the window exists.

    The size must be known when SDL creates the window: resizing an offscreen window later leaves
    a stale viewport. Mouse multitouch emulation (red dots on right-click) is switched off.
    """
    from kivy.config import Config

    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "fullscreen", "auto" if fullscreen else "0")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("kivy", "exit_on_escape", "0")  # a keyboard on the kiosk must not close the app


def restore_std_streams() -> None:
    """Undo Kivy's capture of ``sys.stderr`` into its (silenced) logger, so tracebacks stay visible.

    With ``KIVY_NO_CONSOLELOG`` Kivy redirects stderr into its logger, which then prints nothing.
    """
    sys.stderr = sys.__stderr__
    sys.stdout = sys.__stdout__
