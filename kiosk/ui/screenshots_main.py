"""``scripts/screenshots``: run each app's screenshot scenes and save PNGs to ``docs/screenshots/``.

Every entry of :data:`SCENES` names a module with ``async def screenshot_scenes(out_dir) -> list[Path]``
that runs its app in-process (see :func:`kiosk.ui.driver.running_app`) and saves each screen in both
languages with :func:`kiosk.ui.screenshot.shoot_languages`. A module that does not exist yet is skipped.
"""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env, restore_std_streams

prepare_kivy_env(headless=True)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# app name → module with screenshot_scenes(out_dir). The office station adds its own line.
SCENES: dict[str, str] = {
    "counter": "kiosk.screens.counter_shots",
    "office": "kiosk.screens.office_shots",
}

WINDOW = (1280, 800)


async def run(names: list[str], out_dir: Path) -> int:
    written: list[Path] = []
    for name in names:
        try:
            module = importlib.import_module(SCENES[name])
        except ModuleNotFoundError as err:
            if err.name != SCENES[name]:
                raise
            print(f"screenshots: {name}: {SCENES[name]} does not exist yet; skipped")
            continue
        files = await module.screenshot_scenes(out_dir)
        written.extend(files)
        print(f"screenshots: {name}: {len(files)} files")
    for f in written:
        print(f"  {f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/screenshots", description=__doc__)
    p.add_argument("apps", nargs="*", default=list(SCENES), help=f"which apps (default: all of {list(SCENES)})")
    p.add_argument("--out", default="docs/screenshots", help="output folder")
    args = p.parse_args(argv)
    unknown = [a for a in args.apps if a not in SCENES]
    if unknown:
        p.error(f"unknown app(s) {unknown}; known: {list(SCENES)}")
    configure_window(*WINDOW)
    import kivy  # noqa: F401

    restore_std_streams()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(run(args.apps, Path(args.out)))


if __name__ == "__main__":
    sys.exit(main())
