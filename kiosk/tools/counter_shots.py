"""Screenshots of every counter screen (ja and en), for ``scripts/screenshots``.

Runs the real app against a real relay (in-process) and a headless staff station, and walks through
the screens with simulated touches, exactly as a resident would.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from kiosk.config import load_terminal_config
from kiosk.tools.scenes import small_media, window_sized
from kiosk.ui.screenshot import shoot_languages

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


# Departments of a large city hall, for the many-department scenes and tests (relay order = button order).
MANY_DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("soumu", "総務課", "General Affairs"),
    ("kikaku", "企画課", "Planning"),
    ("zaisei", "財政課", "Finance"),
    ("zeimu", "税務課", "Taxation"),
    ("juumin", "住民課", "Residents"),
    ("hoken", "保険年金課", "Insurance and Pensions"),
    ("fukushi", "福祉課", "Welfare"),
    ("kaigo", "介護保険課", "Long-term Care Insurance"),
    ("kosodate", "子育て支援課", "Child-rearing Support"),
    ("kenkou", "健康推進課", "Health Promotion"),
    ("kankyou", "環境課", "Environment"),
    ("nousei", "農政課", "Agriculture"),
    ("shoukou", "商工観光課", "Commerce and Tourism"),
    ("kensetsu", "建設課", "Construction"),
    ("toshi", "都市計画課", "City Planning"),
    ("suidou", "上下水道課", "Water and Sewerage"),
    ("kyouiku", "教育総務課", "Education"),
    ("gakkou", "学校教育課", "School Education"),
    ("shougai", "生涯学習課", "Lifelong Learning"),
    ("kaikei", "会計課", "Accounts"),
    ("senkyo", "選挙管理委員会", "Election Board"),
    ("nougyou", "農業委員会", "Agricultural Committee"),
    ("bousai", "防災課", "Disaster Prevention"),
    ("chiiki", "地域振興課", "Community Development"),
    ("keiyaku", "契約管財課", "Contracts and Property"),
    ("kyoudou", "市民協働課", "Civic Partnership"),
    ("kokusai", "国際交流課", "International Exchange"),
    ("shougaifuku", "障がい福祉課", "Disability Welfare"),
    ("koureisha", "高齢者支援課", "Senior Support"),
    ("jinji", "人事課", "Personnel"),
)


def with_many_departments(relay_cfg: Any, count: int) -> Any:
    """A relay config whose first office offers ``count`` departments (1..30), every counter offering all.

    The office's own departments come first; the others copy the first department's hours and fallback.
    """
    from relay_server.config import Department

    if not 1 <= count <= len(MANY_DEPARTMENTS):
        raise ValueError(f"count must be 1..{len(MANY_DEPARTMENTS)}, got {count}")
    first = next(iter(relay_cfg.departments.values()))
    office = relay_cfg.offices[first.office]
    departments = {d.id: d for d in relay_cfg.departments.values() if d.office == office.id}
    departments = dict(list(departments.items())[:count])
    for did, ja, en in MANY_DEPARTMENTS:
        if len(departments) >= count:
            break
        if did not in departments:
            departments[did] = Department(
                did,
                office.id,
                {"ja": ja, "en": en + ("" if "委員会" in ja else " Division")},
                first.hours,
                dict(first.fallback),
                dict(office.name),
            )
    terminals = {
        tid: replace(
            t,
            departments=tuple(departments)
            if t.role != "lamp"
            else tuple(d for d in t.departments if d in departments),
        )
        for tid, t in relay_cfg.terminals.items()
    }
    return replace(relay_cfg, departments=departments, offices={office.id: office}, terminals=terminals)


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
    relay_cfg = replace(
        relay_cfg,
        database="",
        port=0,
        ring_timeout=5.0,
        departments={**relay_cfg.departments, "zeimu": closed},
    )
    srv = await RelayServer(relay_cfg).start(host="127.0.0.1", port=0)
    office = small_media(load_terminal_config(ROOT / "config" / "office.toml", "office"), (640, 360), None)
    station = HeadlessStation(office, auto_answer=None, url=srv.url)
    await station.start()
    await station.wait_up()
    counter = load_terminal_config(ROOT / "config" / "counter.toml", "counter")
    counter = counter.with_overrides(
        ui=replace(
            counter.ui,
            ring_sound=False,
            idle_timeout=600,
            result_timeout=20,
            thanks_timeout=8,
            fullscreen=False,
        )
    )
    counter = small_media(counter, (640, 360), (1280, 720))
    counter = window_sized(counter)
    app = CounterApp(counter, url=srv.url, hold_time=0.5)
    shots: list[Path] = []

    async def shoot(name: str) -> None:
        shots.extend(await shoot_languages(app, ui, out_dir, f"{prefix}-{name}"))

    try:
        async with running_app(app) as ui:
            start = app.screen("start")
            await ui.until(
                lambda: (
                    app.state_name == "start"
                    and app.machine.availability("juumin") == "available"
                    and app.machine.availability("zeimu") == "closed"
                ),
                15,
                "the start screen",
            )
            await shoot("start")

            await ui.tap(start.department_button("juumin"))
            await ui.until(lambda: app.machine.call is not None and app.machine.call.id, 5, "ringing")
            await shoot("calling")

            assert app.machine.call is not None
            await station.answer(app.machine.call.id)
            in_call = app.screen("in_call")
            await ui.until(
                lambda: (
                    app.state_name == "in_call"
                    and in_call.remote_views()
                    and all(v.frames_shown > 2 for v in in_call.remote_views())
                    and in_call.ids.document_view.frames_shown > 0
                    and in_call.ids.self_view.frames_shown > 0
                ),
                60,
                "video in the call",
            )
            await shoot("in-call")

            # A media outage: the station's media dies and, while it ignores the new offers (a link that is still
            # down), the kiosk shows its calm "reconnecting" line; then the media is rebuilt.
            assert station.session is not None
            deliver = station.session.on_message

            async def hold(msg: Any) -> None:
                return None

            station.session.on_message = hold  # type: ignore[method-assign]
            await station.session.mesh.peers[app.machine.terminal].pc.close()
            await ui.until(
                lambda: app.reconnecting and not any(v.has_frame for v in in_call.remote_views()),
                10,
                "the reconnecting state",
            )
            await shoot("in-call-reconnecting")
            # Back on: the held offers are stale; the next restart request or attempt (each within 6 s) rebuilds it.
            station.session.on_message = deliver  # type: ignore[method-assign]
            await ui.until(
                lambda: not app.reconnecting and all(v.has_frame for v in in_call.remote_views()),
                60,
                "pictures again",
            )

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
            await ui.until(lambda: app.state_name == "result", 45, "the unanswered result")
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


async def start_scenes(out_dir: Path, *, prefix: str = "counter-start") -> list[Path]:
    """The start screen at 4, 12 and 24 departments (both pages), and a counter of two towns (both steps)."""
    from relay_server.config import load_relay_config

    shots: list[Path] = []
    one_town = load_relay_config(ROOT / "config" / "relay.toml")
    scenes: list[tuple[str, Any, tuple[str, ...]]] = [
        (f"{n}", with_many_departments(one_town, n), ("office.toml",)) for n in (4, 12, 24)
    ]
    scenes.append(
        (
            "two-towns",
            load_relay_config(ROOT / "config" / "relay-two-towns.toml"),
            ("office.toml", "office-3.toml"),
        )
    )
    for name, relay_cfg, offices in scenes:
        shots.extend(await _start_scene(out_dir, prefix, name, relay_cfg, offices))
    return shots


async def _start_scene(
    out_dir: Path, prefix: str, name: str, relay_cfg: Any, offices: tuple[str, ...]
) -> list[Path]:
    from kiosk.apps.counter import CounterApp
    from kiosk.headless import HeadlessStation
    from kiosk.ui.driver import running_app
    from relay_server.server import RelayServer

    shots: list[Path] = []
    srv = await RelayServer(replace(relay_cfg, database="", port=0)).start(host="127.0.0.1", port=0)
    stations = []
    counter = load_terminal_config(ROOT / "config" / "counter.toml", "counter")
    counter = small_media(
        counter.with_overrides(ui=replace(counter.ui, ring_sound=False, idle_timeout=600, fullscreen=False)),
        (160, 90),
        (320, 180),
    )
    app = CounterApp(window_sized(counter), url=srv.url)
    try:
        for office in offices:
            cfg = small_media(load_terminal_config(ROOT / "config" / office, "office"), (160, 90), None)
            station = HeadlessStation(cfg, auto_answer=None, url=srv.url)
            await station.start()
            await station.wait_up()
            stations.append(station)
        async with running_app(app) as ui:
            start = app.screen("start")
            await ui.until(
                lambda: (
                    app.state_name == "start"
                    and "available" in app.machine.presence.values()
                    and "offline" not in app.machine.presence.values()
                ),
                15,
                "the start screen",
            )
            if name == "two-towns":
                shots.extend(await shoot_languages(app, ui, out_dir, f"{prefix}-two-towns"))
                await ui.tap(start.town_button("tobetsu"))
                await ui.until(lambda: start.mode == "departments", 5, "Tobetsu's departments")
                shots.extend(await shoot_languages(app, ui, out_dir, f"{prefix}-two-towns-tobetsu"))
                return shots
            shots.extend(await shoot_languages(app, ui, out_dir, f"{prefix}-{name}"))
            if start.pages > 1:
                await ui.tap(start.ids.page_next)
                await ui.until(lambda: start.page == 1, 5, "page 2")
                shots.extend(await shoot_languages(app, ui, out_dir, f"{prefix}-{name}-page2"))
            if name == "12":
                app.set_large_text(True)
                await ui.frames(2)
                shots.extend(await shoot_languages(app, ui, out_dir, f"{prefix}-{name}-large-text"))
    finally:
        await app.aclose()
        for station in stations:
            await station.close()
        await srv.close()
    return shots


async def screenshot_scenes(out_dir: Path) -> list[Path]:
    """Entry point for ``scripts/screenshots``."""
    return await counter_scenes(out_dir) + await start_scenes(out_dir)
