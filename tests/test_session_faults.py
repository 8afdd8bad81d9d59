"""Faults during a call: the relay goes away and comes back, or the media path dies."""

from __future__ import annotations

import time

from helpers import COUNTER, OFFICE1, make_relay_config, wait_until
from session_support import call_with_video, media_config, terminal_config, wait_stamps, wait_track

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


async def test_peer_connection_failure_ends_call_on_both_sides() -> None:
    """When the media path dies, both sides end the call with reason media_failed and clear their pictures."""
    async with RelayServer(make_relay_config()) as srv:
        office = HeadlessStation(terminal_config(OFFICE1, srv.url, media_config(document=None)), auto_answer=0.0)
        counter = HeadlessCounter(terminal_config(COUNTER, srv.url, media_config()))
        async with office, counter:
            session, station, from_staff, to_staff = await call_with_video(counter, office, "kensetsu")
            # Simulate the station's media stack dying: its peer connection closes without any signalling.
            started = time.monotonic()
            await station._peers[COUNTER].pc.close()
            counter_end = await session.wait_event(EventKind.ENDED, timeout=10)
            station_end = await station.wait_event(EventKind.ENDED, timeout=10)
            assert counter_end.reason == "media_failed" and station_end.reason == "media_failed"
            assert time.monotonic() - started < 8
            assert from_staff.frame_sink.latest() is None and to_staff.frame_sink.latest() is None
            assert session.remote_tracks() == [] and station.remote_tracks() == []
            # The relay ended the call too: the counter can place a new one at once.
            again = await counter.call("kensetsu")
            await wait_track(again, OFFICE1, "camera")


async def test_link_drop_mid_call_reattaches_within_the_grace_period() -> None:
    """A counter whose websocket drops mid-call keeps its media, reconnects by itself, is back in the same call at
    the relay (no 'disconnected'), and the call then ends normally through the relay."""
    async with RelayServer(make_relay_config()) as srv:
        office = HeadlessStation(terminal_config(OFFICE1, srv.url, media_config(document=None)), auto_answer=0.0)
        counter = HeadlessCounter(terminal_config(COUNTER, srv.url, media_config()))
        async with office, counter:
            session, station, from_staff, to_staff = await call_with_video(counter, office, "hoken")
            call = srv.core.call_of[COUNTER]
            srv.conns[COUNTER].ws.transport.abort()  # the network drops the counter's link, nobody says goodbye
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
