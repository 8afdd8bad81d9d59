"""The peer connections of one call: one per remote member (a mesh of up to 4 terminals), and what flows over them.

A :class:`PeerMesh` makes the offers and answers of a :class:`~kiosk.video.session.CallSession` (the layout of each
peer connection is :mod:`kiosk.video.peer`'s), takes the tracks that arrive (:mod:`kiosk.video.remote`), routes the
data channel's messages — stills to :mod:`kiosk.video.stills_channel`, papers, marks and writing to the
:class:`~kiosk.video.control.ControlLink`, ``bye`` back to the session — and has each connection watched and
rebuilt by its :class:`~kiosk.video.reconnect.MediaKeeper`. Call-level decisions (who is a member, who offers to
whom, when the call ends) stay with the session, which the mesh reaches through the :class:`MeshHost` it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack, RTCDataChannel, RTCSessionDescription

from common.logs import event
from kiosk.video.control import ControlLink
from kiosk.video.events import EventKind, SessionEvent, SessionHooks
from kiosk.video.local_media import LocalMedia
from kiosk.video.peer import (
    LocalTracks,
    Peer,
    add_offer_transceivers,
    attach_answer_tracks,
    gather,
    open_peer,
    track_kind,
)
from kiosk.video.reconnect import KeeperActions, MediaKeeper
from kiosk.video.remote import RemoteTracks, TrackKind
from kiosk.video.still import CONTROL_CHANNEL
from kiosk.video.stills_channel import BUFFER_HIGH, StillsChannel
from kiosk.video.turnprobe import PROBE_TIMEOUT, IcePathBook

__all__ = ["BYE_FLUSH_TIMEOUT", "MeshHost", "PeerMesh"]

log = logging.getLogger(__name__)

BYE_FLUSH_TIMEOUT = 0.5  # how long hangup waits for the direct 'bye' to leave before closing


@dataclass(frozen=True)
class MeshHost:
    """What the mesh asks of its call session.

    Attributes:
        ended: whether the call is over.
        offers: whether this side offers to the member (the protocol's offer rule).
        activate: an offer arrived: the call is active.
        joined: a peer connection to the member was made (``first``: not a rebuild of one that connected before).
        signal: send signal data to a member through the relay.
        relay: send a message to the relay (errors logged, never raised).
        call_id: the call's id, once known.
        on_bye: a member said on the data channel that it is going, and why.
        media_failed: a member's media did not come back within the reconnect window: end the call.
        emit: report an event.
        spawn: run a coroutine as one of the session's tasks (of the peer's, when one is given).
    """

    ended: Callable[[], bool]
    offers: Callable[[str], bool]
    activate: Callable[[], None]
    joined: Callable[[str, bool], None]
    signal: Callable[[str, dict[str, Any]], Awaitable[None]]
    relay: Callable[[dict[str, Any]], Awaitable[None]]
    call_id: Callable[[], str | None]
    on_bye: Callable[[str, str], Awaitable[None]]
    media_failed: Callable[[str, str], Awaitable[None]]
    emit: Callable[[SessionEvent], None]
    spawn: Callable[..., asyncio.Task[Any]]


class PeerMesh:
    """One call session's peer connections, by member.

    Args:
        terminal_id: this terminal (log lines, still ids).
        role: ``counter`` or ``office`` (only the counter sends its document camera).
        local: this terminal's sources (borrowed).
        host: the session's side of things.
        hooks: the session's observer hooks (``still_sent``).
        control: the session's assist link (papers, marks, writing) on the data channels.
        paths: the terminal's TURN paths.
        codec: the video codec this side offers.
        audio_output: spec of the sink for each remote audio track.
        reconnect_window, attempt_timeout, silence: see :class:`~kiosk.video.reconnect.MediaKeeper`.
    """

    def __init__(
        self,
        terminal_id: str,
        role: str,
        local: LocalMedia,
        host: MeshHost,
        *,
        hooks: SessionHooks,
        control: ControlLink,
        paths: IcePathBook,
        codec: str,
        audio_output: str,
        reconnect_window: float,
        attempt_timeout: float,
        silence: float,
    ) -> None:
        self.terminal_id = terminal_id
        self.local = local
        self.host = host
        self.control = control
        self.paths = paths
        self.codec = codec
        self.peers: dict[str, Peer] = {}
        self.remote = RemoteTracks(audio_output)
        self.outgoing = LocalTracks(local, role, terminal_id)
        self.stills = StillsChannel(
            terminal_id, emit=host.emit, still_sent=hooks.still_sent, ended=host.ended
        )
        self.keeper = MediaKeeper(
            terminal_id,
            paths,
            KeeperActions(
                current=self.peers.get,
                ended=host.ended,
                offers=host.offers,
                reoffer=self._reoffer,
                ask_restart=lambda member, why: host.signal(member, {"kind": "restart", "reason": why}),
                media_failed=host.media_failed,
                emit=host.emit,
                spawn=host.spawn,
                clear_pictures=self.remote.clear_pictures,
            ),
            reconnect_window=reconnect_window,
            attempt_timeout=attempt_timeout,
            silence=silence,
        )

    # -- offers and answers ----------------------------------------------------------------------
    async def on_signal(self, sender: str, data: Mapping[str, Any]) -> None:
        """Signal data relayed from ``sender``: an offer, an answer, a ``bye`` or a request to offer again."""
        kind = data.get("kind")
        if kind == "offer":
            await self.on_offer(sender, data)
        elif kind == "answer":
            await self.on_answer(sender, data)
        elif kind == "bye":
            await self.host.on_bye(sender, str(data.get("reason", "hangup")))
        elif kind == "restart":
            await self.keeper.restart_requested(sender, str(data.get("reason", "")))
        else:
            event(log, "signal_unknown", logging.WARNING, terminal=self.terminal_id, kind=kind, sender=sender)

    async def offer(self, member: str, attempt: int = 1) -> None:
        """Make a peer connection to ``member`` and send it our offer."""
        await self.paths.wait_probed(PROBE_TIMEOUT)
        peer = self._new_peer(member, offerer=True, attempt=attempt)
        pc = peer.pc
        transceivers = add_offer_transceivers(peer, self.outgoing, self.codec)
        self._attach_channel(peer, pc.createDataChannel(CONTROL_CHANNEL))
        await gather(peer, await pc.createOffer(), self.paths, self.keeper.plan(member), self.terminal_id)
        if self.peers.get(member) is not peer:
            return  # replaced while gathering
        peer.labels = {str(t.mid): kind.value for t, kind in transceivers}
        await self.host.signal(
            member, {"kind": "offer", "sdp": pc.localDescription.sdp, "tracks": peer.labels}
        )

    async def on_offer(self, sender: str, data: Mapping[str, Any]) -> None:
        """``sender`` offers: answer it (a new offer from a member we have replaces that connection)."""
        existing = self.peers.get(sender)
        if existing is not None:
            if existing.offerer and self.host.offers(sender):
                event(
                    log,
                    "offer_glare",
                    logging.WARNING,
                    terminal=self.terminal_id,
                    member=sender,
                    kept="own offer",
                )
                return
            # A new offer from the same member replaces the old connection (the other side restarted it).
            self.peers.pop(sender, None)
            await self.close_peer(existing, keep_sinks=True)
        self.host.activate()
        await self.paths.wait_probed(PROBE_TIMEOUT)
        peer = self._new_peer(sender, offerer=False, attempt=existing.attempt + 1 if existing else 1)
        pc = peer.pc
        tracks = data.get("tracks")
        peer.labels = {str(k): str(v) for k, v in tracks.items()} if isinstance(tracks, Mapping) else {}
        await pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
        attach_answer_tracks(peer, self.outgoing)
        await gather(peer, await pc.createAnswer(), self.paths, self.keeper.plan(sender), self.terminal_id)
        peer.answered_at = time.monotonic()
        await self.host.signal(
            sender, {"kind": "answer", "sdp": pc.localDescription.sdp, "tracks": peer.labels}
        )

    async def on_answer(self, sender: str, data: Mapping[str, Any]) -> None:
        """``sender`` answers our pending offer."""
        peer = self.peers.get(sender)
        if peer is None or not peer.offerer or peer.pc.signalingState != "have-local-offer":
            event(
                log,
                "answer_ignored",
                logging.WARNING,
                terminal=self.terminal_id,
                member=sender,
                why="no offer pending",
            )
            return
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))
        peer.answered_at = time.monotonic()

    def _new_peer(self, member: str, offerer: bool, attempt: int = 1) -> Peer:
        plan = self.keeper.plan(member)
        peer = open_peer(
            member, offerer=offerer, attempt=attempt, plan=plan, paths=self.paths, who=self.terminal_id
        )
        self.peers[member] = peer
        pc = peer.pc

        @pc.on("connectionstatechange")
        def _state() -> None:
            self._on_pc_state(peer)

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            self._on_track(peer, track)

        @pc.on("datachannel")
        def _channel(channel: RTCDataChannel) -> None:
            if channel.label == CONTROL_CHANNEL:
                self._attach_channel(peer, channel)

        self.host.joined(member, attempt == 1 and member not in self.keeper.ever_connected)
        self.host.spawn(self.keeper.watch(peer), peer)
        return peer

    async def recheck(self, member: str) -> None:
        """The relay lists ``member`` again (we are back on it): if our media to them is down and they offer, ask
        them to offer again now."""
        peer = self.peers[member]
        if not peer.offerer and (
            peer.down or (peer.connected_at is None and time.monotonic() - peer.created_at > 1.0)
        ):
            await self.host.signal(member, {"kind": "restart", "reason": "relay link back"})

    def open_channel(self, member: str) -> RTCDataChannel | None:
        """The data channel to ``member`` if it is open."""
        peer = self.peers.get(member)
        if peer is None or peer.channel is None or peer.channel.readyState != "open":
            return None
        return peer.channel

    async def _reoffer(self, peer: Peer) -> None:
        """Replace ``peer`` by a new peer connection we offer (the screens keep their sinks)."""
        self.peers.pop(peer.member, None)
        await self.close_peer(peer, keep_sinks=True)
        await self.offer(peer.member, attempt=peer.attempt + 1)

    # -- media events ----------------------------------------------------------------------------
    def _on_track(self, peer: Peer, track: MediaStreamTrack) -> None:
        transceiver = next((t for t in peer.pc.getTransceivers() if t.receiver.track is track), None)
        if transceiver is not None:
            kind = track_kind(peer, transceiver)
        else:
            kind = TrackKind.AUDIO if track.kind == "audio" else TrackKind.CAMERA

        def first() -> None:
            self.host.emit(SessionEvent(EventKind.FIRST_FRAME, member=peer.member, track=kind.value))

        remote = self.remote.receive(peer.member, kind, track, first)
        remote.task = self.host.spawn(remote.consume(), peer)
        self.host.emit(SessionEvent(EventKind.TRACK_ADDED, member=peer.member, track=kind.value))

    def _on_pc_state(self, peer: Peer) -> None:
        state = peer.pc.connectionState
        if peer.closing and state != "closed":
            return  # a replaced connection: its states no longer matter
        if state == "connected" and peer.connected_at is None:
            peer.connected_at = time.monotonic()
            self._on_connected(peer)
        self.host.emit(SessionEvent(EventKind.CONNECTION_STATE, member=peer.member, state=state))
        if peer.closing or self.host.ended():
            return
        if state == "failed":
            self.host.spawn(self.keeper.path_down(peer, "peer connection failed (ICE)"))
        elif state == "closed":
            self.host.spawn(self.keeper.closed_by_remote(peer))

    def _on_connected(self, peer: Peer) -> None:
        path = self.keeper.connected(peer)
        call_id = self.host.call_id()
        if call_id is not None:
            summary = str(path.get("summary", "?")) + (f" via {path['url']}" if path.get("url") else "")
            self.host.spawn(
                self.host.relay({"type": "media_path", "call": call_id, "to": peer.member, "path": summary})
            )

    # -- data channel ----------------------------------------------------------------------------
    def _attach_channel(self, peer: Peer, channel: RTCDataChannel) -> None:
        peer.channel = channel
        channel.bufferedAmountLowThreshold = BUFFER_HIGH // 4
        self.control.attach(peer.member, channel)

        @channel.on("message")
        def _message(message: str | bytes) -> None:
            self._on_channel_message(peer, message)

    def _on_channel_message(self, peer: Peer, message: str | bytes) -> None:
        """Still requests, ``bye`` and assist messages by their JSON; anything else is part of a still."""
        if isinstance(message, str):
            try:
                msg = json.loads(message)
            except ValueError:
                event(
                    log, "channel_message_bad", logging.WARNING, terminal=self.terminal_id, member=peer.member
                )
                return
            if msg.get("still") == "request":
                assert peer.channel is not None
                sid = str(msg.get("id", ""))
                self.host.spawn(self.stills.send(peer.channel, peer.member, sid, self.local.document), peer)
                return
            if "bye" in msg:
                self.host.spawn(self.host.on_bye(peer.member, str(msg["bye"])))
                return
            if isinstance(msg, dict) and self.control.handle(peer.member, msg):
                return
        finish = self.stills.feed(peer.member, message)
        if finish is not None:
            self.host.spawn(finish, peer)

    async def say_bye(self, reason: str) -> None:
        """Tell every member directly (data channel) why we go: works while the relay is away too."""
        channels = [
            p.channel for p in self.peers.values() if p.channel is not None and p.channel.readyState == "open"
        ]
        for channel in channels:
            channel.send(json.dumps({"bye": reason}))
        deadline = time.monotonic() + BYE_FLUSH_TIMEOUT
        while any(c.bufferedAmount > 0 for c in channels) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # -- closing ---------------------------------------------------------------------------------
    async def close_peer(self, peer: Peer, *, keep_sinks: bool = False) -> None:
        """Close one peer connection: its tasks, what we sent and received over it (its member's pictures are
        cleared; the sinks themselves are kept for the screens when ``keep_sinks``: a rebuild)."""
        peer.closing = True
        self.control.detach(peer.member)
        for t in list(peer.tasks):
            t.cancel()
        self.outgoing.release(peer)
        self.stills.forget(peer.member)
        with contextlib.suppress(Exception):
            await peer.pc.close()
        self.remote.drop(peer.member, keep_sinks=keep_sinks)

    async def drop(self, member: str) -> Peer | None:
        """``member`` left the call: close its peer connection, forget its sinks and reconnect state; returns the
        peer connection there was."""
        peer = self.peers.pop(member, None)
        self.keeper.forget(member)
        self.remote.forget(member)
        if peer is not None:
            await self.close_peer(peer)
        return peer

    async def close(self, why: str) -> None:
        """The call ended (``why``): close every peer connection, wipe stills, free the camera adaptation."""
        peers = list(self.peers.values())
        self.peers.clear()
        await asyncio.gather(*(self.close_peer(p) for p in peers))
        self.control.close()  # nothing handed over stays queued once the call is over
        self.remote.clear()
        await self.outgoing.close()  # the camera goes back to full size for the next call
        self.stills.close(why)
