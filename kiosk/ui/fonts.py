"""Japanese font discovery, registration with Kivy, and glyph coverage checks.

Kivy's bundled font (Roboto) has no CJK glyphs: every Japanese character would be drawn as a tofu box.
:func:`find_cjk_font` looks for a real CJK font (the configured path first, then IPAex Gothic and Noto
Sans CJK from Debian, then the ``noto-cjk-sans-jp-regular`` wheel, then fontconfig), and
:func:`register_cjk_font` makes it Kivy's default font so that no widget can fall back to Roboto.

Discovery and coverage are pure (no Kivy import); only :func:`register_cjk_font` touches Kivy.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from common.logs import event

log = logging.getLogger(__name__)

__all__ = ["FontNotFound", "KNOWN_FONTS", "FONT_NAME", "find_cjk_font", "missing_glyphs", "register_cjk_font"]

FONT_NAME = "KioskCJK"

# Debian packages installed by scripts/setup (fonts-ipaexfont-gothic) or common alternatives.
KNOWN_FONTS: tuple[str, ...] = (
    "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Regular.otf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
)

# A probe of characters every usable font must have (kana, kanji, full-width punctuation).
PROBE = "住民課税務書類をカメラの下に置いてください。ア"


class FontNotFound(Exception):
    """No usable CJK font: the message lists every place that was looked at."""


def _wheel_font() -> str | None:
    try:
        import noto_cjk_sans_jp_regular  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(getattr(noto_cjk_sans_jp_regular, "FONT_PATH", "")) or None


def _fontconfig_font() -> str | None:
    if shutil.which("fc-match") is None:
        return None
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{file}", ":lang=ja"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def candidate_fonts(configured: str = "") -> list[str]:
    """Every path to try, best first: config, ``$KIOSK_FONT``, known files, the pip wheel, fontconfig."""
    paths: list[str] = []
    if configured:
        paths.append(configured)
    if os.environ.get("KIOSK_FONT"):
        paths.append(os.environ["KIOSK_FONT"])
    paths.extend(KNOWN_FONTS)
    for extra in (_wheel_font(), _fontconfig_font()):
        if extra:
            paths.append(extra)
    return paths


def find_cjk_font(configured: str = "", *, probe: str = PROBE) -> Path:
    """Return the first existing font that covers every character of ``probe``.

    Args:
        configured: ``[terminal] font`` from the config; when set it must exist and cover the probe.
        probe: characters the font must contain.

    Raises:
        FontNotFound: when no candidate works; the message names each candidate and why it failed.
    """
    tried: list[str] = []
    for path in candidate_fonts(configured):
        if not Path(path).is_file():
            tried.append(f"{path}: not found")
            if path == configured:
                raise FontNotFound(f"[terminal] font = {configured!r}: file not found")
            continue
        try:
            missing = missing_glyphs(path, probe)
        except Exception as err:  # a damaged or unreadable font file: try the next one
            tried.append(f"{path}: unreadable ({err})")
            continue
        if missing:
            tried.append(f"{path}: lacks {''.join(sorted(missing))!r}")
            if path == configured:
                raise FontNotFound(
                    f"[terminal] font = {configured!r} has no glyphs for "
                    f"{''.join(sorted(missing))!r}; it is not a Japanese font"
                )
            continue
        return Path(path)
    raise FontNotFound(
        "no Japanese font found; install one with `apt-get install fonts-ipaexfont-gothic` "
        "(scripts/setup does) or set [terminal] font. Tried:\n  " + "\n  ".join(tried)
    )


def missing_glyphs(path: str | Path, text: Iterable[str]) -> set[str]:
    """Characters of ``text`` that the font at ``path`` has no glyph for (whitespace ignored).

    Reads the font's character map with fontTools (face 0 of a ``.ttc`` collection, which is the
    Japanese face of Noto Sans CJK).
    """
    from fontTools.ttLib import TTFont

    kwargs = {"fontNumber": 0} if str(path).lower().endswith((".ttc", ".otc")) else {}
    with TTFont(str(path), lazy=True, **kwargs) as font:
        cmap = font.getBestCmap() or {}
    chars = {c for chunk in text for c in chunk}
    return {c for c in chars if not c.isspace() and ord(c) not in cmap}


def register_cjk_font(path: str | Path) -> str:
    """Register ``path`` with Kivy as :data:`FONT_NAME` and as the default font ``Roboto``.

    Replacing ``Roboto`` means every widget, including text inputs and popups that never set
    ``font_name``, draws Japanese with real glyphs. Returns :data:`FONT_NAME`.
    """
    from kivy.core.text import LabelBase

    p = str(path)
    for name in (FONT_NAME, "Roboto"):
        LabelBase.register(name=name, fn_regular=p, fn_bold=p, fn_italic=p, fn_bolditalic=p)
    event(log, "font_registered", path=p)
    return FONT_NAME
