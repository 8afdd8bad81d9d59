"""The counter kiosk out of service, in a real window: relay down or a camera missing at start-up, automatic
recovery, and the technician menu (wrong PIN, diagnostics, exit) reached from the out-of-service screen."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from ui_counter import counter_config, free_port, relay_config  # noqa: E402

from kiosk.apps.counter import CounterApp  # noqa: E402
from kiosk.ui.driver import running_app, visible_texts  # noqa: E402
from relay_server.server import RelayServer  # noqa: E402


def shown(app: CounterApp) -> str:
    """The name of the screen the kiosk shows."""
    assert app.manager is not None, "the app has not built its screens"
    return str(app.manager.current)


@pytest.mark.asyncio(loop_scope="module")
async def test_relay_down_at_start_up_then_recovers_by_itself() -> None:
    """An unreachable relay shows the full-screen out-of-service message with the cause and the phone number and
    hours from counter.toml (the relay's are unknown); when the relay comes up the kiosk reaches the start screen
    by itself and takes the relay's numbers."""
    from dataclasses import replace

    port = free_port()
    cfg = counter_config()
    cfg = replace(cfg, ui=replace(cfg.ui, fallback_phone="011-000-0000", fallback_hours="平日 9:00〜17:00"))
    app = CounterApp(cfg, url=f"ws://127.0.0.1:{port}", hold_time=0.3)
    relay = None
    try:
        async with running_app(app) as ui:
            await ui.until(lambda: shown(app) == "out_of_service", 10, "out of service")
            screen = app.screen("out_of_service")
            texts = visible_texts(screen)
            assert "ただいま休止中です" in texts
            cause = screen.ids.cause.text
            assert "relay down" in cause and "ConnectionRefused" in cause, cause
            phone = screen.ids.phone.text
            assert "011-000-0000" in phone and "平日 9:00〜17:00" in phone, phone
            relay = await RelayServer(relay_config()).start(host="127.0.0.1", port=port)
            await ui.until(lambda: shown(app) == "start", 20, "start after the relay came up")
            assert app.screen("start").department_button("juumin")
            relay_phones = [d.fallback.get("phone", "") for d in relay.config.departments.values()]
            assert app.office_phone in relay_phones, (app.office_phone, relay_phones)
    finally:
        await app.aclose()
        if relay is not None:
            await relay.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_missing_camera_is_out_of_service_and_technician_sees_why() -> None:
    """A missing document camera keeps the kiosk out of service (checked again and again); the technician gets in
    with the PIN only, sees the cause, and can leave the app."""
    relay = await RelayServer(relay_config()).start(host="127.0.0.1", port=0)
    app = CounterApp(
        counter_config(document_source="/dev/video99"), url=relay.url, hold_time=0.3, device_retry=0.2
    )
    try:
        async with running_app(app) as ui:
            await ui.until(lambda: shown(app) == "out_of_service", 15, "out of service")
            assert "document camera (/dev/video99)" in app.screen("out_of_service").ids.cause.text
            checks = app.device_checks
            await ui.until(lambda: app.device_checks >= checks + 2, 10, "the cameras to be checked again")
            assert shown(app) == "out_of_service"

            await ui.hold(ui.window_pos(app.corner), lambda: shown(app) == "pin", 5, "the PIN screen")
            pad = app.screen("pin").ids.pad
            for key in "9999":
                pad.press(key)
            await ui.tap(pad.ids.ok)
            await ui.until(lambda: app.pin_error, 5, "the wrong-PIN message")
            assert shown(app) == "pin" and "暗証番号が違います" in visible_texts(app.screen("pin"))
            await ui.tap(app.screen("pin").ids.back)
            await ui.until(lambda: shown(app) == "out_of_service", 5, "back to out of service")

            await ui.hold(ui.window_pos(app.corner), lambda: shown(app) == "pin", 5, "the PIN screen")
            for key in "2468":
                pad.press(key)
            await ui.tap(pad.ids.ok)
            await ui.until(lambda: shown(app) == "tech", 5, "the technician menu")
            tech = app.screen("tech")
            await ui.until(
                lambda: "/dev/video99" in tech.ids.diagnostics.text, 5, "the cause in the diagnostics"
            )
            await ui.tap(tech.ids.reload)
            await ui.until(
                lambda: tech.ids.message.text == "設定を再読み込みしました", 5, "the reload message"
            )
            await ui.tap(tech.ids.exit)
            await ui.until(lambda: app.stopped.is_set(), 5, "the app to stop")
    finally:
        await app.aclose()
        await relay.close()


def test_command_line_rejects_a_bad_config(tmp_path: Path) -> None:
    """``kiosk counter --config`` with a broken file exits with status 2 and names the file and key."""
    bad = tmp_path / "counter.toml"
    bad.write_text('[relay]\nurl = "http://x"\ntoken = "t"\n', encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "kiosk", "counter", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "counter.toml" in proc.stderr and "url" in proc.stderr
