"""Screenshots of papers, marks and the written conversation (筆談) on both sides, for ``scripts/screenshots``.

Runs the real counter app against a real relay with a headless staff station whose :class:`StationAssist` hands
over a paper, marks the document picture and writes; then the real station app against a headless counter whose
:class:`CounterAssist` answers. Each state is saved in Japanese and English.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from kiosk.config import load_terminal_config
from kiosk.tools.scenes import small_media, window_sized
from kiosk.ui.screenshot import shoot_languages

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "config" / "papers" / "記入例 住民異動届.pdf"
WAIT = 120.0


async def counter_assist_scenes(out_dir: Path) -> list[Path]:
    """``counter-paper``, ``counter-marks`` and ``counter-writing`` in both languages."""
    from kiosk.apps.counter import CounterApp
    from kiosk.assist.channel import StationAssist
    from kiosk.assist.messages import Mark
    from kiosk.headless import HeadlessStation
    from kiosk.ui.driver import running_app
    from kiosk.video.papers import load_paper
    from relay_server.config import load_relay_config
    from relay_server.server import RelayServer

    relay_cfg = replace(load_relay_config(ROOT / "config" / "relay.toml"), database="", port=0)
    srv = await RelayServer(relay_cfg).start(host="127.0.0.1", port=0)
    office = small_media(load_terminal_config(ROOT / "config" / "office.toml", "office"), (640, 360), None)
    station = HeadlessStation(office, auto_answer=None, url=srv.url)
    counter = load_terminal_config(ROOT / "config" / "counter.toml", "counter")
    counter = counter.with_overrides(
        ui=replace(counter.ui, ring_sound=False, idle_timeout=600, fullscreen=False)
    )
    app = CounterApp(small_media(window_sized(counter), (640, 360), (1280, 720)), url=srv.url)
    shots: list[Path] = []
    try:
        await station.start()
        await station.wait_up()
        async with running_app(app) as ui:
            await ui.until(
                lambda: app.state_name == "start" and app.machine.availability("juumin") == "available",
                WAIT,
                "the start screen",
            )
            await ui.frames(3)
            await ui.tap(app.screen("start").department_button("juumin"))
            await ui.until(lambda: app.machine.call is not None and app.machine.call.id, WAIT, "ringing")
            assert app.machine.call is not None
            session = await station.answer(app.machine.call.id)
            staff = StationAssist.attach(session)
            in_call = app.screen("in_call")
            await ui.until(
                lambda: (
                    app.session is not None
                    and app.session.control.members
                    and in_call.ids.document_view.frames_shown > 0
                    and all(v.frames_shown > 2 for v in in_call.remote_views())
                ),
                WAIT,
                "the call",
            )
            # Rendered off the event loop, as the station app does (pdftoppm takes a while).
            pages = await asyncio.get_running_loop().run_in_executor(None, load_paper, PAPER)
            pid = staff.send_paper(pages, PAPER.stem)
            await ui.until(
                lambda: (
                    app.paper_open
                    and in_call.ids.paper_panel.ids.paper_view.frame_size[0] > 0
                    and staff.papers[pid].received == set(range(len(pages)))
                ),
                WAIT,
                "the paper, every page",
            )
            await ui.frames(3)
            shots.extend(await shoot_languages(app, ui, out_dir, "counter-paper"))
            await ui.tap(in_call.ids.paper_panel.ids.paper_close)
            await ui.until(
                lambda: not app.paper_open and staff.papers[pid].shown_page is None, WAIT, "the paper closed"
            )
            # What a resident sees when staff point at the paper under the document camera: the marks over the
            # counter's own document preview.
            staff.set_marks([Mark("circle", 0.47, 0.33, r=0.09), Mark("arrow", 0.2, 0.75, x2=0.36, y2=0.5)])
            await ui.until(
                lambda: (
                    len(in_call.ids.document_marks.drawn) == 2
                    and in_call.ids.document_view.frames_shown > 0
                    and in_call.ids.document_marks.height > 1
                ),
                WAIT,
                "the marks over the document preview",
            )
            assert not app.paper_open, "the marks scene must show the document preview, not the paper"
            await ui.frames(3)
            shots.extend(await shoot_languages(app, ui, out_dir, "counter-marks"))
            staff.set_marks([])
            staff.send_text("ご住所を書いてください")
            await ui.until(lambda: app.writing_on and app.staff_text, WAIT, "the writing panel")
            assert app.assist is not None
            for i in range(12):  # a little handwriting on the pad: 「当別」 would be too much to fake; a wave
                app.assist.stroke_to(0.1 + 0.065 * i, 0.5 + (0.15 if i % 2 else -0.15), new=i == 0)
            app.assist.end_stroke()
            await ui.frames(3)
            shots.extend(await shoot_languages(app, ui, out_dir, "counter-writing"))
            await ui.tap(in_call.ids.hang_up)
            await ui.until(lambda: app.state_name == "thanks", WAIT, "thanks")
            await session.ended.wait()
    finally:
        await app.aclose()
        await station.close()
        await srv.close()
    return shots


async def office_assist_scenes(out_dir: Path) -> list[Path]:
    """``office-assist`` (papers and writing) and ``office-document-marks`` in both languages."""
    from kiosk.apps.office_ui import OfficeApp
    from kiosk.assist.channel import CounterAssist
    from kiosk.headless import HeadlessCounter
    from kiosk.ui.driver import running_app
    from relay_server.config import load_relay_config
    from relay_server.server import RelayServer

    relay_cfg = replace(load_relay_config(ROOT / "config" / "relay.toml"), database="", port=0)
    srv = await RelayServer(relay_cfg).start(host="127.0.0.1", port=0)
    counter_cfg = small_media(
        load_terminal_config(ROOT / "config" / "counter.toml", "counter"), (640, 360), (1280, 720)
    )
    resident = HeadlessCounter(counter_cfg, url=srv.url)
    office = load_terminal_config(ROOT / "config" / "office.toml", "office")
    office = office.with_overrides(ui=replace(office.ui, ring_sound=False, fullscreen=False))
    app = OfficeApp(small_media(window_sized(office), (640, 360), None), url=srv.url)
    shots: list[Path] = []
    try:
        await resident.start()
        await resident.wait_up()
        async with running_app(app) as ui:
            await ui.until(lambda: app.state_name == "waiting" and app.link_ok, WAIT, "the waiting screen")
            call = await resident.place_call("juumin")
            session = resident.session
            assert session is not None
            counter = CounterAssist(lambda msgs: session.control.send(msgs))
            session.control.on_message = counter.on_message
            waiting = app.screen("waiting")
            await ui.until(lambda: any(c.call == call for c in waiting.cards()), WAIT, "the ringing card")
            await ui.frames(2)
            await ui.tap(waiting.card(call).ids.answer)
            await ui.until(
                lambda: app.assist is not None and app.session is not None and app.session.control.members,
                WAIT,
                "the call",
            )
            await ui.tap(app.screen("in_call").ids.papers)
            screen = app.screen("assist")
            await ui.until(lambda: app.screen_name == "assist", WAIT, "the papers and writing view")
            await ui.tap(screen.paper_button(PAPER.stem))
            await ui.until(
                lambda: counter.page is not None and len(counter.papers[counter.page.id]) == 2,
                WAIT,
                "the paper at the counter",
            )
            page = counter.page
            assert page is not None
            counter.print_status(page.id, 0, "printed")
            await ui.tap(screen.ids.writing_toggle)
            screen.ids.text_input.text = "ご住所を書いてください"
            await ui.tap(screen.ids.send)
            await ui.until(lambda: counter.last_text, WAIT, "the text at the counter")
            counter.reply("again")
            counter.reply("yes")
            for i in range(12):
                counter.stroke_to(0.1 + 0.065 * i, 0.5 + (0.15 if i % 2 else -0.15), new=i == 0)
            counter.end_stroke()
            await ui.until(
                lambda: (
                    app.reply_text
                    and app.assist is not None
                    and len(app.assist.strokes.get(0, [])) == 12
                    and "印刷しました" in app.paper_status
                ),
                WAIT,
                "replies, handwriting, printed",
            )
            await ui.frames(3)
            shots.extend(await shoot_languages(app, ui, out_dir, "office-assist"))
            await ui.tap(screen.ids.back)
            await ui.tap(app.screen("in_call").ids.fullscreen)
            doc = app.screen("document")
            await ui.until(
                lambda: app.screen_name == "document" and doc.ids.doc_view.has_frame, WAIT, "the papers"
            )
            await ui.tap(doc.ids.mark_circle)
            from kiosk.assist.marks import fit_rect, to_screen

            view = doc.ids.doc_view
            rect = fit_rect(view.frame_size[0], view.frame_size[1], view.x, view.y, view.width, view.height)
            assert rect is not None
            touch = await ui.touch_down(to_screen(0.47, 0.33, rect))
            touch.touch_move(*to_screen(0.56, 0.33, rect))
            await ui.touch_up(touch)
            await ui.until(lambda: len(counter.document_marks) == 1, WAIT, "the circle at the counter")
            await ui.frames(3)
            shots.extend(await shoot_languages(app, ui, out_dir, "office-document-marks"))
            await ui.tap(doc.ids.back)
            await resident.end()
            await ui.until(lambda: app.state_name == "waiting", WAIT, "the call over")
            await session.ended.wait()
    finally:
        await app.aclose()
        await resident.close()
        await srv.close()
    return shots


async def screenshot_scenes(out_dir: Path) -> list[Path]:
    """Entry point for ``scripts/screenshots``."""
    return await counter_assist_scenes(out_dir) + await office_assist_scenes(out_dir)
