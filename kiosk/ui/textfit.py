"""Where a line of Japanese may break, and text wrapped only there (pure: no Kivy).

Kivy breaks a line at spaces, and inside a "word" that does not fit wherever the width runs out: Japanese has no
spaces, so ``応答する`` became ``応答す|る``. The rules here are a small, conservative subset of the Japanese line
breaking rules (JIS X 4051, kinsoku shori): a line may break after closing punctuation, between a run of hiragana
and the kanji, katakana or Latin text that follows it (roughly a bunsetsu boundary), at spaces, and between
scripts; never before small kana, the long vowel mark or closing punctuation, never after opening brackets, never
inside a word of Latin letters or digits. A label that cannot fit a piece on one line shrinks its font instead
(:mod:`kiosk.ui.widgets`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = [
    "break_allowed",
    "dropped_text",
    "has_japanese",
    "mid_word_breaks",
    "segments",
    "strip_markup",
    "wrap",
]

_NO_START = set("、。，．,.:;!?！？）」』】〕〉》ー～ゃゅょっぁぃぅぇぉゎャュョッァィゥェォヵヶ・")
_NO_END = set("（「『【〔〈《")
_CLOSERS = set("、。，．！？）」』】〕〉》")
_MARKUP = re.compile(
    r"\[/?(?:b|i|u|s|sub|sup|size|color|font|font_context|font_family|ref|anchor)(?:=[^\]]*)?\]"
)


def _kind(ch: str) -> str:
    o = ord(ch)
    if 0x3041 <= o <= 0x309F:
        return "hira"
    if 0x30A0 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF:
        return "kata"
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or ch in "々〆":
        return "kanji"
    if ch.isspace():
        return "space"
    if ch.isascii() and ch.isalnum():
        return "latin"
    if 0xFF10 <= o <= 0xFF5A:
        return "latin"  # full-width letters and digits
    return "other"


def has_japanese(text: str) -> bool:
    """Whether ``text`` has kana or kanji (then the rules here apply)."""
    return any(_kind(ch) in ("hira", "kata", "kanji") for ch in text)


def break_allowed(before: str, after: str) -> bool:
    """May a line end after ``before`` and the next begin with ``after``?"""
    if after in _NO_START or before in _NO_END:
        return False
    a, b = _kind(before), _kind(after)
    if a == "space" or b == "space":
        return True
    if before in _CLOSERS:
        return True
    if a == "hira" and b in ("kanji", "kata", "latin"):
        return True
    if a in ("latin", "other") and b in ("hira", "kata", "kanji"):
        return not _is_digit(before)  # a number and its unit stay together: 04秒, 3件, 1階
    if a in ("hira", "kata", "kanji") and b == "latin":
        return not _is_digit(after)  # 0分04秒 is one piece
    return False


def _is_digit(ch: str) -> bool:
    return ch.isdigit() or 0xFF10 <= ord(ch) <= 0xFF19


def segments(text: str) -> list[str]:
    """``text`` cut at every allowed break (spaces stay at the end of the piece before them)."""
    out: list[str] = []
    start = 0
    for i in range(1, len(text)):
        if (
            text[i - 1] != "\n"
            and text[i] != "\n"
            and break_allowed(text[i - 1], text[i])
            and not text[i].isspace()
        ):
            out.append(text[start:i])
            start = i
    out.append(text[start:])
    return [s for s in out if s]


def wrap(text: str, width: float, measure: Callable[[str], float]) -> str:
    """``text`` with line breaks put only where Japanese allows, packing each line up to ``width``.

    Explicit newlines are kept. A piece wider than ``width`` on its own stays whole (on its own line): the caller
    shrinks the font until it fits.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for piece in segments(paragraph):
            if line and measure((line + piece).rstrip()) > width:
                lines.append(line.rstrip())
                line = piece.lstrip()
            else:
                line += piece
        lines.append(line.rstrip())
    return "\n".join(lines)


def strip_markup(text: str) -> str:
    """Kivy markup tags removed (``[b]``, ``[size=20]``, …): the characters that are drawn."""
    return _MARKUP.sub("", text)


def mid_word_breaks(text: str, lines: list[str]) -> list[str]:
    """The places where the rendered ``lines`` of ``text`` break a line where Japanese does not allow it.

    Args:
        text: what the label was given (markup already stripped).
        lines: the text of each rendered line, in order.

    Returns:
        ``"応答す|る"``-style snippets, one per bad break (empty when every break is allowed).
    """
    bad: list[str] = []
    pos = 0
    for i, line in enumerate(lines):
        found = text.find(line, pos) if line else pos
        if found < 0:
            return bad  # the renderer changed the text (shortened with an ellipsis): nothing to judge
        pos = found + len(line)
        if i == len(lines) - 1 or pos >= len(text):
            break
        if text[pos] in "\n ":
            continue
        if pos > 0 and text[pos - 1] not in "\n " and not break_allowed(text[pos - 1], text[pos]):
            bad.append(f"{text[max(0, pos - 4) : pos]}|{text[pos : pos + 4]}")
    return bad


def dropped_text(text: str, lines: list[str]) -> str:
    """What of ``text`` the drawn ``lines`` leave out at the end ("" when all of it is drawn).

    A label whose ``text_size`` fixes its height draws only the lines that fit and silently drops the rest: its
    texture is never larger than the widget, yet "参加者：あなた、職員 1" shows as "参加者：あなた、".
    """
    want = "".join(strip_markup(text).split())
    got = "".join("".join(lines).split())
    return want[len(got) :] if len(got) < len(want) else ""
