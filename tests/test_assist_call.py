"""Done-when test of issue 16: a real call (the counter app in a real window, a staff station's session, a real
relay, real aiortc over loopback) in which the station hands over a PDF page, the counter shows it and prints it to
a real CUPS PDF printer (the produced PDF checked), staff marks appear on the counter's document preview at the
right place and go when the paper moves, and a written conversation runs both ways; everything is wiped at the end."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

import asyncio  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from printing import OUT_DIR, pdf_queue, render_gray, same_picture  # noqa: E402
from ui_counter import ROOT, counter_config, office_config, relay_config  # noqa: E402

from kiosk.apps.counter import CounterApp  # noqa: E402
from kiosk.assist.channel import PrintReport, StationAssist  # noqa: E402
from kiosk.assist.marks import fit_rect, to_screen  # noqa: E402
from kiosk.assist.messages import Mark  # noqa: E402
from kiosk.config import PrinterConfig  # noqa: E402
from kiosk.headless import HeadlessStation  # noqa: E402
from kiosk.ui.driver import running_app, visible_texts  # noqa: E402
from kiosk.ui.screenshot import save_screenshot  # noqa: E402
from kiosk.video.papers import load_paper  # noqa: E402
from relay_server.server import RelayServer  # noqa: E402

PAPER = ROOT / "config" / "papers" / "記入例 住民異動届.pdf"


def newest_pdf(since: float) -> Path | None:
    found = [p for p in OUT_DIR.glob("*job_*.pdf") if p.stat().st_mtime >= since - 1 and p.stat().st_size > 0]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


@pytest.mark.timeout(900)  # a whole call with printing: minutes on a loaded 2-core machine
@pytest.mark.asyncio
async def test_paper_print_marks_and_writing_in_a_real_call(tmp_path: Path) -> None:
    """Papers, printing, marks and 筆談 across a real call, then nothing of it left on the counter."""
    relay = await RelayServer(relay_config()).start(host="127.0.0.1", port=0)
    station = HeadlessStation(office_config(), auto_answer=None, url=relay.url)
    with pdf_queue() as queue:
        config = counter_config(idle_timeout=600).with_overrides(printer=PrinterConfig(queue, timeout=150))
        app = CounterApp(config, url=relay.url)
        try:
            await station.start()
            await station.wait_up()
            async with running_app(app) as ui:
                await ui.until(
                    lambda: app.state_name == "start" and app.machine.availability("juumin") == "available",
                    15,
                    "start",
                )
                await ui.frames(3)  # the start screen laid out: its buttons are the ones on screen
                await ui.tap(app.screen("start").department_button("juumin"))
                await ui.until(lambda: app.machine.call is not None and app.machine.call.id, 60, "ringing")
                assert app.machine.call is not None
                session = await station.answer(app.machine.call.id)
                staff = StationAssist.attach(session)
                counter_id = app.machine.terminal
                await ui.until(
                    lambda: (
                        counter_id in session.control.members
                        and app.session is not None
                        and app.session.control.members
                    ),
                    120,
                    "the data channel open on both sides",
                )

                # -- a PDF page handed over, shown large, printed --------------------------------
                page = (await asyncio.get_running_loop().run_in_executor(None, load_paper, PAPER))[0]
                pid = staff.send_paper([page], "記入例 住民異動届")
                in_call = app.screen("in_call")
                view = in_call.ids.paper_panel.ids.paper_view
                await ui.until(
                    lambda: app.paper_open and list(view.frame_size) == [page.width, page.height],
                    120,
                    "the paper on the counter",
                )
                await ui.until(
                    lambda: staff.papers[pid].received == {0} and staff.papers[pid].shown_page == 0,
                    60,
                    "staff told the page arrived and is shown",
                )
                assert bytes(app.assist.page.data) == page.data
                assert view.width > in_call.width * 0.45, "the paper is shown large"
                assert "職員からの書類：記入例 住民異動届" in visible_texts(in_call)
                started = time.time()
                await ui.tap(in_call.ids.paper_panel.ids.print)
                await ui.until(
                    lambda: staff.papers[pid].printed.get(0, PrintReport("")).state in ("printed", "failed"),
                    200,
                    "the print result at the station",
                )
                assert staff.papers[pid].printed[0] == PrintReport("printed"), staff.papers[pid].printed
                await ui.until(
                    lambda: "印刷しました" in app.print_message, 60, "the resident told it printed"
                )
                pdf = newest_pdf(started)
                assert pdf is not None, f"no PDF from cups-pdf in {OUT_DIR}"
                try:
                    original = cv2.imdecode(np.frombuffer(page.data, np.uint8), cv2.IMREAD_GRAYSCALE)
                    assert original is not None
                    assert same_picture(render_gray(pdf), np.asarray(original)) > 0.8
                finally:
                    pdf.unlink()
                await ui.tap(in_call.ids.paper_panel.ids.paper_close)
                await ui.until(
                    lambda: not app.paper_open and staff.papers[pid].shown_page is None, 60, "closed"
                )

                # -- staff marks on the document picture, at the right place ----------------------
                staff.set_marks([Mark("circle", 0.5, 0.4, r=0.08), Mark("arrow", 0.2, 0.8, x2=0.35, y2=0.6)])
                layer = in_call.ids.document_marks
                await ui.until(lambda: len(layer.drawn) == 2, 60, "the marks on the counter")
                doc = in_call.ids.document_view
                rect = fit_rect(doc.frame_size[0], doc.frame_size[1], doc.x, doc.y, doc.width, doc.height)
                assert rect is not None and tuple(doc.frame_size) == (320, 180)
                circle = layer.drawn[0]
                assert (circle.x, circle.y) == pytest.approx(to_screen(0.5, 0.4, rect), abs=1)
                assert circle.r == pytest.approx(0.08 * rect.w, abs=1)
                await ui.frames(2)
                shot = save_screenshot(tmp_path / "marks.png")
                bgr = cv2.imread(str(shot))
                assert bgr is not None
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                wx, wy = doc.to_window(circle.x + circle.r, circle.y)
                r, g, b = rgb[int(rgb.shape[0] - wy), int(wx)]
                assert r > 150 and g < 120 and b < 120, (
                    f"no red mark on screen at the circle's rim: {(r, g, b)}"
                )
                # The paper turns under the camera: the marks no longer point at anything and go.
                app.session.set_document_rotation(180)
                await ui.until(
                    lambda: not layer.drawn and staff.marks_cleared_reason == "moved",
                    60,
                    "marks cleared when the paper moved",
                )
                app.session.set_document_rotation(0)

                # -- written conversation both ways ------------------------------------------------
                staff.send_text("ご住所を書いてください")
                await ui.until(
                    lambda: app.writing_on and "ご住所を書いてください" in visible_texts(in_call),
                    60,
                    "staff's text large on the counter",
                )
                assert in_call.ids.writing.ids.staff_text.font_size >= app.sizes.font_huge
                writing = in_call.ids.writing
                await ui.until(
                    lambda: writing.height > app.sizes.mm(80) and writing.ids.reply_again.y > writing.y,
                    60,
                    "the writing panel laid out",
                )
                await ui.tap(writing.ids.reply_again)
                await ui.tap(in_call.ids.writing.ids.reply_yes)
                await ui.until(lambda: staff.replies == ["again", "yes"], 60, "the replies at the station")
                pad = in_call.ids.writing.ids.pad
                touch = await ui.touch_down(ui.window_pos(pad, (0.2, 0.5)))
                for i in range(1, 9):
                    touch.touch_move(*ui.window_pos(pad, (0.2 + 0.07 * i, 0.5 + 0.03 * i)))
                    await ui.frames(1)
                await ui.touch_up(touch)
                await ui.until(
                    lambda: sum(map(len, staff.strokes.values())) == 9, 60, "the handwriting at the station"
                )
                first = staff.strokes[0][0]
                assert first == pytest.approx((0.2, 0.5), abs=0.01)
                await ui.tap(in_call.ids.writing.ids.pad_clear)
                await ui.until(lambda: not staff.strokes, 60, "the pad cleared at the station too")

                # -- the end: nothing stays -----------------------------------------------------------
                held = app.assist.papers[pid][0].data
                await ui.tap(in_call.ids.hang_up)
                await ui.until(lambda: app.state_name == "thanks", 60, "thanks")
                assert (
                    app.assist is None
                    and not app.paper_open
                    and not app.document_marks
                    and not app.staff_text
                )
                assert set(held) == {0}, "the page's bytes are zeroed"
                # Let the station finish closing its peer connection before the test tears down (cancelling the
                # session's worker in the middle of RTCPeerConnection.close() leaves aiortc's decoder threads behind).
                await asyncio.wait_for(session.ended.wait(), 60)
                await ui.until(
                    lambda: session.connection_state(counter_id) is None, 60, "the station's peer closed"
                )
        finally:
            await app.aclose()
            await station.close()
            await relay.close()
