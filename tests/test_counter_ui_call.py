"""The counter kiosk in a real window, driven by simulated touches, against a real relay and a headless
staff station: a whole answered call, cancel, unanswered, closed, unavailable, idle reset, touch sizes."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

from collections.abc import AsyncIterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402
from ui_counter import button_widgets, counter_config, office_config, relay_config  # noqa: E402

from kiosk.apps.counter import CounterApp  # noqa: E402
from kiosk.headless import HeadlessCounter, HeadlessStation  # noqa: E402
from kiosk.tools.office_shots import relay_with_second_counter, second_counter_config  # noqa: E402
from kiosk.ui.driver import UiDriver, running_app, visible_texts  # noqa: E402
from relay_server.server import RelayServer  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Rig:
    """One relay, one kiosk app and its driver, and the staff stations currently online."""

    relay: RelayServer
    app: Any
    ui: UiDriver
    stations: list[HeadlessStation]

    async def add_station(
        self, config: str = "office.toml", auto_answer: float | None = 0.0
    ) -> HeadlessStation:
        station = HeadlessStation(office_config(config), auto_answer=auto_answer, url=self.relay.url)
        await station.start()
        await station.wait_up()
        self.stations.append(station)
        return station

    async def remove_stations(self) -> None:
        for s in self.stations:
            await s.close()
        self.stations.clear()

    async def at_start(self) -> None:
        """Wait until the kiosk shows the start screen with no call left."""
        await self.ui.until(
            lambda: self.app.state_name == "start" and self.app.machine.call is None, 10, "the start screen"
        )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig() -> AsyncIterator[Rig]:
    relay = await RelayServer(
        relay_with_second_counter(relay_config(closed=("zeimu",), ring_timeout=1.5))
    ).start(host="127.0.0.1", port=0)
    app = CounterApp(
        counter_config(idle_timeout=3.0, result_timeout=2.0, thanks_timeout=2.0), url=relay.url, hold_time=0.3
    )
    try:
        async with running_app(app) as ui:
            r = Rig(relay, app, ui, [])
            await r.add_station()
            await ui.until(
                lambda: app.state_name == "start" and app.machine.availability("juumin") == "available",
                15,
                "start with juumin available",
            )
            yield r
            await r.remove_stations()
    finally:
        await app.aclose()
        await relay.close()


async def test_start_screen_shows_departments_notice_and_language_switch(rig: Rig) -> None:
    """Start shows one button per department (closed ones greyed with the reason) and the consultation notice."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    start = app.screen("start")
    texts = visible_texts(start)
    for name in ("住民課", "税務課", "保健福祉課", "建設課", "Residents Division"):
        assert name in texts
    assert "この窓口はご相談専用です。申請や証明書の発行はできません" in texts
    assert start.department_button("zeimu").status == "closed" and "受付時間外です" in texts
    await ui.tap(start.ids.language.ids.lang_en)
    await ui.until(lambda: "Taxation Division" in visible_texts(start) and app.lang == "en", 5, "English")
    assert start.ids.notice.text == (
        "This counter is for consultation only. Applications and certificates are not "
        "handled here\nこの窓口はご相談専用です。申請や証明書の発行はできません"
    ), "in English the notice stands beside the Japanese, not instead of it"
    await ui.tap(start.ids.language.ids.lang_ja)
    await ui.until(lambda: app.lang == "ja", 5, "Japanese again")


async def test_answered_call_shows_video_then_thanks_and_forgets_everything(rig: Rig) -> None:
    """start → call → answered by the auto-answering station → live remote video → hang up → thanks → start."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    await ui.tap(app.screen("start").department_button("juumin"))
    await ui.until(lambda: app.state_name in ("calling", "in_call"), 5, "calling")
    in_call = app.screen("in_call")
    await ui.until(
        lambda: app.state_name == "in_call" and app.manager.current == "in_call", 10, "the call screen"
    )
    await ui.until(
        lambda: in_call.remote_views() and in_call.remote_views()[0].frames_shown >= 3,
        15,
        "remote video frames",
    )
    first = in_call.remote_views()[0].frames_shown
    await ui.until(
        lambda: in_call.remote_views()[0].frames_shown > first + 2, 10, "the remote video to keep moving"
    )
    await ui.until(
        lambda: in_call.ids.document_view.frames_shown > 0 and in_call.ids.self_view.frames_shown > 0,
        10,
        "document camera and self-view",
    )
    texts = visible_texts(in_call)
    assert "書類を\nカメラの下に置いてください" in texts and "住民課とお話し中です" in texts
    assert "職員に見えている書類" in texts and "あなた" in texts, "the previews say whose picture they are"
    assert "参加者：あなた、職員 1" in texts
    await ui.tap(in_call.ids.mute)
    await ui.until(lambda: app.mic_muted and app.session is not None and app.session.mic_muted, 5, "muted")
    station = rig.stations[0]
    await ui.tap(in_call.ids.hang_up)
    await ui.until(
        lambda: app.state_name == "thanks" and app.manager.current == "thanks", 5, "thank-you screen"
    )
    thanks = visible_texts(app.screen("thanks"))
    assert "ご利用ありがとうございました" in thanks
    assert any(t.endswith("秒後に最初の画面に戻ります") for t in thanks), (
        "the resident sees it will go back by itself"
    )
    assert app.machine.call is None and app.session is None and app.members == []
    assert in_call.remote_views() == [] and not in_call.ids.document_view.has_frame
    assert not in_call.ids.self_view.has_frame
    await ui.until(lambda: not station.in_call, 5, "the station to see the call end")
    await ui.tap(app.screen("thanks").ids.back)
    await rig.at_start()


async def test_media_outage_shows_a_calm_reconnecting_state_then_pictures_again(rig: Rig) -> None:
    """When the media to the staff dies mid-call, the in-call screen says it is reconnecting (Japanese first, in
    English too), the session rebuilds the path by itself, and the picture comes back in the same call."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    station = rig.stations[0]
    try:
        await ui.tap(app.screen("start").department_button("juumin"))
        in_call = app.screen("in_call")
        await ui.until(
            lambda: (
                app.state_name == "in_call"
                and in_call.remote_views()
                and in_call.remote_views()[0].frames_shown >= 3
            ),
            30,
            "remote video",
        )
        call_id = app.machine.call.id
        assert station.session is not None
        await station.session.mesh.peers[
            app.machine.terminal
        ].pc.close()  # the station's media dies, nobody signals
        await ui.until(lambda: app.reconnecting, 15, "the reconnecting state")
        texts = visible_texts(in_call)
        assert "通信が一時的に途切れました。\n自動でつなぎ直しています。このままお待ちください" in texts
        app.lang = "en"
        await ui.until(
            lambda: (
                "The connection dropped for a moment.\nIt is reconnecting by itself; please wait"
                in visible_texts(in_call)
            ),
            5,
            "English",
        )
        app.lang = "ja"
        await ui.until(lambda: not app.reconnecting, 30, "media back")
        await ui.until(
            lambda: in_call.remote_views() and in_call.remote_views()[0].has_frame, 20, "the picture again"
        )
        assert app.state_name == "in_call" and app.machine.call is not None and app.machine.call.id == call_id
        assert in_call.ids.reconnecting.opacity == 0
        await ui.tap(in_call.ids.hang_up)
        await ui.until(lambda: app.state_name == "thanks", 5, "thank-you screen")
        assert not app.media_lost
        await ui.tap(app.screen("thanks").ids.back)
    finally:
        # Whatever happened, leave the shared rig idle for the next test.
        app.lang = "ja"
        if app.state_name in ("calling", "in_call"):
            app.hang_up()
        await ui.until(lambda: not station.in_call, 15, "the station to see the call end")
        if app.state_name == "thanks":
            await ui.tap(app.screen("thanks").ids.back)
    await rig.at_start()


async def test_colleague_joining_shows_up(rig: Rig) -> None:
    """A colleague invited into the call appears as a second video tile and in the member names."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    second = await rig.add_station("office-2.toml", auto_answer=None)
    try:
        await ui.tap(app.screen("start").department_button("juumin"))
        await ui.until(lambda: app.state_name == "in_call", 10, "the call")
        first = rig.stations[0]
        await ui.until(
            lambda: first.in_call and first.session is not None and first.session.call_id, 5, "answered"
        )
        second.auto_answer = 0.0
        await first.invite(terminal="office-tobetsu-2")
        in_call = app.screen("in_call")
        await ui.until(lambda: len(in_call.remote_views()) == 2, 10, "a second video tile")
        await ui.until(lambda: all(v.frames_shown > 0 for v in in_call.remote_views()), 15, "both videos")
        assert "参加者：あなた、職員 1、職員 2" in visible_texts(in_call)
        await ui.tap(in_call.ids.hang_up)
        await ui.until(lambda: app.state_name == "thanks", 5, "thanks")
    finally:
        await second.close()
        rig.stations.remove(second)
    await rig.at_start()


async def test_cancel_while_ringing_returns_to_start(rig: Rig) -> None:
    """The big cancel button on the calling screen ends the ringing call and returns to start."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    station = rig.stations[0]
    station.auto_answer = None
    try:
        await ui.tap(app.screen("start").department_button("juumin"))
        calling = app.screen("calling")
        await ui.until(
            lambda: app.manager.current == "calling" and app.machine.call is not None and app.machine.call.id,
            5,
            "ringing",
        )
        assert app.ringing and "住民課を呼び出しています" in visible_texts(calling)
        await ui.tap(calling.ids.cancel)
        await ui.until(lambda: app.manager.current == "start", 5, "start after cancel")
        assert not app.ringing and app.machine.call is None
    finally:
        station.auto_answer = 0.0


async def test_department_whose_staff_are_all_in_calls_shows_busy(rig: Rig) -> None:
    """While every station of a department is talking with another counter, its button says so (greyed, 'busy');
    when that call ends it is available again."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    start = app.screen("start")
    other = await HeadlessCounter(second_counter_config(counter_config()), url=rig.relay.url).start()
    try:
        await other.place_call("hoken")
        await ui.until(lambda: start.department_button("hoken").status == "busy", 10, "hoken busy")
        assert "ただいま混み合っています" in visible_texts(start)
        await other.end()
        await ui.until(
            lambda: start.department_button("hoken").status == "available", 10, "hoken available again"
        )
    finally:
        await other.close()


async def test_unanswered_call_shows_phone_and_returns_by_itself(rig: Rig) -> None:
    """A call nobody answers shows the plain message with the phone number, then start by itself."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    station = rig.stations[0]
    station.auto_answer = None
    try:
        await ui.tap(app.screen("start").department_button("juumin"))
        await ui.until(lambda: app.manager.current == "result", 10, "the unanswered result")
        texts = visible_texts(app.screen("result"))
        assert "住民課の職員が、ただいま応対できませんでした" in texts and "電話 0133-23-2223" in texts
        assert "受付 平日 8:45〜17:30" in texts
        await ui.until(lambda: app.manager.current == "start", 10, "start after the result timeout")
    finally:
        station.auto_answer = 0.0


async def test_closed_department_explains_and_back_button(rig: Rig) -> None:
    """Touching a closed department says it is closed, with its phone and hours; the back button returns."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    await ui.tap(app.screen("start").department_button("zeimu"))
    await ui.until(lambda: app.manager.current == "result", 5, "the closed result")
    result = app.screen("result")
    assert "税務課は受付時間外です" in visible_texts(result) and "電話 0133-23-2224" in visible_texts(result)
    app.set_language("en")
    await ui.until(
        lambda: "The Taxation Division is closed now" in visible_texts(result), 5, "English result"
    )
    await ui.tap(result.ids.back)
    await ui.until(lambda: app.manager.current == "start" and app.lang == "ja", 5, "start, language reset")


async def test_idle_reset_returns_pin_screen_to_start(rig: Rig) -> None:
    """With no touch for the idle time, a non-call screen (here the PIN pad) returns to start by itself."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    await ui.hold(ui.window_pos(app.corner), lambda: app.manager.current == "pin", 5, "the PIN screen")
    await ui.until(lambda: app.manager.current == "start", 10, "start after idle")


async def test_wrong_pin_keeps_the_app_locked(rig: Rig) -> None:
    """The kiosk cannot be closed from outside (window close, Escape); a wrong PIN shows an error and never opens
    the technician menu; the right one does."""
    from kivy.core.window import Window

    app, ui = rig.app, rig.ui
    await rig.at_start()
    assert Window.dispatch("on_request_close") is True, "a close request is refused"
    Window.dispatch("on_keyboard", 27, 0, "", [])  # Escape
    await ui.frames(2)
    assert not app.stopped.is_set() and app.manager.current == "start"
    await ui.hold(ui.window_pos(app.corner), lambda: app.manager.current == "pin", 5, "the PIN screen")
    pin = app.screen("pin")
    pad = pin.ids.pad
    digits = {b.text: b for b in button_widgets(pad)}
    for key in "1111":
        await ui.tap(digits[key])
    assert pad.entered == "1111", f"{pad.entered!r} after four taps; screens: {app.events[-5:]}"
    await ui.tap(pad.ids.ok)
    await ui.until(lambda: app.pin_error, 5, "the wrong PIN message")
    assert app.manager.current == "pin" and "暗証番号が違います" in visible_texts(pin)
    for key in "2468":
        await ui.tap(digits[key])
    await ui.tap(pad.ids.ok)
    await ui.until(lambda: app.manager.current == "tech", 5, "the technician menu")
    tech = app.screen("tech")
    await ui.until(
        lambda: tech.ids.camera_preview.frames_shown > 0 and tech.ids.document_preview.frames_shown > 0,
        5,
        "camera previews",
    )
    # The lamps are at the town office: the test asks the relay to light them and names who was asked.
    await ui.tap(tech.ids.lamp_test)
    await ui.until(lambda: "office-tobetsu-1" in tech.ids.message.text, 5, "the lamp test's answer")
    assert "住民課" in tech.ids.message.text and "役場で点いたか" in tech.ids.message.text
    await ui.tap(tech.ids.back)
    await rig.at_start()


async def test_every_touch_target_is_at_least_15_mm(rig: Rig) -> None:
    """Every button on every screen is at least 15 mm wide and tall at the configured screen size."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    minimum = app.sizes.touch
    try:
        for name in app.screens:
            app.manager.current = name
            await ui.frames(2)
            small = [
                (type(b).__name__, getattr(b, "text", ""), tuple(map(round, b.size)))
                for b in button_widgets(app.screens[name])
                if b.width < minimum or b.height < minimum
            ]
            assert not small, f"{name}: touch targets under 15 mm ({minimum:.0f} px): {small}"
    finally:
        app.manager.current = app.state_name


async def test_unavailable_when_no_station_is_online(rig: Rig) -> None:
    """With every station offline the department is greyed; touching it says so with the phone number."""
    app, ui = rig.app, rig.ui
    await rig.at_start()
    await rig.remove_stations()
    start = app.screen("start")
    await ui.until(lambda: start.department_button("juumin").status == "offline", 10, "presence offline")
    assert "ただいまご利用になれません" in visible_texts(start)
    await ui.tap(start.department_button("juumin"))
    await ui.until(lambda: app.manager.current == "result", 5, "the unavailable result")
    assert "住民課はただいまご利用になれません" in visible_texts(app.screen("result"))
    await rig.add_station()
