"""The staff station's own words for its link, and its offline and invite screens, in a real window against a real
relay: a refused token and an unreachable relay are told apart on screen within 2 s; offline shows no stale status
or notice; the invite picker keeps the resident and the end-call button in view."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

import socket  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from helpers import make_relay_config  # noqa: E402

from kiosk.apps.office_ui import OfficeApp  # noqa: E402
from kiosk.config import TerminalConfig, load_terminal_config  # noqa: E402
from kiosk.headless import HeadlessCounter  # noqa: E402
from kiosk.tools.scenes import small_media  # noqa: E402
from kiosk.ui.driver import running_app, visible_texts  # noqa: E402
from relay_server.server import RelayServer  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent


def office(token: str | None = None) -> TerminalConfig:
    cfg = load_terminal_config(ROOT / "config" / "office.toml", "office")
    cfg = cfg.with_overrides(ui=replace(cfg.ui, ring_sound=False, width=1280, height=800))
    cfg = small_media(cfg, (160, 90), None)
    return cfg if token is None else replace(cfg, relay=replace(cfg.relay, token=token))


async def test_refused_token_is_on_screen_within_two_seconds() -> None:
    """A wrong token: the red bar says the token was refused (not 'connecting…'), within 2 s of the refusal."""
    async with RelayServer(make_relay_config()) as srv:
        app = OfficeApp(office(token="not-this-token"), url=srv.url)
        try:
            started = time.monotonic()
            async with running_app(app) as ui:
                bar = app.screen("waiting").ids.link
                await ui.until(
                    lambda: "トークン" in bar.text, 2 + (time.monotonic() - started), "the refused bar"
                )
                assert "token was refused" in bar.text  # the technician's line under it
                assert app.tr("office.bar.connecting", "ja") not in bar.text
        finally:
            await app.aclose()


async def test_unreachable_relay_and_offline_state() -> None:
    """No relay: the bar says it cannot reach it (with the URL), and the status button says calls are not taken."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{s.getsockname()[1]}"
    app = OfficeApp(office(), url=url)
    try:
        async with running_app(app) as ui:
            waiting = app.screen("waiting")
            await ui.until(
                lambda: "cannot reach the relay" in waiting.ids.link.text, 5, "the unreachable bar"
            )
            assert url in waiting.ids.link.text
            assert app.tr("office.bar.offline_status", "ja") in waiting.ids.away.text
            assert app.tr("office.bar.available", "ja") not in waiting.ids.away.text
            assert app.notice_text == ""
    finally:
        await app.aclose()


async def test_offline_hides_the_last_notice_and_invite_keeps_the_call_in_view() -> None:
    """In a call, the invite picker shows the resident's picture and the end-call button; after leaving, a
    notice shows; when the relay goes away that notice and the 'available' status disappear."""
    srv = await RelayServer(make_relay_config()).start(host="127.0.0.1", port=0)
    counter_cfg = small_media(
        load_terminal_config(ROOT / "config" / "counter.toml", "counter"), (160, 90), (320, 180)
    )
    resident = await HeadlessCounter(counter_cfg, url=srv.url).start()
    app = OfficeApp(office(), url=srv.url)
    try:
        async with running_app(app) as ui:
            await ui.until(lambda: app.link_ok and app.state_name == "waiting", 15, "the waiting screen")
            call = await resident.place_call("juumin")
            waiting = app.screen("waiting")
            await ui.until(lambda: any(c.call == call for c in waiting.cards()), 5, "the card")
            await ui.frames(2)
            await ui.tap(waiting.card(call).ids.answer)
            await ui.until(lambda: app.state_name == "in_call", 10, "the call")
            await ui.tap(app.screen("in_call").ids.invite)
            invite = app.screen("invite")
            await ui.until(
                lambda: app.screen_name == "invite" and invite.ids.call_view.frames_shown > 0,
                15,
                "the resident's picture in the invite picker",
            )
            end = invite.ids.end
            assert end.opacity > 0 and end.width > 0 and end.height > 0 and end.parent is not None
            assert app.tr("office.call.end", "ja") in visible_texts(invite)
            await ui.tap(end)
            await ui.until(lambda: app.state_name == "waiting", 10, "the call ended from the invite picker")
            assert app.notice_text  # "you ended the call"
            await srv.close()
            await ui.until(lambda: not app.link_ok, 15, "offline")
            await ui.frames(2)
            assert app.notice_text == ""
            texts = " ".join(visible_texts(waiting))
            assert app.tr("office.notice.ended_by_you", "ja") not in texts
            assert app.tr("office.bar.available", "ja") not in waiting.ids.away.text
    finally:
        await app.aclose()
        await resident.close()
        await srv.close()
