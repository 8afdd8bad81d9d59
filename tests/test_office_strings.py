"""The staff station's translation table: complete in ja and en, every key the screens use exists, and every
character is drawn by the CJK font (no tofu boxes). Pure: no window."""

from __future__ import annotations

import re
from pathlib import Path

from kiosk.ui.fonts import find_cjk_font, missing_glyphs
from kiosk.ui.i18n import LANGUAGES, load_strings

SCREENS = Path(__file__).resolve().parent.parent / "kiosk"


def test_every_office_string_has_ja_and_en() -> None:
    """Loading the table checks both languages for every key; none may be empty."""
    table = load_strings("common", "office")
    for key in table.keys():
        if key.startswith("office."):
            for lang in LANGUAGES:
                assert table.get(key, lang).strip(), f"{key} ({lang}) is empty"


def test_every_character_is_covered_by_the_cjk_font() -> None:
    """Every character of the office and common strings has a glyph in the font the app registers."""
    table = load_strings("common", "office")
    font = find_cjk_font()
    missing = missing_glyphs(font, table.texts())
    assert not missing, f"{font} has no glyph for {''.join(sorted(missing))!r}"


def test_every_key_used_by_the_station_exists() -> None:
    """Every literal office.* key in the station's kv and Python files is in the table."""
    table = load_strings("common", "office")
    sources = [
        *SCREENS.glob("screens/office*.kv"),
        *SCREENS.glob("screens/office*.py"),
        SCREENS / "apps" / "office_ui.py",
    ]
    used = {
        k for p in sources for k in re.findall(r'"(office\.[a-z_]+\.[a-z_]+)"', p.read_text(encoding="utf-8"))
    }
    assert used, "no keys found: the pattern is out of date"
    unknown = sorted(k for k in used if k not in table)
    assert not unknown, f"keys used but not defined: {unknown}"


def test_every_print_reason_has_words_in_both_languages() -> None:
    """Each reason code a counter gives for a page that did not print is shown to staff in their language."""
    from kiosk.assist.messages import PRINT_REASONS
    from kiosk.devices.printer import REASONS

    table = load_strings("common", "office")
    missing = [r for r in PRINT_REASONS if f"office.assist.print_reason.{r}" not in table]
    assert not missing, f"print reasons without station words: {missing}"
    assert {code for code, _words in REASONS.values()} <= set(PRINT_REASONS)
