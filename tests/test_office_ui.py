"""The staff station in a real window (offscreen SDL), driven by simulated touches, against a real relay,
real resident counters (in-process, real aiortc) and a real colleague station (headless, auto-answer):
incoming → answer → live video → full-resolution still → invite → leave → end; taken by a colleague;
away is not rung; missed calls listed; the embedded lamp; touch target sizes."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402
from helpers import make_relay_config  # noqa: E402

from kiosk.apps.office_ui import OfficeApp  # noqa: E402
from kiosk.config import LampConfig, load_terminal_config  # noqa: E402
from kiosk.devices.lamp import ChannelState  # noqa: E402
from kiosk.headless import HeadlessCounter, HeadlessStation  # noqa: E402
from kiosk.tools.office_shots import (  # noqa: E402
    relay_with_second_counter,
    second_counter_config,
)
from kiosk.tools.scenes import small_media  # noqa: E402
from kiosk.ui.driver import UiDriver, running_app, visible_texts, walk  # noqa: E402
from kiosk.video.frames import fit_within  # noqa: E402
from kiosk.video.session import SessionState  # noqa: E402
from relay_server.config import hash_token  # noqa: E402
from relay_server.server import RelayServer  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent
CAMERA, DOCUMENT = (160, 90), (320, 180)
COLLEAGUE = "office-tobetsu-2"
CALL_TEST_COUNTER = ("counter-call-test", "call-test-counter-token")  # for the `kiosk call-test` process


@dataclass
class Rig:
    relay: RelayServer
    app: Any
    ui: UiDriver
    resident: HeadlessCounter
    resident2: HeadlessCounter
    colleague: HeadlessStation

    async def idle(self) -> None:
        """Wait until nothing rings and nobody is in a call."""
        app, ui = self.app, self.ui
        await self.resident.end()
        await self.resident2.end()
        await ui.until(
            lambda: (
                app.state_name == "waiting"
                and not app.machine.ringing
                and not self.colleague.in_call
                and app.session is None
            ),
            10,
            "an idle station",
        )
        self.colleague.auto_answer = None

    async def card(self, call: str) -> Any:
        """The ringing card of ``call`` once it is on screen and laid out."""
        waiting = self.app.screen("waiting")
        await self.ui.until(lambda: any(c.call == call for c in waiting.cards()), 5, f"the card of {call}")
        await self.ui.frames(2)
        return waiting.card(call)

    async def synced(self) -> None:
        """Wait until every relay message sent to the station so far has arrived (ping → pong)."""
        assert self.app.client is not None
        before = self.app.received.count("pong")
        await self.app.client.send({"type": "ping"})
        await self.ui.until(lambda: self.app.received.count("pong") > before, 5, "the relay's pong")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig() -> AsyncIterator[Rig]:
    cfg = relay_with_second_counter(make_relay_config(ring_timeout=2.5, invite_timeout=10.0))
    first = cfg.terminals["counter-sapporo-1"]
    cfg = replace(
        cfg,
        terminals={
            **cfg.terminals,
            CALL_TEST_COUNTER[0]: replace(
                first, id=CALL_TEST_COUNTER[0], token_hash=hash_token(CALL_TEST_COUNTER[1]), name="call-test"
            ),
        },
    )
    relay = await RelayServer(cfg).start(host="127.0.0.1", port=0)
    counter_cfg = small_media(
        load_terminal_config(ROOT / "config" / "counter.toml", "counter"), CAMERA, DOCUMENT
    )
    resident = await HeadlessCounter(counter_cfg, url=relay.url).start()
    resident2 = await HeadlessCounter(second_counter_config(counter_cfg), url=relay.url).start()
    await resident.wait_up()
    await resident2.wait_up()
    colleague = HeadlessStation(
        small_media(load_terminal_config(ROOT / "config" / "office-2.toml", "office"), CAMERA, None),
        auto_answer=None,
        url=relay.url,
    )
    await colleague.start()
    await colleague.wait_up()
    office = load_terminal_config(ROOT / "config" / "office.toml", "office")
    office = office.with_overrides(
        ui=replace(office.ui, ring_sound=False, width=1280, height=800),
        lamp=LampConfig(driver="none", port="", channels={"juumin": 1}, in_call_channel=2),
    )
    app = OfficeApp(small_media(office, CAMERA, None), url=relay.url, taken_shown=1.0)
    try:
        async with running_app(app) as ui:
            await ui.until(lambda: app.state_name == "waiting" and app.link_ok, 15, "the waiting screen")
            yield Rig(relay, app, ui, resident, resident2, colleague)
    finally:
        await app.aclose()
        await colleague.close()
        await resident.close()
        await resident2.close()
        await relay.close()


def texture_rgb(texture: Any) -> np.ndarray:
    """The pixels of a Kivy texture as top-down H×W×3 RGB (textures made from numpy rows are flipped)."""
    w, h = texture.size
    rgba = np.frombuffer(texture.pixels, dtype=np.uint8).reshape(h, w, 4)
    return rgba[:, :, :3]


async def test_answer_video_still_invite_leave(rig: Rig) -> None:
    """incoming → answer → both tiles move → full-resolution still in the viewer → invite a colleague, who
    joins and sees the papers → leave (the colleague stays) → the still is wiped; the lamp follows."""
    app, ui = rig.app, rig.ui
    await rig.idle()
    waiting = app.screen("waiting")
    call = await rig.resident.place_call("juumin")
    card = await rig.card(call)
    texts = visible_texts(waiting)
    assert "住民課" in texts and "応答する" in texts and app.ringing
    assert app.lamp.board.desired()[1] is ChannelState.ON
    await ui.tap(card.ids.answer)

    call_screen = app.screen("in_call")
    big, small = call_screen.ids.big_view, call_screen.ids.small_tile.ids.video
    await ui.until(
        lambda: app.manager.current == "in_call" and app.state_name == "in_call", 5, "the call screen"
    )
    assert not app.ringing and app.lamp.board.desired()[1] is ChannelState.OFF
    await ui.until(lambda: big.frames_shown >= 3 and small.frames_shown >= 1, 15, "both video tiles")
    b, s = big.frames_shown, small.frames_shown
    await ui.until(
        lambda: big.frames_shown > b + 2 and small.frames_shown > s, 10, "both tiles to keep moving"
    )
    # each picture at the size its view shows it (never larger than sent; kiosk.video.sink)
    assert tuple(big.frame_size) == fit_within(*CAMERA, big.display_size)
    assert tuple(small.frame_size) == fit_within(*DOCUMENT, small.display_size)
    await ui.until(
        lambda: all(r.connected for r in call_screen.ids.members.children), 10, "members connected"
    )
    assert call_screen.member_texts() == ["住民の方（札幌市役所本庁舎 1F）", "あなた（住民課 窓口）"]
    assert app.lamp.board.desired()[2] is ChannelState.ON

    # Swap: touching the small tile makes the papers large.
    await ui.tap(call_screen.ids.small_tile)
    await ui.until(lambda: app.big == "document" and tuple(big.frame_size) == DOCUMENT, 5, "papers large")

    # Still at full resolution, shown pixel for pixel.
    await ui.tap(call_screen.ids.still)
    await ui.until(lambda: app.manager.current == "still" and app.still is not None, 15, "the still viewer")
    still = app.still
    viewer = app.screen("still").ids.viewer
    assert (still.width, still.height) == DOCUMENT and tuple(viewer.image_size) == DOCUMENT
    assert tuple(viewer.texture.size) == DOCUMENT
    assert np.array_equal(texture_rgb(viewer.texture), still.rgb)
    assert "書類の静止画（320×180、原寸）" in " ".join(visible_texts(app.screen("still")))
    await ui.frames(2)  # the viewer is laid out and fits the still
    zoom = viewer.zoom
    assert zoom == pytest.approx(min(viewer.width / DOCUMENT[0], viewer.height / DOCUMENT[1]))
    await ui.tap(app.screen("still").ids.zoom_in)
    assert viewer.zoom == pytest.approx(zoom * 1.5)
    await ui.tap(app.screen("still").ids.actual)
    assert viewer.zoom == 1.0
    await ui.tap(app.screen("still").ids.back)
    await ui.until(lambda: app.manager.current == "in_call", 5, "back to the call")

    # Rotate the papers: the picture turns, nothing is lost.
    await ui.tap(call_screen.ids.rotate)
    await ui.until(lambda: tuple(big.frame_size) == DOCUMENT[::-1], 5, "the papers turned")
    await ui.tap(call_screen.ids.rotate)
    await ui.tap(call_screen.ids.rotate)
    await ui.tap(call_screen.ids.rotate)
    assert app.doc_rotation == 0

    # Full-screen papers.
    await ui.tap(call_screen.ids.fullscreen)
    doc_view = app.screen("document").ids.doc_view
    await ui.until(
        lambda: app.manager.current == "document" and doc_view.frames_shown > 0, 5, "full-screen papers"
    )
    assert doc_view.width == app.root_window.width
    await ui.tap(app.screen("document").ids.back)

    # Invite the colleague's station; it answers by itself, joins and sees the papers. The picker shows whether
    # the colleague can be rung: away, its button is disabled.
    assert not app.can_leave
    await ui.tap(call_screen.ids.invite)
    await ui.until(lambda: app.manager.current == "invite", 5, "the invite picker")
    picker = app.screen("invite")
    assert picker.button("terminal", COLLEAGUE).status == "available"
    assert "受付中" in picker.button("terminal", COLLEAGUE).text
    assert rig.colleague.client is not None
    await rig.colleague.client.send({"type": "status", "status": "away"})
    await ui.until(
        lambda: picker.button("terminal", COLLEAGUE).status == "away", 5, "the colleague shown away"
    )
    assert (
        picker.button("terminal", COLLEAGUE).disabled
        and "離席中" in picker.button("terminal", COLLEAGUE).text
    )
    await rig.colleague.client.send({"type": "status", "status": "available"})
    await ui.until(
        lambda: picker.button("terminal", COLLEAGUE).status == "available", 5, "the colleague back"
    )
    rig.colleague.auto_answer = 0.0
    await ui.tap(app.screen("invite").button("terminal", COLLEAGUE))
    await ui.until(lambda: app.manager.current == "in_call", 5, "back to the call")
    await ui.until(lambda: app.can_leave and len(call_screen.member_texts()) == 3, 10, "the colleague joined")
    assert call_screen.member_texts()[2] == "税務課 窓口（職員）"
    session = rig.colleague.session
    assert session is not None
    await ui.until(
        lambda: (
            session.frame_sink(rig.resident.terminal, "document") is not None
            and session.frame_sink(rig.resident.terminal, "document").latest() is not None
        ),
        15,
        "the colleague to see the papers",
    )
    await ui.until(lambda: all(r.connected for r in call_screen.ids.members.children), 10, "all connected")

    # Leave: the colleague stays with the resident; nothing of the call stays here.
    await ui.tap(call_screen.ids.leave)
    await ui.until(
        lambda: app.state_name == "waiting" and app.manager.current == "waiting", 10, "waiting again"
    )
    assert "通話から退出しました。同僚が応対を続けています" in visible_texts(waiting)
    assert app.still is None and not still.rgb.any() and viewer.texture is None
    assert not big.has_frame and call_screen.member_texts() == []
    await ui.until(lambda: app.session is None, 5, "the session closed")
    assert rig.colleague.in_call and rig.resident.session is not None
    assert rig.resident.session.state is SessionState.ACTIVE


async def test_end_call_ends_it_for_the_resident(rig: Rig) -> None:
    """Mute silences the microphone; the red end button ends the call for everyone and returns to waiting."""
    app, ui = rig.app, rig.ui
    await rig.idle()
    call = await rig.resident.place_call("juumin")
    await ui.tap((await rig.card(call)).ids.answer)
    big = app.screen("in_call").ids.big_view
    await ui.until(lambda: app.manager.current == "in_call" and big.has_frame, 15, "video")
    assert app.big == "camera" and tuple(big.frame_size) == CAMERA
    resident_session = rig.resident.session
    assert resident_session is not None
    # Invite a department; the colleague who is rung declines: the call screen says so and the call goes on.
    call_screen = app.screen("in_call")
    await ui.tap(call_screen.ids.invite)
    await ui.until(lambda: app.manager.current == "invite", 5, "the invite picker")
    await ui.tap(app.screen("invite").button("department", "zeimu"))
    await ui.until(
        lambda: any("呼び出し中" in t for t in call_screen.invite_texts()), 5, "the pending invite"
    )
    assert rig.colleague.client is not None
    await rig.colleague.client.send({"type": "decline", "call": call})
    await ui.until(
        lambda: any("断りました" in t for t in call_screen.invite_texts()), 5, "the declined invite"
    )
    assert app.state_name == "in_call" and len(call_screen.member_texts()) == 2
    await ui.tap(app.screen("in_call").ids.mute)
    assert (
        app.mic_muted and app.session.mic_muted and "マイクを入れる" in visible_texts(app.screen("in_call"))
    )
    await ui.tap(app.screen("in_call").ids.end)
    await ui.until(lambda: app.state_name == "waiting", 5, "waiting")
    assert "通話を終了しました" in visible_texts(app.screen("waiting"))
    await ui.until(lambda: resident_session.state is SessionState.ENDED, 10, "the resident's call to end")


async def test_kiosk_call_test_process_is_answered_in_one_touch(rig: Rig, tmp_path: Path) -> None:
    """A real `kiosk call-test` process rings the station; one touch answers; the resident's camera and papers
    move on screen and the process reports frames both ways and exits 0."""
    app, ui = rig.app, rig.ui
    await rig.idle()
    text = (ROOT / "config" / "counter.toml").read_text()
    for old, new in {
        'token = "demo-counter-1-e8b1c2"': f'token = "{CALL_TEST_COUNTER[1]}"',
        "width = 640": f"width = {CAMERA[0]}",
        "height = 360": f"height = {CAMERA[1]}",
        "width = 1920": f"width = {DOCUMENT[0]}",
        "height = 1080": f"height = {DOCUMENT[1]}",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "counter.toml").write_text(text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kiosk",
        "call-test",
        "--config",
        str(tmp_path / "counter.toml"),
        "--department",
        "juumin",
        "--seconds",
        "2",
        "--answer-timeout",
        "30",
        "--json",
        "--url",
        rig.relay.url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        waiting = app.screen("waiting")
        await ui.until(
            lambda: any(c.counter == CALL_TEST_COUNTER[0] for c in app.machine.ringing.values()),
            30,
            "the call-test process ringing",
        )
        call = next(c for c, e in app.machine.ringing.items() if e.counter == CALL_TEST_COUNTER[0])
        assert "call-test" in " ".join(visible_texts(await rig.card(call)))
        await ui.tap(waiting.card(call).ids.answer)
        call_screen = app.screen("in_call")
        big, small = call_screen.ids.big_view, call_screen.ids.small_tile.ids.video
        await ui.until(lambda: big.frames_shown >= 3 and small.frames_shown >= 1, 15, "both video tiles")
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["ok"] and report["answered_by"] == "office-tobetsu-1"
    tracks = {t["track"]: t for t in report["tracks"]}
    assert tracks["camera"]["frames"] > 5 and tracks["audio"]["audio_level"] > 0.01
    await ui.until(lambda: app.state_name == "waiting", 10, "waiting after the resident hung up")


async def test_call_taken_by_colleague_disappears(rig: Rig) -> None:
    """A call a colleague answers shows 'taken by …' without an answer button, stops ringing, then goes."""
    app, ui = rig.app, rig.ui
    await rig.idle()
    waiting = app.screen("waiting")
    call = await rig.resident.place_call("zeimu")
    await ui.until(lambda: call in app.machine.ringing and app.ringing, 5, "ringing")
    await rig.colleague.answer(call)
    await ui.until(lambda: waiting.card(call).taken_by == COLLEAGUE, 5, "taken")
    card = waiting.card(call)
    assert "税務課 窓口 が応答しました" in visible_texts(card) and card.ids.answer.opacity == 0
    assert card.ids.answer.disabled and not app.ringing
    await ui.until(lambda: not waiting.cards(), 5, "the taken call to go")
    assert app.machine.missed_today() == []


async def test_away_is_not_rung(rig: Rig) -> None:
    """While away the station is not rung (the call rings the colleague only); back available, it is."""
    app, ui = rig.app, rig.ui
    await rig.idle()
    waiting = app.screen("waiting")
    await ui.tap(waiting.ids.away)
    await ui.until(lambda: app.away and "離席中" in " ".join(visible_texts(waiting)), 5, "away")
    call = await rig.resident.place_call("juumin")  # rings: the colleague is available
    await rig.synced()
    assert call not in app.machine.ringing and not waiting.cards() and not app.ringing
    assert "離席中のため呼び出されません" in visible_texts(waiting)
    await rig.resident.end()
    await ui.tap(waiting.ids.away)
    await ui.until(lambda: not app.away, 5, "available")
    await rig.synced()
    call = await rig.resident.place_call("juumin")
    await ui.until(lambda: call in app.machine.ringing and app.ringing, 5, "rung again")


async def test_missed_calls_are_listed(rig: Rig) -> None:
    """A call nobody answers and one the resident cancels appear in today's missed list, newest first."""
    app, ui = rig.app, rig.ui
    await rig.idle()
    waiting = app.screen("waiting")
    before = len(app.machine.missed)
    await rig.resident.place_call("hoken")
    cancelled = await rig.resident2.place_call("kensetsu")
    await ui.until(lambda: cancelled in app.machine.ringing, 5, "the second call ringing")
    await rig.resident2.end()  # the resident gives up while it rings
    await ui.until(lambda: len(app.machine.missed) == before + 2, 10, "two missed calls (ring timeout 2.5 s)")
    rows = waiting.missed_rows()
    assert rows[0].title.endswith("保健福祉課") and "応答なし" in rows[0].detail
    assert rows[1].title.endswith("建設課") and "北区役所" in rows[1].detail and "中止" in rows[1].detail
    assert rows[0].title[:2].isdigit() and rows[0].title[2] == ":"
    assert f"本日の不在着信（{before + 2}件）" in visible_texts(waiting)
    app.set_language("en")
    await ui.until(lambda: "no answer after" in waiting.missed_rows()[0].detail, 5, "English rows")
    app.set_language("ja")


async def test_every_touch_target_is_at_least_15_mm(rig: Rig) -> None:
    """Every button on every screen is at least 15 mm wide and tall at the configured screen size."""
    from kivy.uix.behaviors import ButtonBehavior

    app, ui = rig.app, rig.ui
    await rig.idle()
    call = await rig.resident.place_call("juumin")
    await ui.until(lambda: call in app.machine.ringing, 5, "ringing")
    minimum = app.sizes.touch
    try:
        for name, screen in app.screens.items():
            app.manager.current = name
            await ui.frames(2)
            small = [
                (type(b).__name__, getattr(b, "text", ""), tuple(map(round, b.size)))
                for b in walk(screen)
                if isinstance(b, ButtonBehavior)
                and b.opacity > 0
                and not b.disabled
                and (b.width < minimum or b.height < minimum)
            ]
            assert not small, f"{name}: touch targets under 15 mm ({minimum:.0f} px): {small}"
    finally:
        app.manager.current = "waiting"
