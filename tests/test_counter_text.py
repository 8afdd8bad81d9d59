"""Text of the counter kiosk (and every other table): complete ja/en tables, real CJK glyphs for every
character, readable contrast, and touch sizes from the physical screen. No window needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import UiConfig
from kiosk.ui.fonts import FontNotFound, find_cjk_font, missing_glyphs
from kiosk.ui.i18n import LANGUAGES, STRINGS_DIR, TranslationError, load_strings
from kiosk.ui.style import MIN_CONTRAST, PALETTE, TEXT_PAIRS, Sizes, contrast_ratio
from relay_server.config import load_relay_config

ROOT = Path(__file__).resolve().parent.parent
TABLES = sorted(p.stem for p in STRINGS_DIR.glob("*.toml"))


def test_every_table_loads_with_both_languages() -> None:
    """Every strings file loads together with the others: each key has exactly ja and en, no duplicates."""
    table = load_strings(*TABLES)
    assert {"common", "counter"} <= set(TABLES)
    for key in table.keys():
        for lang in LANGUAGES:
            assert table.get(key, lang).strip(), f"{key} ({lang}) is empty"


def test_every_character_is_covered_by_the_configured_font() -> None:
    """Every character of every translated string and department name has a glyph in the font the app uses."""
    font = find_cjk_font(UiConfig().font)
    texts = list(load_strings(*TABLES).texts())
    relay = load_relay_config(ROOT / "config" / "relay.toml")
    for d in relay.departments.values():
        texts += [*d.name.values(), *d.fallback.values()]
    texts += ["●–0123456789"]  # the PIN pad's own characters
    assert missing_glyphs(font, texts) == set()


def test_missing_glyphs_detects_tofu() -> None:
    """The coverage check really fails for characters the font lacks (so the test above means something)."""
    font = find_cjk_font()
    assert missing_glyphs(font, "住民課\U0001f9ea") == {"\U0001f9ea"}


def test_configured_font_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    """A configured font path that is missing fails loudly instead of falling back to tofu."""
    with pytest.raises(FontNotFound, match="not found"):
        find_cjk_font(str(tmp_path / "nope.ttf"))


def test_table_errors_name_the_key(tmp_path: Path) -> None:
    """A string without its English text is rejected with the file and key named."""
    (tmp_path / "bad.toml").write_text('[x]\ny = { ja = "はい" }\n', encoding="utf-8")
    with pytest.raises(TranslationError, match=r"bad.toml: 'x.y'"):
        load_strings("bad", directory=tmp_path)


@pytest.mark.parametrize(("fg", "bg"), TEXT_PAIRS)
def test_text_contrast_is_at_least_4_5(fg: str, bg: str) -> None:
    """Each foreground/background pair used for text reaches WCAG's 4.5:1."""
    ratio = contrast_ratio(getattr(PALETTE, fg), getattr(PALETTE, bg))
    assert ratio >= MIN_CONTRAST, f"{fg} on {bg}: {ratio:.2f}:1"


def test_touch_target_size_follows_the_physical_screen() -> None:
    """15 mm is converted with the configured screen width: 1280 px over 344 mm gives about 56 px."""
    sizes = Sizes(1280, 344.0)
    assert sizes.touch == pytest.approx(55.8, abs=0.1)
    assert sizes.big_button >= sizes.button >= sizes.touch
    assert Sizes(1920, 344.0).touch == pytest.approx(83.7, abs=0.1)
