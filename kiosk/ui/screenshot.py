"""Save what the window shows to a PNG file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["LAYOUT_PROBLEMS", "save_screenshot", "shoot_languages"]

# What :func:`shoot_languages` found wrong on the screens it photographed ("<file>: <problem>"), for
# ``scripts/screenshots --check`` and the layout test. One list per process: the tool runs one scene set at a time.
LAYOUT_PROBLEMS: list[str] = []


def save_screenshot(path: str | Path) -> Path:
    """Write the window's current picture to ``path`` (PNG) and return it.

    Kivy's ``Window.screenshot`` appends a counter to the name (``name0001.png``); this writes into a
    fresh temporary directory and moves the file to the exact path asked for.
    """
    from kivy.core.window import Window

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".shot-", dir=target.parent) as tmp:
        written = Window.screenshot(name=os.path.join(tmp, "shot.png"))
        if not written or not Path(written).is_file():
            raise RuntimeError(f"the window did not write a screenshot (asked for {target})")
        os.replace(written, target)
    return target


async def shoot_languages(
    app: Any, driver: Any, directory: str | Path, stem: str, languages: tuple[str, ...] = ("ja", "en")
) -> list[Path]:
    """Save ``<directory>/<stem>-<lang>.png`` for each language, then restore the app's language.

    Args:
        app: a running :class:`~kiosk.ui.app.KioskApp`.
        driver: its :class:`~kiosk.ui.driver.UiDriver` (to let Kivy redraw after the switch).
    """
    before = app.lang
    saved = []
    try:
        for lang in languages:
            app.set_language(lang)
            await driver.frames(3)
            path = save_screenshot(Path(directory) / f"{stem}-{lang}.png")
            saved.append(path)
            if app.root is not None:
                from kiosk.ui.driver import label_problems

                LAYOUT_PROBLEMS.extend(f"{path.name}: {p}" for p in label_problems(app.root))
    finally:
        app.set_language(before)
        await driver.frames(1)
    return saved
