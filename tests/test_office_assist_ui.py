"""The staff station's controls for papers, marks and writing, in a real window against a real relay and a real
resident counter (in-process, real aiortc, its CounterAssist on the data channel): hand over a PDF from the
station's folder and see it arrive, shown and printed; circle a spot on the document picture and the counter gets
it at that place; type to the resident and see the replies and handwriting."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from helpers import make_relay_config  # noqa: E402

from kiosk.apps.office_ui import OfficeApp  # noqa: E402
from kiosk.assist.channel import CounterAssist  # noqa: E402
from kiosk.assist.marks import fit_rect, to_screen  # noqa: E402
from kiosk.config import load_terminal_config  # noqa: E402
from kiosk.headless import HeadlessCounter  # noqa: E402
from kiosk.tools.scenes import small_media  # noqa: E402
from kiosk.ui.driver import running_app, visible_texts  # noqa: E402
from relay_server.server import RelayServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(900)  # a whole call: minutes on a loaded 2-core machine
@pytest.mark.asyncio
async def test_station_hands_over_a_paper_marks_the_document_and_writes() -> None:
    """Papers, marks and 筆談 from the station's own screens, checked at the counter's end of the data channel."""
    relay = await RelayServer(make_relay_config()).start(host="127.0.0.1", port=0)
    counter_cfg = small_media(
        load_terminal_config(ROOT / "config" / "counter.toml", "counter"), (160, 90), (320, 180)
    )
    resident = await HeadlessCounter(counter_cfg, url=relay.url).start()
    office = load_terminal_config(ROOT / "config" / "office.toml", "office")
    office = office.with_overrides(ui=replace(office.ui, ring_sound=False, width=1280, height=800))
    app = OfficeApp(small_media(office, (160, 90), None), url=relay.url)
    try:
        await resident.wait_up()
        async with running_app(app) as ui:
            await ui.until(lambda: app.state_name == "waiting" and app.link_ok, 60, "the waiting screen")
            call = await resident.place_call("juumin")
            session = resident.session
            assert session is not None
            counter = CounterAssist(lambda msgs: session.control.send(msgs))
            session.control.on_message = counter.on_message
            waiting = app.screen("waiting")
            await ui.until(lambda: any(c.call == call for c in waiting.cards()), 60, "the ringing card")
            await ui.frames(2)
            await ui.tap(waiting.card(call).ids.answer)
            await ui.until(
                lambda: (
                    app.state_name == "in_call"
                    and app.assist is not None
                    and app.session is not None
                    and app.session.control.members
                ),
                60,
                "the call with its data channel",
            )

            # A paper from the folder: rendered, handed over, arrived, shown, printed (as the counter reports).
            await ui.tap(app.screen("in_call").ids.papers)
            screen = app.screen("assist")
            await ui.until(lambda: app.screen_name == "assist", 60, "the papers and writing view")
            await ui.tap(screen.paper_button("記入例 住民異動届"))
            await ui.until(
                lambda: (
                    counter.page is not None
                    and counter.page_count(counter.page.id) == 2
                    and len(counter.papers[counter.page.id]) == 2
                ),
                60,
                "both pages at the counter",
            )
            await ui.until(
                lambda: (
                    "2/2ページ届きました" in app.paper_status and "1 ページ目を表示中" in app.paper_status
                ),
                60,
                "the station told the paper arrived and is shown",
            )
            page = counter.page
            assert page is not None and page.title == "記入例 住民異動届" and page.width > 800
            counter.turn_page(1)
            counter.print_status(page.id, 1, "failed", "out of paper, printer offline", "out_of_paper")
            await ui.until(
                lambda: "2 ページ目を印刷できませんでした：用紙切れ" in screen.ids.paper_status.text,
                60,
                "why it did not print",
            )
            # Staff switch the station to English: every status line follows, the reason too.
            app.set_language("en")
            await ui.frames(2)
            lines = screen.ids.paper_status.text.splitlines()
            assert lines == [
                "“記入例 住民異動届”: 2 of 2 pages arrived",
                "The resident sees page 2",
                "Page 2 did not print: out of paper",
            ], lines
            counter.print_status(page.id, 0, "printed")
            await ui.until(
                lambda: "Page 1 printed" in screen.ids.paper_status.text, 60, "a later status in English"
            )
            app.set_language("ja")
            await ui.frames(2)
            assert screen.ids.paper_status.text.splitlines()[-2:] == [
                "1 ページ目を印刷しました",
                "2 ページ目を印刷できませんでした：用紙切れ",
            ]
            await ui.tap(screen.ids.take_back)
            await ui.until(lambda: counter.page is None and not counter.papers, 60, "the paper taken back")

            # Writing both ways.
            await ui.tap(screen.ids.writing_toggle)
            await ui.until(lambda: counter.writing, 60, "writing on at the counter")
            screen.ids.text_input.text = "お名前を書いてください"
            await ui.tap(screen.ids.send)
            await ui.until(
                lambda: counter.last_text == "お名前を書いてください", 60, "the text at the counter"
            )
            counter.reply("slowly")
            await ui.until(
                lambda: "住民の返事：ゆっくり" in visible_texts(screen), 60, "the reply at the station"
            )
            for i in range(6):
                counter.stroke_to(0.1 + 0.1 * i, 0.5, new=i == 0)
            counter.end_stroke()
            await ui.until(
                lambda: app.assist is not None and len(app.assist.strokes.get(0, [])) == 6,
                60,
                "the handwriting at the station",
            )
            await ui.tap(screen.ids.back)

            # A circle on the document picture, full screen.
            await ui.tap(app.screen("in_call").ids.fullscreen)
            doc = app.screen("document")
            await ui.until(
                lambda: app.screen_name == "document" and doc.ids.doc_view.has_frame,
                60,
                "the papers full screen",
            )
            await ui.tap(doc.ids.mark_circle)
            view = doc.ids.doc_view
            rect = fit_rect(view.frame_size[0], view.frame_size[1], view.x, view.y, view.width, view.height)
            assert rect is not None
            touch = await ui.touch_down(to_screen(0.6, 0.3, rect))
            touch.touch_move(*to_screen(0.7, 0.3, rect))
            await ui.frames(1)
            await ui.touch_up(touch)
            await ui.until(lambda: len(counter.document_marks) == 1, 60, "the circle at the counter")
            mark = counter.document_marks[0]
            assert mark.kind == "circle" and (mark.x, mark.y) == pytest.approx((0.6, 0.3), abs=0.01)
            assert mark.r == pytest.approx(0.1, abs=0.01)
            assert len(doc.ids.mark_pad.drawn) == 1  # staff see what they placed
            counter.clear_document_marks("moved")
            await ui.until(
                lambda: not doc.ids.mark_pad.drawn and "書類が動いた" in app.marks_note,
                60,
                "staff told the paper moved",
            )
            await ui.tap(doc.ids.back)
            await resident.end()
            await ui.until(
                lambda: app.state_name == "waiting" and app.assist is None, 60, "the call over, wiped"
            )
            if resident.session is not None:
                await resident.session.ended.wait()
    finally:
        await app.aclose()
        await resident.close()
        await relay.close()
