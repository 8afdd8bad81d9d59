"""When nobody can answer (no station online, or every department closed), the counter's start screen says so and
gives the resident the next step: the fallback phone number and hours. Real window, real relay."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

import pytest  # noqa: E402
from ui_counter import counter_config, office_config, relay_config  # noqa: E402

from kiosk.apps.counter import CounterApp  # noqa: E402
from kiosk.headless import HeadlessStation  # noqa: E402
from kiosk.ui.driver import running_app  # noqa: E402
from relay_server.server import RelayServer  # noqa: E402


@pytest.mark.asyncio(loop_scope="module")
async def test_nobody_can_answer_gives_phone_and_hours() -> None:
    """With no station online the start screen's band gives a phone number and hours instead of only grey buttons;
    once a station is online it shows the counter's usual notice again."""
    relay = await RelayServer(relay_config()).start(host="127.0.0.1", port=0)
    phones = [d.fallback.get("phone", "") for d in relay.config.departments.values()]
    app = CounterApp(counter_config(), url=relay.url, hold_time=0.3)
    try:
        async with running_app(app) as ui:
            start = app.screen("start")
            await ui.until(lambda: app.state_name == "start" and app.nobody, 15, "the start screen, nobody")
            band = start.ids.notice.text
            assert "どの課もお受けできません" in band and "電話 " in band and "受付 " in band, band
            assert any(p and p in band for p in phones), (phones, band)
            station = HeadlessStation(office_config(), auto_answer=None, url=relay.url)
            async with station:
                await station.wait_up()
                await ui.until(lambda: not app.nobody, 10, "a department available")
                assert "ご相談専用" in start.ids.notice.text
    finally:
        await app.aclose()
        await relay.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_technician_menu_does_not_call_a_synthetic_source_ok() -> None:
    """The technician diagnostics call a synthetic camera or microphone what it is (not 'OK'), say there is no
    speaker with output null, and name a refused token as such."""
    from dataclasses import replace

    relay = await RelayServer(relay_config()).start(host="127.0.0.1", port=0)
    cfg = counter_config()
    app = CounterApp(
        replace(cfg, relay=replace(cfg.relay, token="not-this-token")), url=relay.url, hold_time=0.3
    )
    try:
        async with running_app(app) as ui:
            await ui.until(lambda: app.machine.link_state == "unauthorized", 10, "the refused token")
            text = app.diagnostics_text("ja")
            assert "token was refused" in text, text
            for line in text.splitlines():
                if line.startswith(("カメラ", "書画カメラ", "マイク")):
                    assert "正常" not in line and "合成" in line, line
            assert "スピーカーなし" in text
    finally:
        await app.aclose()
        await relay.close()
