"""Faults during a call: the relay goes away and comes back, or the media path dies."""

from __future__ import annotations

import time
from dataclasses import replace

from helpers import COUNTER, OFFICE1, make_relay_config, wait_until
from session_support import call_with_video, media_config, picture, terminal_config, wait_stamps, wait_track

from kiosk.headless import HeadlessCounter, HeadlessStation
from kiosk.video.session import EventKind, SessionState
from relay_server.server import RelayServer


async def test_relay_restart_mid_call_keeps_media_flowing() -> None:
    """Closing the relay and starting it again on the same port mid-call never interrupts the media, and the
    call can still be ended from either side afterwards."""
    srv = await RelayServer(make_relay_config()).start()
    port = srv.port
    office = HeadlessStation(terminal_config(OFFICE1, srv.url, media_config(document=None)), auto_answer=0.0)
    counter = HeadlessCounter(terminal_config(COUNTER, srv.url, media_config()))
    restarted: RelayServer | None = None
    try:
        await office.start()
        await counter.start()
        session, station, from_staff, to_staff = await call_with_video(counter, office, "juumin")
        await srv.close()
        await wait_until(lambda: not counter.client.up.is_set() and not office.client.up.is_set(), 5)  # type: ignore[union-attr]
        # Relay down: frames keep arriving both ways, with fresh stamps.
        await wait_stamps(to_staff, 3)
        await wait_stamps(from_staff, 3)
        assert session.state is SessionState.ACTIVE and station.state is SessionState.ACTIVE
        assert (await session.wait_event(EventKind.RELAY_LOST)).reason == "shutdown"
        restarted = await RelayServer(make_relay_config(port=port)).start()
        assert restarted.port == port
        await counter.wait_up(15)
        await office.wait_up(15)
        before = to_staff.frames
        await wait_until(lambda: to_staff.frames > before + 5, 10)
        await wait_stamps(to_staff, 2)
        assert station.connection_state(COUNTER) == "connected"
        # The relay no longer knows the call; hanging up still ends it on both sides (bye over the data channel).
        await station.hangup()
        ended = await session.wait_event(EventKind.ENDED)
        assert ended.reason == "hangup" and ended.detail.get("by") == OFFICE1
    finally:
        await counter.close()
        await office.close()
        if restarted is not None:
            await restarted.close()
        await srv.close()


async def test_dead_peer_connection_is_rebuilt_in_the_same_call() -> None:
    """When one side's media stack dies mid-call, both sides say 'reconnecting', rebuild the media path through the
    relay by themselves (a new peer connection) and pictures flow again both ways, in the same call."""
    async with RelayServer(make_relay_config()) as srv:
        office = HeadlessStation(
            terminal_config(OFFICE1, srv.url, media_config(document=None)), auto_answer=0.0
        )
        counter = HeadlessCounter(terminal_config(COUNTER, srv.url, media_config()))
        async with office, counter:
            session, station, from_staff, to_staff = await call_with_video(counter, office, "kensetsu")
            call = srv.core.call_of[COUNTER]
            old_pc = station.mesh.peers[COUNTER].pc
            await old_pc.close()  # the station's media dies without any signalling
            assert (await session.wait_event(EventKind.RECONNECTING, member=OFFICE1, timeout=10)).reason
            assert (await station.wait_event(EventKind.RECONNECTING, member=COUNTER, timeout=10)).reason
            await session.wait_event(EventKind.RECONNECTED, member=OFFICE1, timeout=15)
            await station.wait_event(EventKind.RECONNECTED, member=COUNTER, timeout=15)
            assert station.mesh.peers[COUNTER].pc is not old_pc
            camera_at_staff = await wait_track(station, COUNTER, "camera")
            await wait_until(lambda: camera_at_staff.frames > 3, 15)
            camera_at_counter = await wait_track(session, OFFICE1, "camera")
            await wait_until(lambda: camera_at_counter.frames > 3, 15)
            # The screens' sinks are the same objects as before: they show the new pictures without re-wiring.
            assert station.frame_sink(COUNTER) is to_staff.frame_sink
            await wait_until(lambda: picture(to_staff).latest() is not None, 10)
            assert session.state is SessionState.ACTIVE and station.state is SessionState.ACTIVE
            assert srv.core.call_of.get(COUNTER) == call == srv.core.call_of.get(OFFICE1)


async def test_media_that_cannot_come_back_ends_after_the_reconnect_window() -> None:
    """With the media dead and no relay to re-signal through, each side ends the call with reason media_failed
    once the reconnect window has passed, and clears its pictures."""
    srv = await RelayServer(make_relay_config()).start()
    short = replace(media_config(), network=replace(media_config().network, reconnect_window=5.0))
    office = HeadlessStation(
        terminal_config(OFFICE1, srv.url, replace(short, document_camera=None)), auto_answer=0.0
    )
    counter = HeadlessCounter(terminal_config(COUNTER, srv.url, short))
    try:
        async with office, counter:
            session, station, from_staff, to_staff = await call_with_video(counter, office, "kensetsu")
            await srv.close()
            started = time.monotonic()
            await station.mesh.peers[COUNTER].pc.close()
            await session.wait_event(EventKind.RECONNECTING, timeout=10)
            counter_end = await session.wait_event(EventKind.ENDED, timeout=20)
            station_end = await station.wait_event(EventKind.ENDED, timeout=20)
            assert counter_end.reason == "media_failed" and station_end.reason == "media_failed"
            assert time.monotonic() - started >= 5.0
            assert picture(from_staff).latest() is None and picture(to_staff).latest() is None
    finally:
        await srv.close()


async def test_link_drop_mid_call_reattaches_within_the_grace_period() -> None:
    """A counter whose websocket drops mid-call keeps its media, reconnects by itself, is back in the same call at
    the relay (no 'disconnected'), and the call then ends normally through the relay."""
    async with RelayServer(make_relay_config()) as srv:
        office = HeadlessStation(
            terminal_config(OFFICE1, srv.url, media_config(document=None)), auto_answer=0.0
        )
        counter = HeadlessCounter(terminal_config(COUNTER, srv.url, media_config()))
        async with office, counter:
            session, station, from_staff, to_staff = await call_with_video(counter, office, "hoken")
            call = srv.core.call_of[COUNTER]
            srv.conns[
                COUNTER
            ].ws.transport.abort()  # the network drops the counter's link, nobody says goodbye
            await wait_until(lambda: COUNTER in srv.core.offline_members, 5)
            await wait_stamps(to_staff, 3)  # media goes on peer to peer meanwhile
            await wait_until(lambda: COUNTER not in srv.core.offline_members and COUNTER in srv.conns, 15)
            await counter.wait_up(5)
            assert srv.core.call_of.get(COUNTER) == call and srv.core.call_of.get(OFFICE1) == call
            before = from_staff.frames
            await wait_until(lambda: from_staff.frames > before + 3, 10)
            assert session.state is SessionState.ACTIVE and station.state is SessionState.ACTIVE
            await session.hangup()
            ended = await station.wait_event(EventKind.ENDED, timeout=10)
            assert ended.reason == "hangup"
            await wait_until(lambda: COUNTER not in srv.core.call_of and OFFICE1 not in srv.core.call_of, 5)
