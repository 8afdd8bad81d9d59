"""The counter's start screen as pure logic: towns, pages of departments, grid sizes. No Kivy.

A counter may offer 1 to 30 departments, of one or several towns (``[[office]]`` in ``relay.toml``). A
first-time resident must see every choice without scrolling and without buttons shrinking below the
touch minimum, so:

* departments of **several towns**: the resident picks the town first (:class:`StartNav` ``mode ==
  "towns"``), then the department;
* **more departments than fit**: they are split over pages of equal size with large "next/back" buttons
  and a page indicator (:func:`plan_grid` says how many fit, :func:`pages_of` splits them);
* a name is drawn as large as its button allows (:func:`fit_font_size`), never smaller than body text.

The screen asks :func:`plan_grid` with its real area in pixels and the physical minimums from
:class:`kiosk.ui.style.Sizes`; :class:`StartNav` remembers the town and page until the idle reset.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "GridPlan",
    "StartNav",
    "Town",
    "fit_font_size",
    "pages_of",
    "plan_grid",
    "text_width_em",
    "towns_of",
]

T = TypeVar("T")


@dataclass(frozen=True)
class GridPlan:
    """How ``count`` buttons are laid out: ``per_page`` of them in ``cols`` × ``rows`` cells, ``pages`` pages."""

    count: int
    cols: int
    rows: int
    pages: int
    button_w: float
    button_h: float
    per_page: int = 0

    @property
    def slots(self) -> int:
        return self.cols * self.rows


def _best_grid(
    n: int, width: float, height: float, min_w: float, min_h: float, gap: float, max_cols: int
) -> tuple[int, int] | None:
    """The grid for ``n`` buttons in ``width`` × ``height`` with the biggest buttons, or None if none fits."""
    best: tuple[float, int, int] | None = None
    for cols in range(1, max_cols + 1):
        rows = math.ceil(n / cols)
        w = (width - gap * (cols - 1)) / cols
        h = (height - gap * (rows - 1)) / rows
        if w < min_w or h < min_h:
            continue
        # Score: the smaller of the two margins over the minimum; text is wide, so a wide button is fine.
        score = min(w / min_w, h / min_h) - 0.01 * (cols * rows - n)
        if best is None or score > best[0]:
            best = (score, cols, rows)
    return None if best is None else (best[1], best[2])


def plan_grid(
    count: int,
    width: float,
    height: float,
    *,
    min_w: float,
    min_h: float,
    gap: float,
    nav_h: float,
    max_cols: int = 4,
) -> GridPlan:
    """How to show ``count`` buttons in an area of ``width`` × ``height`` pixels.

    Everything on one page when it fits with every button at least ``min_w`` × ``min_h``; otherwise pages
    of equal size below which a navigation bar of ``nav_h`` (plus ``gap``) takes its place.

    Raises:
        ValueError: not even one button of the minimum size fits (the screen is far too small).
    """
    if count <= 0:
        return GridPlan(0, 1, 1, 1, width, height, 1)
    grid = _best_grid(count, width, height, min_w, min_h, gap, max_cols)
    if grid is not None:
        cols, rows = grid
        return GridPlan(
            count, cols, rows, 1, (width - gap * (cols - 1)) / cols, (height - gap * (rows - 1)) / rows, count
        )
    inner = height - nav_h - gap
    cols_max = max(0, min(max_cols, int((width + gap) // (min_w + gap))))
    rows_max = max(0, int((inner + gap) // (min_h + gap)))
    if cols_max * rows_max == 0:
        raise ValueError(f"no button of {min_w:.0f}×{min_h:.0f} px fits in {width:.0f}×{inner:.0f} px")
    pages = math.ceil(count / (cols_max * rows_max))
    per_page = math.ceil(count / pages)  # balanced pages: 24 in pages of 12 and 12, not 15 and 9
    grid = _best_grid(per_page, width, inner, min_w, min_h, gap, max_cols)
    assert grid is not None  # per_page <= cols_max * rows_max fits by construction
    cols, rows = grid
    return GridPlan(
        count,
        cols,
        rows,
        pages,
        (width - gap * (cols - 1)) / cols,
        (inner - gap * (rows - 1)) / rows,
        per_page,
    )


def pages_of(items: Sequence[T], per_page: int) -> list[list[T]]:
    """``items`` in pages of ``per_page`` (the last may be shorter); at least one (empty) page."""
    per_page = max(1, per_page)
    return [list(items[i : i + per_page]) for i in range(0, len(items), per_page)] or [[]]


def text_width_em(text: str) -> float:
    """Approximate width of ``text`` in ems: full-width (CJK) characters 1, others about 0.55."""
    return sum(1.0 if unicodedata.east_asian_width(ch) in ("W", "F") else 0.55 for ch in text)


def fit_font_size(
    text: str, box_w: float, box_h: float, *, largest: float, smallest: float, line_height: float = 1.25
) -> float:
    """The largest font size (≤ ``largest``, ≥ ``smallest``) at which ``text`` fits ``box_w`` × ``box_h``.

    Lines wrap at spaces (or anywhere in CJK text); the estimate is deliberately a little pessimistic.
    """
    size = largest
    while size > smallest:
        if _fits(text, box_w, box_h, size, line_height):
            return size
        size = max(smallest, size * 0.92)
    return smallest


def _fits(text: str, box_w: float, box_h: float, size: float, line_height: float) -> bool:
    if box_w <= 0:
        return False
    per_line = box_w / size
    lines = 0
    for paragraph in text.split("\n"):
        words = paragraph.split(" ") if " " in paragraph else [paragraph]
        width = 0.0
        lines += 1
        for word in words:
            w = text_width_em(word)
            if w > per_line:  # an unbreakable latin word wider than the box never fits
                if all(unicodedata.east_asian_width(c) not in ("W", "F") for c in word):
                    return False
                extra = math.ceil((width + w) / per_line) - 1
                lines += extra
                width = (width + w) - extra * per_line
                continue
            sep = 0.3 if width else 0.0
            if width + sep + w > per_line:
                lines += 1
                width = w
            else:
                width += sep + w
    return lines * size * line_height <= box_h


@dataclass(frozen=True)
class Town:
    """A town (``[[office]]``) whose departments this counter offers."""

    id: str
    name_ja: str
    name_en: str

    def name(self, lang: str) -> str:
        return self.name_ja if lang == "ja" else self.name_en


def towns_of(departments: Sequence[object]) -> list[Town]:
    """The towns of ``departments`` (objects with ``office`` and ``office_name_ja/en``), in first-seen order."""
    seen: dict[str, Town] = {}
    for d in departments:
        office = str(getattr(d, "office", "") or "")
        if office and office not in seen:
            seen[office] = Town(
                office,
                str(getattr(d, "office_name_ja", "") or office),
                str(getattr(d, "office_name_en", "") or office),
            )
    return list(seen.values())


D = TypeVar("D")


class StartNav(Generic[D]):
    """Where the resident is on the start screen: which town (if several), which page.

    Kept until the idle reset (:meth:`reset`), so a resident who steps back finds the screen as left, and
    the next resident starts from the first page of the town list.
    """

    def __init__(self) -> None:
        self.town: str | None = None
        self.page = 0

    def reset(self) -> None:
        self.town = None
        self.page = 0

    def mode(self, towns: Sequence[Town]) -> str:
        """``towns`` while a town must be picked first, else ``departments``."""
        if len(towns) > 1 and self.town not in {t.id for t in towns}:
            return "towns"
        return "departments"

    def choose_town(self, town: str) -> None:
        self.town = town
        self.page = 0

    def back_to_towns(self) -> None:
        self.town = None
        self.page = 0

    def shown(self, departments: Sequence[D], towns: Sequence[Town]) -> list[D]:
        """The departments of the chosen town (all of them with one town)."""
        if len(towns) <= 1:
            return list(departments)
        return [d for d in departments if getattr(d, "office", None) == self.town]

    def turn(self, step: int, pages: int) -> None:
        """Next (+1) or previous (-1) page, staying within 0 … pages-1."""
        self.page = min(max(0, self.page + step), max(0, pages - 1))

    def clamp(self, pages: int) -> int:
        """The current page, brought back in range when the number of pages shrank (e.g. a larger text)."""
        self.page = min(self.page, max(0, pages - 1))
        return self.page
