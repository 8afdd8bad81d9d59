"""Screenshots of every counter screen (ja and en), for ``scripts/screenshots``.

Runs the real app against a real relay (in-process) and a headless staff station, and walks through
the screens with simulated touches, exactly as a resident would.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from kiosk.config import load_terminal_config
from kiosk.screens.scenes import small_media, window_sized
from kiosk.ui.screenshot import shoot_languages

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


async def counter_scenes(out_dir: Path, *, prefix: str = "counter") -> list[Path]:
    """Save ``<prefix>-<screen>-<lang>.png`` for every screen; returns the files written."""
    from kiosk.apps.counter import CounterApp
    from kiosk.headless import HeadlessStation
    from kiosk.ui.driver import running_app
    from relay_server.config import Hours, load_relay_config
    from relay_server.server import RelayServer

    relay_cfg = load_relay_config(ROOT / "config" / "relay.toml")
    zeimu = relay_cfg.departments["zeimu"]
    closed = replace(zeimu, hours=Hours(zeimu.hours.tz, ((),) * 7))
    relay_cfg = replace(relay_cfg, database="", port=0, ring_timeout=5.0,
                        departments={**relay_cfg.departments, "zeimu": closed})
    srv = await RelayServer(relay_cfg).start(host="127.0.0.1", port=0)
    office = small_media(load_terminal_config(ROOT / "config" / "office.toml", "office"), (640, 360), None)
    station = HeadlessStation(office, auto_answer=None, url=srv.url)
    await station.start()
    await station.wait_up()
    counter = load_terminal_config(ROOT / "config" / "counter.toml", "counter")
    counter = counter.with_overrides(ui=replace(counter.ui, ring_sound=False, idle_timeout=600,
                                                result_timeout=20, thanks_timeout=8, fullscreen=False))
    counter = small_media(counter, (640, 360), (1280, 720))
    counter = window_sized(counter)
    app = CounterApp(counter, url=srv.url, hold_time=0.5)
    shots: list[Path] = []

    async def shoot(name: str) -> None:
        shots.extend(await shoot_languages(app, ui, out_dir, f"{prefix}-{name}"))

    try:
        async with running_app(app) as ui:
            start = app.screen("start")
            await ui.until(lambda: app.state_name == "start" and app.machine.availability("juumin") == "available"
                           and app.machine.availability("zeimu") == "closed", 15, "the start screen")
            await shoot("start")

            await ui.tap(start.department_button("juumin"))
            await ui.until(lambda: app.machine.call is not None and app.machine.call.id, 5, "ringing")
            await shoot("calling")

            assert app.machine.call is not None
            await station.answer(app.machine.call.id)
            in_call = app.screen("in_call")
            await ui.until(lambda: app.state_name == "in_call" and in_call.remote_views()
                           and all(v.frames_shown > 2 for v in in_call.remote_views())
                           and in_call.ids.document_view.frames_shown > 0
                           and in_call.ids.self_view.frames_shown > 0, 20, "video in the call")
            await shoot("in-call")

            await ui.tap(in_call.ids.hang_up)
            await ui.until(lambda: app.state_name == "thanks", 5, "the thank-you screen")
            await shoot("thanks")
            await ui.tap(app.screen("thanks").ids.back)
            await ui.until(lambda: app.state_name == "start" and not station.in_call, 5, "start")

            await ui.tap(start.department_button("zeimu"))
            await ui.until(lambda: app.state_name == "result", 5, "the closed result")
            await shoot("result-closed")
            await ui.tap(app.screen("result").ids.back)

            await ui.until(lambda: app.state_name == "start", 5, "start")
            await ui.tap(start.department_button("juumin"))
            await ui.until(lambda: app.state_name == "result", 15, "the unanswered result")
            await shoot("result-unanswered")
            await ui.tap(app.screen("result").ids.back)

            await station.close()
            await ui.until(lambda: app.machine.availability("juumin") == "offline", 10, "presence offline")
            await shoot("start-offline")
            await ui.tap(start.department_button("juumin"))
            await ui.until(lambda: app.state_name == "result", 5, "the unavailable result")
            await shoot("result-unavailable")
            await ui.tap(app.screen("result").ids.back)
            await ui.until(lambda: app.state_name == "start", 5, "start")

            assert app.corner is not None
            await ui.hold(ui.window_pos(app.corner), lambda: app.state_name == "pin", 5, "the PIN screen")
            pad = app.screen("pin").ids.pad
            await shoot("pin")
            for key in "2468":
                pad.press(key)
            pad.press("ok")
            await ui.until(lambda: app.state_name == "tech", 5, "the technician menu")
            tech = app.screen("tech")
            await ui.until(lambda: tech.ids.camera_preview.frames_shown > 0, 5, "camera previews")
            await shoot("tech")
            await ui.tap(tech.ids.back)

            # The start-up screen lasts a fraction of a second in real life: show it directly.
            assert app.manager is not None
            app.manager.current = "starting"
            await ui.settle()
            await shoot("starting")
            app.manager.current = app.state_name
            await ui.settle()

            await srv.close()
            await ui.until(lambda: app.state_name == "out_of_service", 15, "out of service")
            await shoot("out-of-service")
    finally:
        await app.aclose()
        await station.close()
        await srv.close()
    return shots


async def screenshot_scenes(out_dir: Path) -> list[Path]:
    """Entry point for ``scripts/screenshots``."""
    return await counter_scenes(out_dir)

