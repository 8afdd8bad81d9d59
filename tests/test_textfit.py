"""Japanese breaks only where Japanese allows; a label that overflows its widget is found; a fitting label fits.

The pure rules are tested directly; the widgets in a real (offscreen) Kivy window."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from helpers import ROOT  # noqa: E402

from kiosk.ui.textfit import break_allowed, mid_word_breaks, segments, wrap  # noqa: E402


def test_segments_follow_japanese_breaks() -> None:
    """Breaks fall between bunsetsu, never inside 応答する or before small kana and closing brackets."""
    assert segments("カメラの下に置いてください") == ["カメラの", "下に", "置いてください"]
    assert segments("応答する") == ["応答する"]
    assert segments("マイクを切る") == ["マイクを", "切る"]
    assert not break_allowed("ョ", "ン") and not break_allowed("ー", "。") and not break_allowed("（", "受")
    assert not break_allowed("e", "x")  # inside a Latin word


def test_wrap_packs_pieces_and_keeps_newlines() -> None:
    """Wrapping packs whole pieces into each line and keeps explicit line breaks."""
    assert wrap("書類を\nカメラの下に置いてください", 6, len) == "書類を\nカメラの下に\n置いてください"
    assert wrap("応答する", 2, len) == "応答する"  # too wide: left whole for the label to shrink


def test_mid_word_breaks_are_found() -> None:
    """A rendering that breaks 応答す|る is reported; one that breaks between bunsetsu is not."""
    assert mid_word_breaks("応答する", ["応答す", "る"]) == ["応答す|る"]
    assert mid_word_breaks("カメラの下に置いてください", ["カメラの下に", "置いてください"]) == []
    assert mid_word_breaks("a\nb", ["a", "b"]) == []


def _window_root() -> Any:
    from kivy.core.window import Window
    from kivy.uix.floatlayout import FloatLayout

    root = FloatLayout(size=Window.size)
    return root


def test_overflowing_label_is_reported_and_a_fitting_one_fits() -> None:
    """label_problems reports a plain Label whose text is cut by its size and one broken mid-word; the same text in
    a FitLabel (Japanese breaks, shrinking) is clean."""
    from kivy.uix.label import Label

    from kiosk.ui.driver import label_problems
    from kiosk.ui.fonts import find_cjk_font, register_cjk_font
    from kiosk.ui.widgets import FitLabel

    font = register_cjk_font(find_cjk_font(""))
    root = _window_root()
    common = {"font_name": font, "font_size": 40, "size_hint": (None, None), "size": (200, 60), "pos": (0, 0)}
    tall = Label(text="カメラの下に置いてください", text_size=(200, None), **common)
    root.add_widget(tall)
    problems = label_problems(root)
    assert any("text" in p and "60 px" in p for p in problems), problems  # three lines in a 60 px high widget
    assert any("mid-word" in p for p in problems), problems
    root.clear_widgets()
    fit = FitLabel(text="カメラの下に置いてください", text_size=(200, None), fit_height=True, **common)
    root.add_widget(fit)
    assert label_problems(root) == []


def test_a_label_that_drops_its_last_lines_is_reported_and_a_fitting_one_shrinks() -> None:
    """A label whose text_size fixes its height draws only the lines that fit (its texture is never larger than the
    widget): label_problems names what is missing; a FitLabel with fit_height shrinks until everything is drawn."""
    from kivy.uix.label import Label

    from kiosk.ui.driver import label_problems
    from kiosk.ui.fonts import find_cjk_font, register_cjk_font
    from kiosk.ui.textfit import dropped_text
    from kiosk.ui.widgets import FitLabel

    assert dropped_text("参加者：あなた、職員 1", ["参加者：", "あなた、"]) == "職員1"
    assert dropped_text("参加者：あなた、職員 1", ["参加者：あなた、", "職員 1"]) == ""
    font = register_cjk_font(find_cjk_font(""))
    root = _window_root()
    common = {"font_name": font, "font_size": 30, "size_hint": (None, None), "size": (160, 80), "pos": (0, 0)}
    cut = Label(text="参加者：あなた、職員 1", text_size=(160, 80), **common)
    root.add_widget(cut)
    problems = label_problems(root)
    assert any("not drawn" in p for p in problems), problems
    root.clear_widgets()
    root.add_widget(FitLabel(text="参加者：あなた、職員 1", text_size=(160, 80), fit_height=True, **common))
    assert label_problems(root) == []


@pytest.mark.timeout(
    600
)  # every screen of both apps, including the start screen at 4/12/24 departments and two towns
def test_station_and_counter_screens_fit_at_960x600(tmp_path: Path) -> None:
    """Every station and counter screen at the demo's 960×600: no label overflows, no Japanese breaks mid-word
    (the screenshot scenes check each screen they photograph)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiosk.tools.screenshots",
            "office",
            "counter",
            "--size",
            "960x600",
            "--check",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    problems = [line for line in result.stdout.splitlines() if line.startswith("layout problem")]
    assert result.returncode == 0 and not problems, (
        "\n".join(problems) or result.stdout[-3000:] + result.stderr[-3000:]
    )


@pytest.mark.timeout(600)  # two real calls (counter and station) with papers, marks and writing
def test_assist_screens_fit_at_960x600(tmp_path: Path) -> None:
    """Papers, marks and the written conversation on both sides at the demo's 960×600: no label overflows, no
    Japanese breaks mid-word (the assist scenes check each screen they photograph)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiosk.tools.screenshots",
            "assist",
            "--size",
            "960x600",
            "--check",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    problems = [line for line in result.stdout.splitlines() if line.startswith("layout problem")]
    assert result.returncode == 0 and not problems, (
        "\n".join(problems) or result.stdout[-3000:] + result.stderr[-3000:]
    )
