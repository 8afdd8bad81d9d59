"""The counter's start screen with many departments and several towns, in a real window against a real relay:
pages with large next/back buttons, the town picked first, touch sizes and overflow at 24 departments, larger
text until the idle reset."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

from collections.abc import AsyncIterator  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from ui_counter import HEIGHT, ROOT, WIDTH, button_widgets, counter_config, office_config, overflow_problems  # noqa: E402

from kiosk.apps.counter import CounterApp  # noqa: E402
from kiosk.headless import HeadlessStation  # noqa: E402
from kiosk.tools.counter_shots import with_many_departments  # noqa: E402
from kiosk.ui.driver import UiDriver, running_app, visible_texts  # noqa: E402
from relay_server.config import RelayConfig, load_relay_config  # noqa: E402
from relay_server.server import RelayServer  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")


@asynccontextmanager
async def kiosk(
    relay_cfg: RelayConfig, stations: tuple[str, ...] = ("office.toml",), **ui: Any
) -> AsyncIterator[tuple[Any, UiDriver, list[HeadlessStation]]]:
    relay = await RelayServer(replace(relay_cfg, database="", port=0)).start(host="127.0.0.1", port=0)
    online = []
    app = CounterApp(counter_config(**ui), url=relay.url)
    try:
        for name in stations:
            st = HeadlessStation(office_config(name), auto_answer=None, url=relay.url)
            await st.start()
            await st.wait_up()
            online.append(st)
        async with running_app(app) as driver:
            await driver.until(
                lambda: app.state_name == "start" and "available" in app.machine.presence.values(),
                15,
                "the start screen with a department available",
            )
            yield app, driver, online
    finally:
        await app.aclose()
        for st in online:
            await st.close()
        await relay.close()


def check_screen(app: Any, where: str) -> None:
    start = app.screen("start")
    small = [
        (type(b).__name__, getattr(b, "text", ""), tuple(map(round, b.size)))
        for b in button_widgets(start)
        if b.width < app.sizes.touch or b.height < app.sizes.touch
    ]
    assert not small, f"{where}: touch targets under 15 mm: {small}"
    problems = overflow_problems(start, (WIDTH, HEIGHT))
    assert not problems, f"{where}: " + "\n".join(problems)


async def test_24_departments_in_pages_with_large_buttons_and_no_overflow() -> None:
    """24 departments: two pages of large buttons with next/back and a page indicator; every department on
    exactly one page; no target under 15 mm and no text cut off, in both languages and with larger text."""
    cfg = with_many_departments(load_relay_config(ROOT / "config" / "relay.toml"), 24)
    async with kiosk(cfg) as (app, ui, _):
        start = app.screen("start")
        assert start.pages == 2 and start.ids.page_next.opacity == 1 and not start.ids.page_next.disabled
        assert start.ids.page_back.disabled
        assert "1 / 2 ページ" in start.ids.page_dots.text and "2ページ" in start.ids.choose.text
        seen: list[str] = []
        for lang in ("ja", "en"):
            app.set_language(lang)
            for large in (False, True):
                app.set_large_text(large)
                await ui.frames(2)
                for page in range(start.pages):
                    while start.page != page:
                        await ui.tap(start.ids.page_next if start.page < page else start.ids.page_back)
                    await ui.frames(2)
                    check_screen(app, f"{lang} large={large} page {page + 1}/{start.pages}")
                    if lang == "ja" and not large:
                        seen += start.shown_ids()
                while start.page > 0:
                    await ui.tap(start.ids.page_back)
        assert sorted(seen) == sorted(cfg.departments) and len(seen) == 24
        app.set_large_text(False)
        app.set_language("ja")
        # A department on the second page is called like any other.
        await ui.tap(start.ids.page_next)
        await ui.until(lambda: start.page == 1, 5, "page 2")
        target = start.shown_ids()[-1]
        assert start.department_button(target).width >= app.sizes.mm(62)
        await ui.tap(start.department_button(target))
        await ui.until(
            lambda: app.state_name == "calling" and app.machine.call.department.id == target,
            5,
            f"calling {target}",
        )
        await ui.tap(app.screen("calling").ids.cancel)
        await ui.until(lambda: app.state_name == "start", 5, "back at start")


async def test_two_towns_pick_the_town_first_and_the_idle_reset_starts_over() -> None:
    """A counter of two towns shows the towns first (name large, emblem), then only that town's departments, a way
    back to the towns; the idle reset returns to the town list, normal text and the default language."""
    cfg = load_relay_config(ROOT / "config" / "relay-two-towns.toml")
    async with kiosk(cfg, stations=("office.toml", "office-3.toml"), idle_timeout=2.0) as (app, ui, _):
        start = app.screen("start")
        assert start.mode == "towns" and start.shown_ids() == ["tobetsu", "shinshinotsu"]
        texts = visible_texts(start)
        assert (
            "当別町役場" in texts
            and "新篠津村役場" in texts
            and "ご相談したい市町村を押してください" in texts
        )
        assert start.town_button("tobetsu").emblem.endswith("tobetsu.png")
        check_screen(app, "towns")
        await ui.tap(start.town_button("shinshinotsu"))
        await ui.until(lambda: start.mode == "departments", 5, "the town's departments")
        assert start.shown_ids() == ["shinshinotsu-juumin", "shinshinotsu-sangyou"]
        assert "新篠津村役場：ご相談したい課を押してください" in visible_texts(start)
        assert start.ids.towns_back.opacity == 1
        check_screen(app, "departments of one town")
        await ui.tap(start.ids.towns_back)
        await ui.until(lambda: start.mode == "towns", 5, "the town list again")
        await ui.tap(start.town_button("tobetsu"))
        await ui.until(lambda: start.shown_ids() == ["juumin", "zeimu", "hoken", "kensetsu"], 5, "Tobetsu")
        await ui.tap(start.ids.large_text)
        await ui.until(lambda: app.large_text and app.sizes.text_scale > 1, 5, "larger text")
        check_screen(app, "larger text")
        app.set_language("en")
        # Nobody touches the screen: the next resident starts from the town list, normal text, Japanese.
        await ui.until(
            lambda: start.mode == "towns" and not app.large_text and app.lang == "ja", 10, "idle reset"
        )
        await ui.frames(2)
