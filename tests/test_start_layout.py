"""The start screen's pure layout: grids that keep buttons large, balanced pages, fonts that fit, town first."""

from __future__ import annotations

import pytest

from kiosk.counter_state import OfferedDepartment
from kiosk.start_layout import StartNav, fit_font_size, pages_of, plan_grid, text_width_em, towns_of
from kiosk.ui.style import Sizes

S = Sizes(1280, 344.0)
MIN_W, MIN_H = S.mm(62), S.mm(30)
AREA = (1236.0, 480.0)  # the start screen's button area at 1280×800


@pytest.mark.parametrize("count", range(1, 31))
def test_every_count_from_1_to_30_keeps_buttons_at_least_the_minimum(count: int) -> None:
    """1–30 departments: every button at least the minimum, all of them on the pages, pages balanced."""
    plan = plan_grid(count, *AREA, min_w=MIN_W, min_h=MIN_H, gap=S.gap, nav_h=S.button)
    assert plan.button_w >= MIN_W and plan.button_h >= MIN_H >= S.touch
    assert plan.per_page * plan.pages >= count
    pages = pages_of(list(range(count)), plan.per_page)
    assert len(pages) == plan.pages and sum(map(len, pages)) == count
    assert max(map(len, pages)) - min(map(len, pages)) <= plan.pages  # no near-empty last page
    total_h = (
        plan.rows * plan.button_h + (plan.rows - 1) * S.gap + ((S.button + S.gap) if plan.pages > 1 else 0)
    )
    assert total_h <= AREA[1] + 0.01


def test_four_departments_stay_the_familiar_two_by_two_and_24_take_two_pages() -> None:
    """Today's four departments look as before; 24 go to two pages of 12."""
    four = plan_grid(4, *AREA, min_w=MIN_W, min_h=MIN_H, gap=S.gap, nav_h=S.button)
    assert (four.cols, four.rows, four.pages) == (2, 2, 1)
    many = plan_grid(24, *AREA, min_w=MIN_W, min_h=MIN_H, gap=S.gap, nav_h=S.button)
    assert many.pages == 2 and many.per_page == 12


def test_a_screen_too_small_for_one_button_is_an_error() -> None:
    """A configuration that cannot show even one large button says so instead of drawing tiny ones."""
    with pytest.raises(ValueError, match="fits"):
        plan_grid(3, 100, 100, min_w=MIN_W, min_h=MIN_H, gap=S.gap, nav_h=S.button)


def test_font_fits_the_box_and_never_goes_below_the_smallest() -> None:
    """A long name gets a smaller font than a short one in the same box, never below body text."""
    short = fit_font_size("住民課", 300, 100, largest=60, smallest=30)
    long = fit_font_size("Long-term Care Insurance Division", 300, 100, largest=60, smallest=30)
    assert short == 60 and 30 <= long < 60
    assert text_width_em("住民課") == 3 and text_width_em("ab") == pytest.approx(1.1)
    assert fit_font_size("x" * 200, 50, 20, largest=60, smallest=30) == 30


def _dept(did: str, office: str, name: str) -> OfferedDepartment:
    return OfferedDepartment(did, did, did, office=office, office_name_ja=name, office_name_en=office.title())


def test_several_towns_ask_for_the_town_first_and_reset_forgets_it() -> None:
    """With departments of two towns the town comes first; its departments follow; the idle reset starts over."""
    deps = [
        _dept("a", "tobetsu", "当別町"),
        _dept("b", "shinshinotsu", "新篠津村"),
        _dept("c", "tobetsu", "当別町"),
    ]
    towns = towns_of(deps)
    assert [t.id for t in towns] == ["tobetsu", "shinshinotsu"] and towns[1].name("ja") == "新篠津村"
    nav: StartNav[OfferedDepartment] = StartNav()
    assert nav.mode(towns) == "towns"
    nav.choose_town("tobetsu")
    assert nav.mode(towns) == "departments" and [d.id for d in nav.shown(deps, towns)] == ["a", "c"]
    nav.turn(5, pages=3)
    assert nav.page == 2 and nav.clamp(2) == 1
    nav.turn(-9, pages=3)
    assert nav.page == 0
    nav.reset()
    assert nav.mode(towns) == "towns" and nav.page == 0
    assert nav.mode(towns_of(deps[:1])) == "departments"  # one town: no town step
