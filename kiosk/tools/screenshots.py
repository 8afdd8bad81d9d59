"""``scripts/screenshots``: run each app's screenshot scenes and save PNGs to ``docs/screenshots/``.

At three window sizes (:data:`SIZES`): 1280×800 into ``docs/screenshots/``, the others into
``docs/screenshots/WxH/``; each size runs in a process of its own (an offscreen window cannot be resized). Every
screen photographed is also checked for labels whose text does not fit and Japanese broken mid-word
(:func:`kiosk.ui.driver.label_problems`); ``--check`` makes any such problem fail the run.

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
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# app name → module with screenshot_scenes(out_dir). The office station adds its own line.
SCENES: dict[str, str] = {
    "counter": "kiosk.tools.counter_shots",
    "office": "kiosk.tools.office_shots",
    "assist": "kiosk.tools.assist_shots",
}

WINDOW = (1280, 800)
SIZES = ((960, 600), (1280, 800), (1920, 1080))  # the demo's window, the common station, a full-HD kiosk


def parse_size(text: str) -> tuple[int, int]:
    """``960x600`` → (960, 600)."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"a size is WIDTHxHEIGHT, e.g. 960x600, got {text!r}")
    return int(w), int(h)


def size_dir(out: Path, size: tuple[int, int]) -> Path:
    return out if size == WINDOW else out / f"{size[0]}x{size[1]}"


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
    from kiosk.ui.screenshot import LAYOUT_PROBLEMS

    for problem in LAYOUT_PROBLEMS:
        print(f"layout problem: {problem}")
    return 3 if LAYOUT_PROBLEMS else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/screenshots", description=__doc__)
    p.add_argument(
        "apps", nargs="*", default=list(SCENES), help=f"which apps (default: all of {list(SCENES)})"
    )
    p.add_argument("--out", default="docs/screenshots", help="output folder")
    p.add_argument(
        "--size",
        action="append",
        type=parse_size,
        metavar="WxH",
        help="window size (repeatable; default 960x600, 1280x800 and 1920x1080)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if any label's text does not fit its widget or Japanese breaks mid-word",
    )
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # one size, this process
    args = p.parse_args(argv)
    unknown = [a for a in args.apps if a not in SCENES]
    if unknown:
        p.error(f"unknown app(s) {unknown}; known: {list(SCENES)}")
    sizes = args.size or list(SIZES)
    if not args.in_process:
        failed = problems = False
        for size in sizes:
            print(f"screenshots at {size[0]}x{size[1]}", flush=True)
            code = subprocess.call(
                [
                    sys.executable,
                    "-m",
                    "kiosk.tools.screenshots",
                    *args.apps,
                    "--in-process",
                    "--out",
                    str(size_dir(Path(args.out), size)),
                    "--size",
                    f"{size[0]}x{size[1]}",
                ]
            )
            failed |= code not in (0, 3)
            problems |= code == 3
        return 1 if failed or (args.check and problems) else 0
    width, height = sizes[0]
    configure_window(width, height)
    import kivy  # noqa: F401

    restore_std_streams()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(run(args.apps, Path(args.out)))


if __name__ == "__main__":
    sys.exit(main())
