"""Calls between real terminals: a counter and staff stations, real aiortc over 127.0.0.1, the real relay."""

from __future__ import annotations

import numpy as np
from helpers import COUNTER, OFFICE1, OFFICE2, make_relay_config, wait_until
from session_support import (
    FULL_DOCUMENT,
    SentStills,
    call_with_video,
    media_config,
    picture,
    sound,
    terminal_config,
    wait_audio_tone,
    wait_stamps,
    wait_track,
)

from kiosk.config import RelayLink
from kiosk.headless import HeadlessCounter, HeadlessStation
from kiosk.video.session import CallSession, EventKind, SessionState
from kiosk.video.still import pixels_sha256
from relay_server.server import RelayServer


async def test_counter_to_office_all_three_tracks_and_back() -> None:
    """The station receives the counter's camera, document and tone with decodable content, and vice versa;
    mute and document rotation reach the other side."""
    async with RelayServer(make_relay_config()) as srv:
        office = HeadlessStation(
            terminal_config(OFFICE1, srv.url, media_config(document=None, tone_hz=660)), auto_answer=0.0
        )
        counter = HeadlessCounter(terminal_config(COUNTER, srv.url, media_config(tone_hz=440)))
        async with office, counter:
            session, station, staff_camera, camera = await call_with_video(counter, office, "juumin")
            document = await wait_track(station, COUNTER, "document")
            audio = await wait_track(station, COUNTER, "audio")
            stamps = await wait_stamps(camera, 3)
            assert stamps == sorted(stamps) and len(set(stamps)) == 3
            await wait_stamps(document, 2)
            assert document.resolution == (320, 180)
            assert camera.resolution == (240, 136)
            await wait_audio_tone(audio, 440.0)
            # microphone mute sends silence; unmute brings the tone back
            session.set_mic_muted(True)
            await wait_until(lambda: sound(audio).level(0.2) < 0.001, 10)
            session.set_mic_muted(False)
            await wait_audio_tone(audio, 440.0)
            # rotating the document camera turns the received picture, at full size
            session.set_document_rotation(90)
            await wait_until(lambda: document.resolution == (180, 320), 10)
            # office → counter: camera and audio, no document
            await wait_stamps(staff_camera, 3)
            await wait_audio_tone(await wait_track(session, OFFICE1, "audio"), 660.0)
            assert session.remote_track(OFFICE1, "document") is None
            assert session.connection_state(OFFICE1) == "connected"
            await session.hangup()
            ended = await station.wait_event(EventKind.ENDED)
            assert ended.reason == "hangup"
            assert station.remote_tracks() == [] and picture(camera).latest() is None


async def test_document_arrives_full_hd_and_still_is_bit_identical() -> None:
    """The document track arrives at 1920×1080 (after a half-size first frame) and a requested still is exactly
    the captured frame; stills are wiped when the call ends."""
    async with RelayServer(make_relay_config()) as srv:
        office = HeadlessStation(
            terminal_config(OFFICE1, srv.url, media_config(document=None)), auto_answer=0.0
        )
        counter = HeadlessCounter(
            terminal_config(
                COUNTER, srv.url, media_config(document=FULL_DOCUMENT, document_fps=2.0, camera_fps=5.0)
            )
        )
        async with office, counter:
            await office.wait_up()
            session = await counter.call("zeimu")
            await wait_track(session, OFFICE1, "camera")
            assert office.session is not None
            station = office.session
            document = await wait_track(station, COUNTER, "document", timeout=30)
            # The first document frame comes at half size (a quick first picture, kiosk.video.encoders), the
            # next ones at full size.
            assert document.resolution in (FULL_DOCUMENT, (FULL_DOCUMENT[0] // 2, FULL_DOCUMENT[1] // 2))
            await wait_until(lambda: document.resolution == FULL_DOCUMENT, timeout=30)
            sent_stills = SentStills(session)  # a test observer: the session keeps no copy for it
            still = await station.request_still(timeout=60)
            event = await session.wait_event(EventKind.STILL_SENT, member=OFFICE1)
            sent = await sent_stills.wait()
            assert (still.width, still.height) == FULL_DOCUMENT
            assert still.rgb.dtype == np.uint8 and np.array_equal(still.rgb, sent.frame)
            assert pixels_sha256(still.rgb) == sent.pixels_sha256 == event.detail["pixels_sha256"]
            assert "frame" not in event.detail, "events carry no pixels"
            assert not sent_stills.originals[0].any(), (
                "the kiosk's copy of the still is zeroed once it is sent"
            )
            assert station.stills == [still]
            held = still.rgb
            await station.hangup()
            await session.wait_event(EventKind.ENDED)
            assert station.stills == [] and not held.any() and still.png == b""


async def test_invited_third_member_receives_counter_tracks() -> None:
    """A colleague invited into a call gets the counter's camera, document and audio and the first staff's
    camera, and the counter gets theirs."""
    async with RelayServer(make_relay_config()) as srv:
        office1 = HeadlessStation(
            terminal_config(OFFICE1, srv.url, media_config(document=None, tone_hz=660)), auto_answer=0.0
        )
        office2 = HeadlessStation(
            terminal_config(OFFICE2, srv.url, media_config(document=None, tone_hz=880)), auto_answer=None
        )
        counter = HeadlessCounter(terminal_config(COUNTER, srv.url, media_config()))
        async with office1, office2, counter:
            await office1.wait_up()
            await office2.wait_up()
            session = await counter.call("hoken")
            await wait_track(session, OFFICE1, "camera")
            office2.auto_answer = 0.0
            await office1.invite(terminal=OFFICE2)
            second = await _wait_session(office2)
            for label in ("camera", "document"):
                await wait_stamps(await wait_track(second, COUNTER, label), 2)
            await wait_audio_tone(await wait_track(second, COUNTER, "audio"), 440.0)
            await wait_stamps(await wait_track(second, OFFICE1, "camera"), 2)
            await wait_stamps(await wait_track(session, OFFICE2, "camera"), 2)
            assert office1.session is not None
            await wait_stamps(await wait_track(office1.session, OFFICE2, "camera"), 2)
            assert sorted(session.members) == [OFFICE1, OFFICE2]
            await second.leave()
            left = await session.wait_event(EventKind.MEMBER_LEFT, member=OFFICE2)
            assert left.reason == "leave"
            assert session.state is SessionState.ACTIVE and session.connection_state(OFFICE1) == "connected"


async def _wait_session(station: HeadlessStation, timeout: float = 10.0) -> CallSession:
    """The station's call session, once it has answered."""
    await wait_until(lambda: station.session is not None, timeout)
    assert station.session is not None
    return station.session


async def test_four_member_mesh_every_member_sees_every_other() -> None:
    """The largest call (max_members = 4): a third staff member joins a call with two; every member receives every
    other member's camera, the newcomer gets the papers too, and nobody else can be invited."""
    from dataclasses import replace

    from relay_server.config import hash_token

    office3, office3_token = "office-tobetsu-3", "test-office-3-token"
    cfg = make_relay_config(max_members=4)
    cfg = replace(
        cfg,
        terminals={
            **cfg.terminals,
            office3: replace(
                cfg.terminals[OFFICE2],
                id=office3,
                token_hash=hash_token(office3_token),
                name="保健福祉課 窓口",
            ),
        },
    )
    async with RelayServer(cfg) as srv:
        media = media_config(document=None)
        office1 = HeadlessStation(terminal_config(OFFICE1, srv.url, media), auto_answer=0.0)
        office2 = HeadlessStation(terminal_config(OFFICE2, srv.url, media), auto_answer=None)
        third = HeadlessStation(
            replace(terminal_config(OFFICE1, srv.url, media), relay=RelayLink(srv.url, office3_token)),
            auto_answer=None,
        )
        counter = HeadlessCounter(terminal_config(COUNTER, srv.url, media_config()))
        async with office1, office2, third, counter:
            for station in (office1, office2, third):
                await station.wait_up()
            session = await counter.call("hoken")
            await wait_track(session, OFFICE1, "camera")
            office2.auto_answer = third.auto_answer = 0.0
            await office1.invite(terminal=OFFICE2)
            await _wait_session(office2)
            await office1.invite(terminal=office3)
            newcomer = await _wait_session(third)
            sessions = {
                COUNTER: session,
                OFFICE1: office1.session,
                OFFICE2: office2.session,
                office3: newcomer,
            }
            for me, s in sessions.items():
                assert s is not None
                for other in sessions:
                    if other != me:
                        await wait_stamps(await wait_track(s, other, "camera"), 2)
            await wait_stamps(await wait_track(newcomer, COUNTER, "document"), 2)
            assert sorted(session.members) == sorted([OFFICE1, OFFICE2, office3])
            assert srv.core.calls[srv.core.call_of[COUNTER]].members == [COUNTER, OFFICE1, OFFICE2, office3]
