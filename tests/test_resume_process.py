"""A real relay process restarted mid-call while the media path is broken: the members resume the call on the new
relay process, re-signal the media through it and the pictures come back in the same call (real aiortc over
loopback, real ``relay-server`` processes, the real call log file)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from helpers import COUNTER, OFFICE1, RelayProcess, wait_until, write_relay_config
from session_support import call_with_video, media_config, terminal_config, wait_track

from kiosk.headless import HeadlessCounter, HeadlessStation
from kiosk.video.session import EventKind, SessionState
from relay_server.store import CallLog


@pytest.mark.parametrize("stop", ["crash", "sigterm"])
async def test_media_is_re_signalled_through_the_restarted_relay(tmp_path: Path, stop: str) -> None:
    """The relay process dies (kill -9: the sockets just close) or stops (SIGTERM: 'ended' shutdown) and the media
    path dies with it. Nothing can be re-signalled until a new relay process runs on the same port; then both
    members resume the call there, rebuild the media through it and pictures flow again both ways, same call.
    The call log keeps one row: started and answered before the restart, resumed, ended by the hang-up."""
    config = write_relay_config(tmp_path)
    relay = RelayProcess(config).start()
    restarted: RelayProcess | None = None
    office = HeadlessStation(
        terminal_config(OFFICE1, relay.url, media_config(document=None)), auto_answer=0.0
    )
    counter = HeadlessCounter(terminal_config(COUNTER, relay.url, media_config()))
    try:
        await office.start()
        await counter.start()
        session, station, _, _ = await call_with_video(counter, office, "juumin")
        call = session.call_id
        assert call is not None and station.call_id == call
        assert relay.proc is not None
        if stop == "crash":
            relay.proc.kill()
        else:
            relay.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(relay.proc.wait, 15)
        assert counter.client is not None and office.client is not None
        await wait_until(lambda: not counter.client.up.is_set() and not office.client.up.is_set(), 15)  # type: ignore[union-attr]
        # The media path dies too: the station's peer connection is gone without any signalling.
        old_pc = station.mesh.peers[COUNTER].pc
        await old_pc.close()
        await session.wait_event(EventKind.RECONNECTING, member=OFFICE1, timeout=15)
        await station.wait_event(EventKind.RECONNECTING, member=COUNTER, timeout=15)
        # Without a relay nothing can be re-signalled: no reconnection has happened (nor can it).
        assert not [e for e in session.events + station.events if e.kind is EventKind.RECONNECTED]

        restarted = RelayProcess(config, port=relay.port).start()
        await counter.wait_up(20)
        await office.wait_up(20)
        back = await session.wait_event(EventKind.RECONNECTED, member=OFFICE1, timeout=30)
        await station.wait_event(EventKind.RECONNECTED, member=COUNTER, timeout=30)
        assert back.detail.get("outage_s") is not None
        assert station.mesh.peers[COUNTER].pc is not old_pc
        assert (session.call_id, station.call_id) == (call, call)
        assert session.state is SessionState.ACTIVE and station.state is SessionState.ACTIVE
        camera_at_staff = await wait_track(station, COUNTER, "camera")
        camera_at_counter = await wait_track(session, OFFICE1, "camera")
        seen = (camera_at_staff.frames, camera_at_counter.frames)
        await wait_until(
            lambda: camera_at_staff.frames > seen[0] + 5 and camera_at_counter.frames > seen[1] + 5, 20
        )
        # The restarted relay knows the call: the hang-up goes through it and is written to its call log.
        await station.hangup()
        ended = await session.wait_event(EventKind.ENDED, timeout=15)
        assert ended.reason == "hangup"
        db = tmp_path / "calls.sqlite3"

        def ended_row() -> bool:
            with CallLog(db) as log:
                return any(r.call == call and r.end_reason == "hangup" for r in log.records())

        await wait_until(ended_row, 15, interval=0.1)
        with CallLog(db) as log:
            (row,) = [r for r in log.records() if r.call == call]
        assert row.answered_at is not None and row.resumed_at is not None
        assert row.created_at <= row.answered_at < row.resumed_at < (row.ended_at or 0)
        assert (row.outcome, row.answered_by) == ("answered", OFFICE1)
    finally:
        await counter.close()
        await office.close()
        for r in (restarted, relay):
            if r is not None and r.proc is not None:
                r.proc.kill()
                r.stop()
