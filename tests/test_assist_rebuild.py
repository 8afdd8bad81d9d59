"""Issue 16: a paper cut off by a media rebuild arrives whole anyway. In a real call (real relay, real aiortc over
loopback) the station hands over a 3-page paper; while page 2 is on the way the station's network goes silent, the
media path is rebuilt (a new peer connection and a new data channel) and, without anyone touching anything, the
counter ends with every page intact, still showing the page it showed, and the station's status is true."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytest
from helpers import COUNTER, OFFICE1, make_relay_config, wait_until
from session_support import call_with_video, media_config, terminal_config

from kiosk.assist.channel import CounterAssist, PageImage, StationAssist
from kiosk.headless import HeadlessCounter, HeadlessStation
from kiosk.video.session import EventKind, SessionState
from relay_server.server import RelayServer

PAGES = 3
PAGE_BYTES = 300_000  # random bytes do not compress: each page is ~33 chunks on the data channel


@pytest.mark.timeout(300)
async def test_a_paper_cut_off_by_a_media_rebuild_arrives_whole_without_staff_action() -> None:
    """The data channel is replaced in the middle of a page: every page arrives intact (SHA-256 checked), none is
    reported damaged, the page shown stays shown, and the station knows all pages arrived and which one is shown."""
    async with RelayServer(make_relay_config()) as srv:
        office = HeadlessStation(
            terminal_config(OFFICE1, srv.url, media_config(document=None)), auto_answer=0.0
        )
        counter = HeadlessCounter(terminal_config(COUNTER, srv.url, media_config()))
        async with office, counter:
            session, station, _, _ = await call_with_video(counter, office, "juumin")
            resident = CounterAssist.attach(session)
            staff = StationAssist.attach(station)
            await wait_until(lambda: bool(session.control.members and station.control.members), 30)

            old_pc = station.mesh.peers[COUNTER].pc
            sctp = old_pc.sctp
            assert sctp is not None
            cut: dict[str, Any] = {}
            deliver = session.control.on_message
            assert deliver is not None

            async def lost(data: bytes) -> None:
                """The station's network cable, pulled: nothing it sends arrives any more."""

            def watch(member: str, msg: Mapping[str, Any]) -> None:
                # The network goes as the 5th chunk of page 2 arrives: page 1 is on screen, page 2 half way (more of
                # it in flight, lost), page 3 still queued at the station. The counter hears nothing, rebuilds.
                deliver(member, msg)
                if not cut and msg.get("assist") == "paper_chunk" and msg["page"] == 1 and msg["n"] == 4:
                    cut["held"] = sorted(resident.papers.get(msg["id"], {}))
                    sctp.transport.transport._send = lost

            session.control.on_message = watch
            pages = [PageImage(os.urandom(PAGE_BYTES), "png", 1240, 1754) for _ in range(PAGES)]
            pid = staff.send_paper(pages, "記入例")

            await wait_until(lambda: bool(cut), 60)
            assert cut["held"] == [0], f"the channel was not cut mid-transfer: {cut['held']}"
            await session.wait_event(EventKind.RECONNECTED, member=OFFICE1, timeout=60)
            assert station.mesh.peers[COUNTER].pc is not old_pc  # a new peer connection, a new data channel

            def complete() -> bool:
                held = resident.papers.get(pid, {})
                return len(held) == PAGES and staff.papers[pid].received == set(range(PAGES))

            await wait_until(complete, 120)
            held = resident.papers[pid]
            assert {n: bytes(p.data) for n, p in held.items()} == {i: p.data for i, p in enumerate(pages)}
            assert resident.shown == (pid, 0)  # the page on screen before the cut is still there
            await wait_until(lambda: staff.papers[pid].shown_page == 0, 30)
            assert not staff.papers[pid].errors, staff.papers[pid].errors  # nothing reported damaged
            assert not resident.errors, resident.errors  # no piece of a page arrived without its beginning
            # Both sides still talk over the new channel.
            resident.turn_page(1)
            await wait_until(lambda: staff.papers[pid].shown_page == 1, 30)
            assert session.state is SessionState.ACTIVE and station.state is SessionState.ACTIVE
