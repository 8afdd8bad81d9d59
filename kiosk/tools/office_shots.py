"""Screenshots of every staff-station screen (ja and en), for ``scripts/screenshots``; and the
set-up the scenes share with the station's UI tests (a second counter).

The scenes run the real station app against a real relay (in-process), two resident counters
(:class:`~kiosk.headless.HeadlessCounter`) and a headless colleague station, and walk through the
screens with simulated touches, as staff would.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from kiosk.config import RelayLink, TerminalConfig, load_terminal_config
from kiosk.tools.scenes import small_media, window_sized

log = logging.getLogger(__name__)

__all__ = ["SECOND_COUNTER", "relay_with_second_counter", "screenshot_scenes", "second_counter_config"]

ROOT = Path(__file__).resolve().parents[2]
SECOND_COUNTER = ("counter-sapporo-2", "test-counter-2-a7d3f0", "札幌市役所 北区役所")


def relay_with_second_counter(cfg: Any) -> Any:
    """A relay config with a second counter (``SECOND_COUNTER``) offering the same departments."""
    from relay_server.config import Terminal, hash_token

    first = cfg.terminals["counter-sapporo-1"]
    tid, token, name = SECOND_COUNTER
    second = Terminal(tid, "counter", hash_token(token), first.departments, name)
    return replace(cfg, terminals={**cfg.terminals, tid: second})


def second_counter_config(cfg: TerminalConfig) -> TerminalConfig:
    return cfg.with_overrides(relay=RelayLink(cfg.relay.url, SECOND_COUNTER[1]))


async def office_scenes(out_dir: Path, *, prefix: str = "office") -> list[Path]:
    """Save ``<prefix>-<screen>-<lang>.png`` for every screen; returns the files written."""
    from kiosk.apps.office_ui import OfficeApp
    from kiosk.headless import HeadlessCounter, HeadlessStation
    from kiosk.ui.driver import running_app
    from kiosk.ui.screenshot import shoot_languages
    from relay_server.config import load_relay_config
    from relay_server.server import RelayServer

    relay_cfg = replace(
        load_relay_config(ROOT / "config" / "relay.toml"), database="", port=0, ring_timeout=8.0
    )
    srv = await RelayServer(relay_with_second_counter(relay_cfg)).start(host="127.0.0.1", port=0)
    counter_cfg = small_media(
        load_terminal_config(ROOT / "config" / "counter.toml", "counter"), (640, 360), (1280, 720)
    )
    resident = await HeadlessCounter(counter_cfg, url=srv.url).start()
    resident2 = await HeadlessCounter(second_counter_config(counter_cfg), url=srv.url).start()
    await resident.wait_up()
    await resident2.wait_up()
    colleague = HeadlessStation(
        small_media(load_terminal_config(ROOT / "config" / "office-2.toml", "office"), (640, 360), None),
        auto_answer=None,
        url=srv.url,
    )
    await colleague.start()
    await colleague.wait_up()
    office = load_terminal_config(ROOT / "config" / "office.toml", "office")
    office = small_media(
        office.with_overrides(ui=replace(office.ui, ring_sound=False, fullscreen=False)), (640, 360), None
    )
    office = window_sized(office)
    app = OfficeApp(office, url=srv.url, taken_shown=30.0)
    shots: list[Path] = []

    async def shoot(name: str) -> None:
        shots.extend(await shoot_languages(app, ui, out_dir, f"{prefix}-{name}"))

    try:
        async with running_app(app) as ui:
            waiting = app.screen("waiting")
            await ui.until(lambda: app.state_name == "waiting" and app.link_ok, 15, "the waiting screen")
            await shoot("waiting-empty")

            # A call that nobody answers, and one the resident gives up on: the missed list.
            missed_call = await resident.place_call("hoken")
            await ui.until(lambda: missed_call in app.machine.ringing, 5, "the first call ringing")
            cancelled = await resident2.place_call("kensetsu")
            await ui.until(lambda: cancelled in app.machine.ringing, 5, "the second call ringing")
            await shoot("waiting-ringing")
            await resident2.end()  # gives up while it rings
            await ui.until(lambda: len(app.machine.missed) == 1, 15, "the cancelled call in the missed list")
            await ui.until(lambda: len(app.machine.missed) == 2, 15, "the unanswered call in the missed list")

            # Two calls ring; the colleague takes one.
            await resident.end()  # the unanswered call may not have reached the counter yet
            first = await resident.place_call("juumin")
            second = await resident2.place_call("zeimu")
            await ui.until(lambda: len(waiting.cards()) == 2, 5, "two cards")
            await colleague.answer(second)
            await ui.until(lambda: waiting.card(second).taken_by, 5, "taken by the colleague")
            await shoot("waiting-taken")

            # Answer the first one.
            await ui.frames(2)
            await ui.tap(waiting.card(first).ids.answer)
            call_screen = app.screen("in_call")
            await ui.until(
                lambda: (
                    app.state_name == "in_call"
                    and call_screen.ids.big_view.frames_shown > 2
                    and call_screen.ids.small_tile.ids.video.frames_shown > 0
                ),
                60,
                "video in the call",
            )
            await ui.until(
                lambda: all(r.connected for r in call_screen.ids.members.children), 10, "members connected"
            )
            await resident2.end()
            await ui.until(lambda: app.ringing_count == 0 and not colleague.in_call, 10, "no other calls")
            await shoot("in-call")
            await ui.tap(call_screen.ids.small_tile)
            await ui.until(
                lambda: app.big == "document" and call_screen.ids.big_view.has_frame, 5, "papers large"
            )
            await shoot("in-call-papers")

            await ui.tap(call_screen.ids.fullscreen)
            doc = app.screen("document")
            await ui.until(
                lambda: app.screen_name == "document" and doc.ids.doc_view.frames_shown > 0,
                5,
                "papers full screen",
            )
            await shoot("document")
            await ui.tap(doc.ids.still)
            await ui.until(lambda: app.screen_name == "still", 60, "the still")
            still = app.screen("still")
            await ui.tap(still.ids.zoom_in)
            await ui.frames(2)
            await shoot("still")
            await ui.tap(still.ids.back)

            await ui.tap(call_screen.ids.invite)
            await ui.until(lambda: app.screen_name == "invite", 5, "the invite picker")
            await shoot("invite")
            colleague.auto_answer = 0.0
            await ui.tap(app.screen("invite").button("terminal", "office-tobetsu-2"))
            await ui.until(
                lambda: (
                    app.can_leave
                    and len(call_screen.member_texts()) == 3
                    and all(r.connected for r in call_screen.ids.members.children)
                ),
                15,
                "colleague joined",
            )
            await shoot("in-call-colleague")

            await ui.tap(call_screen.ids.leave)
            await ui.until(lambda: app.state_name == "waiting", 10, "back to waiting after leaving")
            await shoot("waiting-after-leave")
            await resident.end()
            await ui.until(lambda: not colleague.in_call, 10, "the call over")

            await ui.tap(waiting.ids.away)
            await ui.until(lambda: app.away, 5, "away")
            await shoot("waiting-away")
            await ui.tap(waiting.ids.away)
            await ui.until(lambda: not app.away, 5, "available again")

            await srv.close()
            await ui.until(lambda: not app.link_ok, 15, "offline")
            await shoot("offline")
    finally:
        await app.aclose()
        await colleague.close()
        await resident.close()
        await resident2.close()
        await srv.close()
    return shots


async def screenshot_scenes(out_dir: Path) -> list[Path]:
    """Entry point for ``scripts/screenshots``."""
    return await office_scenes(out_dir)
