"""The media side of one call: aiortc peer connections to every other member (mesh, up to 4).

A :class:`CallSession` is an edge in the sense of ``ARCHITECTURE.md``: it is fed relay messages
(:meth:`CallSession.on_message`), sends signalling through an injected ``send`` coroutine
(``RelayClient.send``), and reports what happens to its owner through ``on_event`` callbacks
(:class:`SessionEvent`). It never talks to the relay socket or the UI directly.

Media layout (the contract between terminals; ``docs/protocol.md`` should carry a copy under "Media"):

* One ``RTCPeerConnection`` per remote member, all media bundled on one transport (max-bundle).
* Offer rule (protocol v1): the counter offers to every staff member who answers or joins; between
  staff, the member who was in the call first offers to the newcomer. A newcomer only answers.
* The offerer adds its transceivers in this order: ``audio`` (sendrecv), ``camera`` video
  (sendrecv), and — counter only — ``document`` video (sendonly), then a data channel labelled
  :data:`~kiosk.video.still.CONTROL_CHANNEL`. The signal data says which mid carries what:
  ``{"kind": "offer"|"answer", "sdp": SDP, "tracks": {MID: "audio"|"camera"|"document"}}``.
  A receiver that finds no ``tracks`` map falls back to order: first video m-line = camera,
  second = document. The answerer attaches its own camera/audio to the offered transceivers.
* A received video frame is decoded as soon as its last packet is in (:mod:`kiosk.video.jitter`),
  not one frame interval later as aiortc's own receiver does.
* The camera track's resolution follows what this PC's encoders keep up with (``[camera] adapt``,
  :mod:`kiosk.video.adapt`); the document track is never scaled.
* The document track is sent at the camera's full resolution (aiortc never scales video);
  full-resolution lossless stills travel over the data channel (:mod:`kiosk.video.still`).
* ``{"bye": REASON}`` on the data channel (and ``{"kind": "bye", "reason": REASON}`` as signal
  data) tells the other members why this side is going: ``hangup``, ``leave`` or ``media_failed``.
  The data channel works while the relay is away, so a call survives a relay restart and can
  still be ended cleanly.

Failure handling: a peer connection that fails (ICE consent lost) or is closed by the other side
without the relay or a ``bye`` saying that member left ends the call: the session sends ``bye``
and ``hangup`` and reports ``ended`` with reason ``media_failed`` — remote frame sinks are cleared,
so no screen freezes on the last picture. A lost relay link does not touch the media: peer
connections keep running; ``ended`` with reason ``shutdown`` (the relay going down) is reported as
``relay_lost`` instead of ending the call, and the ``call_state`` that follows a reconnection is
reconciled with the peers we have (missing members dropped, missing connections offered by rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from common.transitions import TransitionTable, by_value
from kiosk.video import still as stills
from kiosk.video.adapt import CameraAdaptation
from kiosk.video.control import ControlLink
from kiosk.video.encoders import use_track_encoders
from kiosk.video.ice import rtc_configuration
from kiosk.video.jitter import use_frame_end_jitter_buffer
from kiosk.video.local_media import GatedAudioTrack, LocalMedia
from kiosk.video.membership import offers_to, reconcile
from kiosk.video.paths import IcePath, PathPlan, ReconnectWindow, SilenceWatch
from kiosk.video.turnprobe import (
    PROBE_TIMEOUT,
    IcePathBook,
    apply_tls_context,
    ice_connections,
    selected_path,
)

__all__ = [
    "CODECS",
    "CallSession",
    "EventKind",
    "RemoteTrack",
    "SessionError",
    "SessionEvent",
    "SessionState",
    "offers_to",
]

log = logging.getLogger(__name__)

CODECS = ("vp8", "h264")
TRACK_LABELS = ("camera", "document", "audio")
END_MEDIA_FAILED = "media_failed"
# A peer connection closed by the other side is a failure only if the relay has not said, within
# this time, that the member left or the call ended (the DTLS close can overtake the relay message).
REMOTE_CLOSE_GRACE = 2.0
# An offer whose answer has not come back after this long is given up and made again (the other side was away from
# the relay, or too busy): generous, because a slow peer is not helped by more offers.
ANSWER_TIMEOUT = 15.0
BUFFER_HIGH = 1024 * 1024  # data channel bytes queued before a still transfer waits
BYE_FLUSH_TIMEOUT = 0.5  # how long hangup waits for the direct 'bye' to leave before closing

SendFn = Callable[[dict[str, Any]], Awaitable[None]]


class SessionError(Exception):
    """A call-session operation that cannot be done now (the message says what and in which state)."""


class SessionState(enum.Enum):
    """Life of a session: waiting for the call to become active, active, ended (final)."""

    WAITING = "waiting"
    ACTIVE = "active"
    ENDED = "ended"


_TRANSITIONS: TransitionTable[SessionState] = TransitionTable(
    "call session",
    {
        SessionState.WAITING: {SessionState.ACTIVE, SessionState.ENDED},
        SessionState.ACTIVE: {SessionState.ENDED},
        SessionState.ENDED: set(),
    },
    label=by_value,
)


class EventKind(enum.StrEnum):
    """What a :class:`SessionEvent` reports."""

    MEMBER_JOINED = "member_joined"
    MEMBER_LEFT = "member_left"
    TRACK_ADDED = "track_added"
    FIRST_FRAME = "first_frame"
    CONNECTION_STATE = "connection_state"
    STILL_RECEIVED = "still_received"
    STILL_SENT = "still_sent"
    STILL_FAILED = "still_failed"
    RELAY_LOST = "relay_lost"
    MEDIA_PATH = "media_path"  # connected: detail = the selected candidate pair (turnprobe.selected_path)
    RECONNECTING = "reconnecting"  # media to a member stopped; the session rebuilds it (detail: why, window)
    RECONNECTED = "reconnected"  # media flows again after an outage (detail: outage_s, path)
    ENDED = "ended"


@dataclass(frozen=True)
class SessionEvent:
    """One thing the owner may want to react to.

    Attributes:
        kind: what happened.
        member: the remote terminal concerned (None for ``ended``).
        track: ``camera``/``document``/``audio`` for track events.
        state: the peer connection state for ``connection_state``.
        reason: for ``ended`` (a protocol end reason, or ``media_failed``) and ``still_failed``.
        still: the verified still for ``still_received``.
        detail: anything else (``still_sent``: ``{"id", "pixels_sha256", "frame"}``; ``ended``: ``{"by"}``).
        at: ``time.monotonic()`` of the event.
    """

    kind: EventKind
    member: str | None = None
    track: str | None = None
    state: str | None = None
    reason: str | None = None
    still: stills.Still | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class _CountingTrack(MediaStreamTrack):
    """Proxy for a remote track that counts frames and notes the first one and the picture size."""

    def __init__(self, source: MediaStreamTrack, on_first: Callable[[], None]) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._on_first: Callable[[], None] | None = on_first
        self.frames = 0
        self.width = 0
        self.height = 0
        self.first_frame_at: float | None = None

    async def recv(self) -> Any:
        frame: Any = await self._source.recv()
        self.frames += 1
        if self.kind == "video":
            self.width, self.height = frame.width, frame.height
        if self._on_first is not None:
            self.first_frame_at = time.monotonic()
            cb, self._on_first = self._on_first, None
            cb()
        return frame


@dataclass
class RemoteTrack:
    """A track received from one member, with where it goes.

    Attributes:
        member: sender's terminal id.
        label: ``camera``, ``document`` or ``audio``.
        frame_sink: for video: the latest decoded RGB frame (``FrameSink.latest()``).
        audio_sink: for audio: the speaker output, with ``level()`` and ``dominant_frequency()``.
        added_at: ``time.monotonic()`` when the track was negotiated.
    """

    member: str
    label: str
    track: _CountingTrack
    frame_sink: Any = None
    audio_sink: Any = None
    added_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[Any] | None = None

    @property
    def frames(self) -> int:
        return self.track.frames

    @property
    def first_frame_at(self) -> float | None:
        return self.track.first_frame_at

    @property
    def resolution(self) -> tuple[int, int]:
        return self.track.width, self.track.height


@dataclass
class _Peer:
    member: str
    pc: RTCPeerConnection
    offerer: bool
    labels: dict[str, str] = field(default_factory=dict)  # mid → label
    local_tracks: list[MediaStreamTrack] = field(default_factory=list)
    channel: RTCDataChannel | None = None
    assembler: stills.StillAssembler = field(default_factory=stills.StillAssembler)
    closing: bool = False
    connected_at: float | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    path: IcePath | None = None  # the one TURN path this peer connection may use (None: host/STUN only)
    attempt: int = 1
    created_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = (
        None  # offer and answer both applied: from here ICE has attempt_timeout to connect
    )
    down: bool = False  # its media stopped; a new peer connection is being set up


class CallSession:
    """Peer connections for one call, driven by relay messages.

    Args:
        terminal_id: this terminal's id (``welcome.terminal``).
        role: ``counter`` or ``office``.
        local: this terminal's sources (borrowed, never closed by the session).
        send: coroutine that sends one message to the relay (``RelayClient.send``); errors are logged.
        call_id: the call, if known; otherwise adopted from the first ``ringing`` (counter) or
            ``call_state`` (office) message.
        ice_servers: ``welcome.ice_servers``; empty = host candidates only.
        codec: ``vp8`` or ``h264`` (``[network] codec``), preferred for the video this side offers.
        audio_output: spec for ``open_audio_sink`` used for each remote audio track.
        on_event: called with every :class:`SessionEvent` (exceptions are logged, not raised).
        paths: the terminal's probed TURN paths (:class:`~kiosk.video.turnprobe.IcePathBook`); default: a book
            of ``ice_servers`` without probes (paths then tried UDP, TCP, TLS).
        reconnect_window: seconds an outage of a member's media may last before the call ends
            (``[network] reconnect_window``).
        attempt_timeout: seconds a new peer connection may take to connect before the next path is tried.
        silence: seconds without a received packet after which a connected member's media counts as down.
    """

    def __init__(
        self,
        terminal_id: str,
        role: str,
        local: LocalMedia,
        send: SendFn,
        *,
        call_id: str | None = None,
        ice_servers: Iterable[Mapping[str, Any]] | None = None,
        codec: str = "vp8",
        audio_output: str = "null",
        on_event: Callable[[SessionEvent], Any] | None = None,
        paths: IcePathBook | None = None,
        reconnect_window: float = 30.0,
        attempt_timeout: float = 6.0,
        silence: float = 2.5,
    ) -> None:
        if role not in ("counter", "office"):
            raise SessionError(f"CallSession role must be 'counter' or 'office', got {role!r}")
        if codec not in CODECS:
            raise SessionError(f"[network] codec must be one of {', '.join(CODECS)}, got {codec!r}")
        self.terminal_id = terminal_id
        self.role = role
        self.local = local
        self.call_id = call_id
        self.codec = codec
        self.audio_output = audio_output
        self.ice_servers: list[Mapping[str, Any]] = list(ice_servers or ())
        self.on_event = on_event
        self.state = SessionState.WAITING
        self.end_reason: str | None = None
        self.counter_id: str | None = terminal_id if role == "counter" else None
        self.order: list[str] = [terminal_id] if role == "counter" else []
        self.stills: list[stills.Still] = []
        self.events: list[SessionEvent] = []
        self.ended = asyncio.Event()
        self.relay_call_lost = False
        self._send = send
        self._peers: dict[str, _Peer] = {}
        self._remote: dict[tuple[str, str], RemoteTrack] = {}
        self._audio_gates: list[GatedAudioTrack] = []
        self._adaptation: CameraAdaptation | None = None
        self._mic_muted = False
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._still_waiters: dict[str, asyncio.Future[stills.Still]] = {}
        self._still_ids = itertools.count(1)
        self._remote_bye: dict[str, str] = {}
        self._waiters: list[tuple[Callable[[SessionEvent], bool], asyncio.Future[SessionEvent]]] = []
        self.control = ControlLink()  # papers, marks, writing (kiosk.assist) on the data channel
        self._own_book = paths is None
        self.paths = paths if paths is not None else IcePathBook(self.ice_servers)
        self.reconnect_window = reconnect_window
        self.attempt_timeout = attempt_timeout
        self.silence = silence
        self._plans: dict[str, PathPlan] = {}
        self._outages: dict[str, ReconnectWindow] = {}
        self._media_paths: dict[str, dict[str, Any]] = {}
        self._ever_connected: set[str] = set()
        self._sinks: dict[tuple[str, str], Any] = {}  # FrameSinks survive a rebuilt peer connection

    # -- public API ------------------------------------------------------------------------------
    @property
    def members(self) -> list[str]:
        """Remote members we have (or are setting up) a peer connection with, in join order."""
        known = [m for m in self.order if m in self._peers]
        return known + [m for m in self._peers if m not in known]

    def remote_tracks(self, member: str | None = None) -> list[RemoteTrack]:
        """Tracks received so far (from one member, or from everyone)."""
        return [t for (m, _), t in self._remote.items() if member is None or m == member]

    def remote_track(self, member: str, label: str) -> RemoteTrack | None:
        """The ``camera``/``document``/``audio`` track received from ``member``, if any."""
        return self._remote.get((member, label))

    def frame_sink(self, member: str, label: str = "camera") -> Any:
        """The FrameSink showing ``member``'s ``camera`` or ``document`` video, or None."""
        t = self._remote.get((member, label))
        return t.frame_sink if t is not None else None

    def audio_sink(self, member: str) -> Any:
        """The AudioSink playing ``member``'s audio, or None."""
        t = self._remote.get((member, "audio"))
        return t.audio_sink if t is not None else None

    def connection_state(self, member: str) -> str | None:
        """``RTCPeerConnection.connectionState`` towards ``member`` (None if no peer connection)."""
        peer = self._peers.get(member)
        return peer.pc.connectionState if peer is not None else None

    def connected_at(self, member: str) -> float | None:
        """``time.monotonic()`` when the connection to ``member`` first reached ``connected``."""
        peer = self._peers.get(member)
        return peer.connected_at if peer is not None else None

    def media_path(self, member: str) -> dict[str, Any] | None:
        """The candidate pair that carries media to ``member`` (``{"local", "transport", "remote", "turn",
        "summary"}``, see :func:`~kiosk.video.turnprobe.selected_path`), once connected."""
        return self._media_paths.get(member)

    def path_failures(self, member: str) -> list[dict[str, str]]:
        """The attempts towards ``member`` that failed, oldest first: ``[{"url", "why"}]``."""
        plan = self._plans.get(member)
        return [{"url": u, "why": w} for u, w in plan.failures] if plan is not None else []

    def reconnecting(self, member: str | None = None) -> bool:
        """Whether media to ``member`` (or to anyone) is down and being rebuilt."""
        return any(w.active for m, w in self._outages.items() if member is None or m == member)

    @property
    def mic_muted(self) -> bool:
        return self._mic_muted

    def set_mic_muted(self, muted: bool) -> None:
        """Mute or unmute the microphone towards every member (silence is sent while muted)."""
        self._mic_muted = muted
        for gate in self._audio_gates:
            gate.muted = muted

    def set_document_rotation(self, degrees: int) -> None:
        """Rotate the document camera (0/90/180/270) for every member; resolution is kept."""
        if self.local.document is None:
            raise SessionError(f"terminal {self.terminal_id} has no document camera to rotate")
        self.local.document.set_rotation(degrees)

    async def on_message(self, msg: Mapping[str, Any]) -> None:
        """Feed one relay message (any type; messages for other calls are ignored).

        Returns at once: messages are handled in order by a worker task, so a slow ICE gathering
        never blocks the relay client's receive loop.
        """
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="call-session")
        self._inbox.put_nowait(dict(msg))

    async def request_still(self, member: str | None = None, timeout: float = 60.0) -> stills.Still:
        """Ask the kiosk for a full-resolution document still; returns it verified (staff side).

        Args:
            member: the counter's terminal id (default: the call's counter).
            timeout: seconds to wait for the transfer.

        Raises:
            SessionError: no data channel to that member (not connected yet, or not a counter).
            stills.StillError: the kiosk could not send it, or it arrived damaged.
            TimeoutError: nothing arrived in time.
        """
        member = member or self.counter_id
        peer = self._peers.get(member) if member else None
        if peer is None or peer.channel is None or peer.channel.readyState != "open":
            raise SessionError(
                f"no open data channel to {member!r} in call {self.call_id} "
                f"(session {self.state.value}); stills come from the counter once connected"
            )
        sid = f"{self.terminal_id}-{next(self._still_ids)}"
        fut: asyncio.Future[stills.Still] = asyncio.get_running_loop().create_future()
        self._still_waiters[sid] = fut
        peer.channel.send(json.dumps({"still": "request", "id": sid}))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._still_waiters.pop(sid, None)

    async def wait_event(
        self,
        kind: EventKind,
        *,
        member: str | None = None,
        track: str | None = None,
        timeout: float = 10.0,
        past: bool = True,
    ) -> SessionEvent:
        """Wait for an event of ``kind`` (optionally for one member/track); ``past`` includes earlier ones."""

        def match(e: SessionEvent) -> bool:
            return (
                e.kind == kind
                and (member is None or e.member == member)
                and (track is None or e.track == track)
            )

        if past:
            for e in self.events:
                if match(e):
                    return e
        fut: asyncio.Future[SessionEvent] = asyncio.get_running_loop().create_future()
        entry = (match, fut)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self.terminal_id}: no '{kind.value}' event (member={member}, track={track}) "
                f"within {timeout} s; session {self.state.value}, "
                f"events so far: {[e.kind.value for e in self.events]}"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def hangup(self) -> None:
        """End the call for everyone: send ``hangup`` (best effort) and end locally."""
        if self.state is SessionState.ENDED:
            return
        await self._say_bye("hangup")
        if self.call_id is not None:
            await self._relay({"type": "hangup", "call": self.call_id})
        await self._end("hangup", by=self.terminal_id)

    async def leave(self) -> None:
        """Leave the call without ending it for the others (staff): send ``leave`` and end locally."""
        if self.role != "office":
            raise SessionError("only a staff station can leave a call; the counter hangs up")
        if self.state is SessionState.ENDED:
            return
        await self._say_bye("leave")
        if self.call_id is not None:
            await self._relay({"type": "leave", "call": self.call_id})
        await self._end("leave", by=self.terminal_id)

    async def close(self) -> None:
        """End locally without telling the relay (the owner already did, or the process is stopping)."""
        await self._end("closed", by=self.terminal_id)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None

    async def __aenter__(self) -> CallSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- relay messages --------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            msg = await self._inbox.get()
            try:
                await self._handle(msg)
            except Exception:
                log.exception("%s: call session failed to handle %r", self.terminal_id, msg.get("type"))

    async def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "welcome":
            self.ice_servers = list(msg.get("ice_servers") or ())
            if self._own_book:
                self.paths.set_servers(self.ice_servers)
            return
        if self.state is SessionState.ENDED:
            return
        call = msg.get("call")
        if (
            self.call_id is None
            and isinstance(call, str)
            and (
                (kind == "ringing" and self.role == "counter")
                or (kind == "call_state" and self.role == "office")
            )
        ):
            self.call_id = call
        if call is None or call != self.call_id:
            return
        if kind == "answered":
            self._activate()
            await self._member_present(msg["by"])
        elif kind == "call_state":
            await self._call_state(msg)
        elif kind == "joined":
            terminal = msg["terminal"]
            if terminal != self.terminal_id:
                self._activate()
                await self._member_present(terminal)
        elif kind == "left":
            await self._drop_member(msg["terminal"], msg.get("reason", "leave"))
        elif kind == "ended":
            if msg.get("reason") == "shutdown" and self.state is SessionState.ACTIVE:
                # The relay is going away, not the call: media is peer to peer and carries on (or is being
                # rebuilt: no peer connection at this instant is no reason to end). The members resume the call
                # on the restarted relay, and can always end it (bye over the data channel).
                log.warning("%s: relay shut down during call %s; media continues", self.terminal_id, call)
                self.relay_call_lost = True
                self._emit(SessionEvent(EventKind.RELAY_LOST, reason="shutdown"))
                return
            member_reason = next(iter(self._remote_bye.values()), None)
            await self._end(member_reason or msg.get("reason", "hangup"), by=msg.get("by"))
        elif kind == "signal":
            await self._signal(msg["from"], msg.get("data") or {})

    def _activate(self) -> None:
        if self.state is SessionState.WAITING:
            self._set_state(SessionState.ACTIVE)

    def _set_state(self, new: SessionState) -> None:
        self.state = _TRANSITIONS.move(self.state, new, log, subject=f"{self.call_id} ({self.terminal_id})")

    async def _call_state(self, msg: dict[str, Any]) -> None:
        state = msg.get("state")
        if state == "ended":
            await self._end(msg.get("reason", "hangup"))
            return
        if state != "active":
            return
        self._activate()
        self.counter_id = msg.get("counter", self.counter_id)
        changes = reconcile(self.terminal_id, msg.get("members", []), list(self._peers))
        self.order = changes.order
        for member in changes.gone:
            await self._drop_member(member, "disconnected")
        for member in changes.present:
            await self._member_present(member)

    async def _member_present(self, member: str) -> None:
        if member not in self.order:
            self.order.append(member)
        if member in self._peers:
            peer = self._peers[member]
            if not peer.offerer and (
                peer.down or (peer.connected_at is None and time.monotonic() - peer.created_at > 1.0)
            ):
                # We are back on the relay and our media to them is down: ask them to offer again now.
                await self._signal_to(member, {"kind": "restart", "reason": "relay link back"})
            return
        if offers_to(self.terminal_id, member, counter=self.counter_id, order=self.order):
            await self._offer(member)

    async def _drop_member(self, member: str, reason: str) -> None:
        peer = self._peers.pop(member, None)
        if member in self.order and member != self.terminal_id:
            self.order.remove(member)
        # A member that left is no longer being reconnected; if invited again it joins afresh.
        for per_member in (self._outages, self._plans, self._media_paths):
            per_member.pop(member, None)
        self._ever_connected.discard(member)
        for key in [k for k in self._sinks if k[0] == member]:
            self._sinks.pop(key).clear()
        if peer is None:
            return
        await self._close_peer(peer)
        self._emit(SessionEvent(EventKind.MEMBER_LEFT, member=member, reason=reason))

    # -- signalling ------------------------------------------------------------------------------
    async def _signal(self, sender: str, data: Mapping[str, Any]) -> None:
        kind = data.get("kind")
        if kind == "offer":
            await self._on_offer(sender, data)
        elif kind == "answer":
            peer = self._peers.get(sender)
            if peer is None or not peer.offerer or peer.pc.signalingState != "have-local-offer":
                log.warning("%s: ignoring answer from %s (no offer pending)", self.terminal_id, sender)
                return
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))
            peer.answered_at = time.monotonic()
        elif kind == "bye":
            await self._on_bye(sender, str(data.get("reason", "hangup")))
        elif kind == "restart":
            await self._on_restart_request(sender, str(data.get("reason", "")))
        else:
            log.warning("%s: unknown signal kind %r from %s", self.terminal_id, kind, sender)

    def _plan(self, member: str) -> PathPlan:
        plan = self._plans.get(member)
        if plan is None:
            plan = self._plans[member] = PathPlan(self.paths.ordered())
        return plan

    def _new_peer(self, member: str, offerer: bool, attempt: int = 1) -> _Peer:
        use_frame_end_jitter_buffer()  # decode each remote frame at its last packet (kiosk.video.jitter)
        use_track_encoders()  # VP8 settings per track: camera or document (kiosk.video.encoders)
        # aiortc uses only the first TURN URL it is given: each peer connection gets one path, chosen by the plan.
        path = self._plan(member).current()
        servers = self.paths.stun_servers() + ([path.server()] if path is not None else [])
        pc = RTCPeerConnection(rtc_configuration(servers))
        peer = _Peer(member=member, pc=pc, offerer=offerer, path=path, attempt=attempt)
        self._peers[member] = peer
        log.info(
            "%s: media to %s, attempt %d, over %s",
            self.terminal_id,
            member,
            attempt,
            path.url if path is not None else "host/STUN candidates only (no TURN server)",
        )

        @pc.on("connectionstatechange")
        def _state() -> None:
            self._on_pc_state(peer)

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            self._on_track(peer, track)

        @pc.on("datachannel")
        def _channel(channel: RTCDataChannel) -> None:
            if channel.label == stills.CONTROL_CHANNEL:
                self._attach_channel(peer, channel)

        if member not in self.order:
            self.order.append(member)
        if attempt == 1 and member not in self._ever_connected:
            self._emit(SessionEvent(EventKind.MEMBER_JOINED, member=member))
        self._spawn(self._watch(peer), peer)
        return peer

    async def _gather(self, peer: _Peer, description: RTCSessionDescription) -> None:
        """``setLocalDescription`` (aiortc gathers every candidate there), with our TLS context for turns:,
        and a log line when the TURN path gave no relay candidate (aioice gives up after 5 s silently)."""
        apply_tls_context(peer.pc, self.paths.context)
        await peer.pc.setLocalDescription(description)
        if peer.path is not None:
            types = {c.type for conn in ice_connections(peer.pc) for c in conn.local_candidates}
            if "relay" not in types:
                why = "no TURN allocation within 5 s"
                result = self.paths.results.get(peer.path.url)
                if result is not None and not result.ok:
                    why += f"; last probe: {result.explain()}"
                log.warning("%s: %s gave no relay candidate (%s)", self.terminal_id, peer.path.url, why)
                self._plan(peer.member).failed(peer.path, why)
                self.paths.refresh()

    def _local_track(self, peer: _Peer, label: str) -> MediaStreamTrack | None:
        track: MediaStreamTrack | None = None
        if label == "audio" and self.local.audio is not None:
            gate = GatedAudioTrack(self.local.audio.track())
            gate.muted = self._mic_muted
            self._audio_gates.append(gate)
            track = gate
        elif label == "camera" and self.local.camera is not None:
            track = self._camera_track()
        elif label == "document" and self.local.document is not None and self.role == "counter":
            track = self.local.document.track()
        if track is not None:
            peer.local_tracks.append(track)
        return track

    def _camera_track(self) -> MediaStreamTrack:
        """A subscription of the local camera for one peer; metered when ``[camera] adapt`` lets the resolution
        follow what the encoders keep up with (:mod:`kiosk.video.adapt`)."""
        camera = self.local.camera
        assert camera is not None
        cfg = getattr(camera, "config", None)
        if not (getattr(cfg, "adapt", False) and hasattr(camera, "set_scale")):
            return camera.track()
        if self._adaptation is None:
            self._adaptation = CameraAdaptation(
                camera,  # type: ignore[arg-type]
                cfg.width,  # type: ignore[union-attr]
                name=f"{self.terminal_id} camera",
                start_small=True,
            )
        return self._adaptation.track()

    def _prefer_codec(self, transceiver: RTCRtpTransceiver) -> None:
        caps = RTCRtpSender.getCapabilities("video")
        wanted = f"video/{self.codec}"
        preferred = [c for c in caps.codecs if c.mimeType.lower() == wanted]
        if not preferred:
            raise SessionError(f"codec {self.codec!r} is not available in this aiortc build")
        rtx = [c for c in caps.codecs if c.mimeType.lower() == "video/rtx"]
        transceiver.setCodecPreferences(preferred + rtx)

    async def _offer(self, member: str, attempt: int = 1) -> None:
        await self.paths.wait_probed(PROBE_TIMEOUT)
        peer = self._new_peer(member, offerer=True, attempt=attempt)
        pc = peer.pc
        audio = self._local_track(peer, "audio")
        t_audio = pc.addTransceiver(
            audio if audio is not None else "audio", direction="sendrecv" if audio is not None else "recvonly"
        )
        camera = self._local_track(peer, "camera")
        t_camera = pc.addTransceiver(
            camera if camera is not None else "video",
            direction="sendrecv" if camera is not None else "recvonly",
        )
        self._prefer_codec(t_camera)
        transceivers = [(t_audio, "audio"), (t_camera, "camera")]
        document = self._local_track(peer, "document")
        if document is not None:
            t_doc = pc.addTransceiver(document, direction="sendonly")
            self._prefer_codec(t_doc)
            transceivers.append((t_doc, "document"))
        self._attach_channel(peer, pc.createDataChannel(stills.CONTROL_CHANNEL))
        await self._gather(peer, await pc.createOffer())
        if self._peers.get(member) is not peer:
            return  # replaced while gathering
        peer.labels = {str(t.mid): label for t, label in transceivers}
        await self._signal_to(
            member, {"kind": "offer", "sdp": pc.localDescription.sdp, "tracks": peer.labels}
        )

    async def _on_offer(self, sender: str, data: Mapping[str, Any]) -> None:
        existing = self._peers.get(sender)
        if existing is not None:
            if existing.offerer and offers_to(
                self.terminal_id, sender, counter=self.counter_id, order=self.order
            ):
                log.warning("%s: glare with %s; keeping our own offer", self.terminal_id, sender)
                return
            # A new offer from the same member replaces the old connection (the other side restarted it).
            self._peers.pop(sender, None)
            await self._close_peer(existing, keep_sinks=True)
        self._activate()
        await self.paths.wait_probed(PROBE_TIMEOUT)
        peer = self._new_peer(sender, offerer=False, attempt=existing.attempt + 1 if existing else 1)
        pc = peer.pc
        tracks = data.get("tracks")
        peer.labels = {str(k): str(v) for k, v in tracks.items()} if isinstance(tracks, Mapping) else {}
        await pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
        for t in pc.getTransceivers():
            label = self._label(peer, t)
            if label not in ("audio", "camera"):
                continue
            track = self._local_track(peer, label)
            if track is not None:
                t.sender.replaceTrack(track)
                t.direction = "sendrecv"
        await self._gather(peer, await pc.createAnswer())
        peer.answered_at = time.monotonic()
        await self._signal_to(
            sender, {"kind": "answer", "sdp": pc.localDescription.sdp, "tracks": peer.labels}
        )

    def _label(self, peer: _Peer, transceiver: RTCRtpTransceiver) -> str:
        mid = str(transceiver.mid)
        if mid in peer.labels:
            return peer.labels[mid]
        if transceiver.kind == "audio":
            return "audio"
        videos = [t for t in peer.pc.getTransceivers() if t.kind == "video"]
        return "document" if videos.index(transceiver) == 1 else "camera"

    async def _signal_to(self, member: str, data: dict[str, Any]) -> None:
        if self.call_id is None:
            raise SessionError(f"{self.terminal_id}: cannot signal {member} before the call id is known")
        await self._relay({"type": "signal", "call": self.call_id, "to": member, "data": data})

    async def _relay(self, msg: dict[str, Any]) -> None:
        try:
            await self._send(msg)
        except Exception as err:  # NotConnected while the relay is away: media carries on regardless
            log.warning("%s: could not send %r to the relay: %s", self.terminal_id, msg.get("type"), err)

    # -- media events ----------------------------------------------------------------------------
    def _on_track(self, peer: _Peer, track: MediaStreamTrack) -> None:
        transceiver = next((t for t in peer.pc.getTransceivers() if t.receiver.track is track), None)
        label = (
            self._label(peer, transceiver)
            if transceiver is not None
            else ("audio" if track.kind == "audio" else "camera")
        )
        key = (peer.member, label)

        def first() -> None:
            self._emit(SessionEvent(EventKind.FIRST_FRAME, member=peer.member, track=label))

        counting = _CountingTrack(track, first)
        remote = RemoteTrack(member=peer.member, label=label, track=counting)
        if track.kind == "video":
            from kiosk.video.sink import FrameSink, consume_track

            sink = self._sinks.get(key)
            if sink is None:
                sink = self._sinks[key] = FrameSink(f"{peer.member}/{label}")
            remote.frame_sink = sink
            coro: Awaitable[Any] = consume_track(counting, remote.frame_sink)
        else:
            from kiosk.devices.audio import open_audio_sink

            remote.audio_sink = open_audio_sink(self.audio_output)
            coro = remote.audio_sink.consume(counting)
        remote.task = self._spawn(self._consume(coro, key), peer)
        self._remote[key] = remote
        self._emit(SessionEvent(EventKind.TRACK_ADDED, member=peer.member, track=label))

    async def _consume(self, coro: Awaitable[Any], key: tuple[str, str]) -> None:
        try:
            await coro
        except MediaStreamError:
            pass
        except Exception:
            log.exception("%s: receiving %s from %s failed", self.terminal_id, key[1], key[0])

    def _on_pc_state(self, peer: _Peer) -> None:
        state = peer.pc.connectionState
        if peer.closing and state != "closed":
            return  # a replaced connection: its states no longer matter
        if state == "connected" and peer.connected_at is None:
            peer.connected_at = time.monotonic()
            self._on_connected(peer)
        self._emit(SessionEvent(EventKind.CONNECTION_STATE, member=peer.member, state=state))
        if peer.closing or self.state is SessionState.ENDED:
            return
        if state == "failed":
            self._spawn(self._path_down(peer, "peer connection failed (ICE)"))
        elif state == "closed":
            self._spawn(self._closed_by_remote(peer))

    def _on_connected(self, peer: _Peer) -> None:
        path = selected_path(peer.pc) or {}
        if peer.path is not None:
            path["url"] = peer.path.url
        self._media_paths[peer.member] = path
        self._ever_connected.add(peer.member)
        log.info(
            "%s: media to %s connected over %s (attempt %d, %s)",
            self.terminal_id,
            peer.member,
            path.get("summary", "?"),
            peer.attempt,
            path.get("url", "no TURN"),
        )
        self._emit(SessionEvent(EventKind.MEDIA_PATH, member=peer.member, detail=dict(path)))
        if self.call_id is not None:
            summary = str(path.get("summary", "?")) + (f" via {path['url']}" if path.get("url") else "")
            self._spawn(
                self._relay({"type": "media_path", "call": self.call_id, "to": peer.member, "path": summary})
            )
        outage = self._outages.get(peer.member)
        if outage is not None and outage.active:
            lasted = outage.end(time.monotonic())
            log.info("%s: media to %s back after %.1f s", self.terminal_id, peer.member, lasted)
            self._emit(
                SessionEvent(
                    EventKind.RECONNECTED,
                    member=peer.member,
                    detail={"outage_s": round(lasted, 3), "path": path.get("summary", "")},
                )
            )

    # -- keeping media alive ---------------------------------------------------------------------
    def _outage(self, member: str) -> ReconnectWindow:
        w = self._outages.get(member)
        if w is None:
            w = self._outages[member] = ReconnectWindow(self.reconnect_window, self.attempt_timeout)
        return w

    async def _watch(self, peer: _Peer) -> None:
        """One peer connection's health: connect within ``attempt_timeout``, then keep receiving packets."""
        watch = SilenceWatch(self.silence)
        while not peer.closing and self.state is not SessionState.ENDED:
            await asyncio.sleep(0.5)
            if peer.closing or self._peers.get(peer.member) is not peer:
                return
            now = time.monotonic()
            outage = self._outages.get(peer.member)
            if outage is not None and outage.expired(now):
                await self._rebuild(peer, f"media not back within {self.reconnect_window:g} s")
                return
            if peer.down:
                # Waiting for the offerer's new offer (we are the answerer): ask again, or give up.
                if now - peer.created_at >= self.attempt_timeout:
                    peer.created_at = now
                    await self._rebuild(peer, "still no media")
                continue
            if peer.connected_at is None:
                if peer.answered_at is None and now - peer.created_at >= ANSWER_TIMEOUT:
                    await self._attempt_failed(peer, f"no answer to the offer within {ANSWER_TIMEOUT:g} s")
                    if peer.offerer:
                        return
                elif peer.answered_at is not None and now - peer.answered_at >= self.attempt_timeout:
                    await self._attempt_failed(peer, f"not connected within {self.attempt_timeout:g} s")
                    if peer.offerer:
                        return
                continue
            received = 0
            with contextlib.suppress(Exception):
                for stat in (await peer.pc.getStats()).values():
                    if getattr(stat, "type", "") == "transport":
                        received = max(received, int(getattr(stat, "packetsReceived", 0) or 0))
            if watch.feed(now, received):
                await self._path_down(peer, f"no packet received for {self.silence:g} s")
                if not peer.offerer:
                    continue  # keep watching: resend the restart request until an offer comes
                return

    async def _attempt_failed(self, peer: _Peer, why: str) -> None:
        """A new peer connection did not connect: log why, move its path to the back, try the next one."""
        plan = self._plan(peer.member)
        allocated = peer.path is None or any(
            c.type == "relay" for conn in ice_connections(peer.pc) for c in conn.local_candidates
        )
        # Without an allocation here, _gather has already moved the path to the back (with its reason).
        nxt = plan.failed(peer.path, why, own_fault=False) if allocated else plan.current()
        log.warning(
            "%s: attempt %d to %s over %s failed: %s; next: %s",
            self.terminal_id,
            peer.attempt,
            peer.member,
            peer.path.url if peer.path else "host/STUN",
            why,
            nxt.url if nxt is not None else "host/STUN again",
        )
        self.paths.refresh()  # the network may have changed: re-probe in the background
        await self._path_down(peer, why)

    async def _path_down(self, peer: _Peer, why: str) -> None:
        """Media to a member stopped (or never started): rebuild it, within the reconnect window."""
        if self._peers.get(peer.member) is not peer or self.state is SessionState.ENDED:
            return
        outage = self._outage(peer.member)
        now = time.monotonic()
        if not outage.active:
            outage.begin(now)
            if peer.member in self._ever_connected:
                log.warning(
                    "%s: media to %s lost (%s); reconnecting for up to %g s",
                    self.terminal_id,
                    peer.member,
                    why,
                    self.reconnect_window,
                )
                for (m, _), sink in self._sinks.items():
                    if m == peer.member:
                        sink.clear()  # a calm "reconnecting" instead of a frozen picture
                self._emit(
                    SessionEvent(
                        EventKind.RECONNECTING,
                        member=peer.member,
                        reason=why,
                        detail={"window_s": self.reconnect_window},
                    )
                )
        # Not awaited: the rebuild closes this peer connection, whose tasks may be the caller.
        self._spawn(self._rebuild(peer, why))

    async def _rebuild(self, peer: _Peer, why: str) -> None:
        member = peer.member
        if self._peers.get(member) is not peer or self.state is SessionState.ENDED:
            return
        outage = self._outage(member)
        if outage.expired(time.monotonic()):
            # Spawned: ending closes every peer connection, and with it the task that may be running this.
            self._spawn(self._media_failed(member, f"no media for {self.reconnect_window:g} s ({why})"))
            return
        if offers_to(self.terminal_id, member, counter=self.counter_id, order=self.order):
            self._peers.pop(member, None)
            await self._close_peer(peer, keep_sinks=True)
            await self._offer(member, attempt=peer.attempt + 1)
        else:
            peer.down = True
            await self._signal_to(member, {"kind": "restart", "reason": why})

    async def _on_restart_request(self, member: str, why: str) -> None:
        """The answerer lost our media and asks for a new offer (we are the offerer)."""
        peer = self._peers.get(member)
        if peer is None or self.state is SessionState.ENDED:
            return
        if not offers_to(self.terminal_id, member, counter=self.counter_id, order=self.order):
            return
        if peer.connected_at is None and time.monotonic() - peer.created_at < 1.0:
            return  # an attempt has just started (its offer may be what they are waiting for)
        log.info("%s: %s asks for a new offer (%s)", self.terminal_id, member, why)
        await self._path_down(peer, f"{member} lost the media ({why})")

    async def _closed_by_remote(self, peer: _Peer) -> None:
        deadline = time.monotonic() + REMOTE_CLOSE_GRACE
        while time.monotonic() < deadline:
            if self.state is SessionState.ENDED or self._peers.get(peer.member) is not peer:
                return
            await asyncio.sleep(0.05)
        if self.state is not SessionState.ENDED and self._peers.get(peer.member) is peer:
            await self._path_down(peer, "peer connection closed by the other side")

    async def _media_failed(self, member: str, why: str) -> None:
        if self.state is SessionState.ENDED:
            return
        log.warning(
            "%s: media to %s failed (%s); ending call %s", self.terminal_id, member, why, self.call_id
        )
        await self._say_bye(END_MEDIA_FAILED)
        if self.call_id is not None:
            for other in list(self._peers):
                await self._signal_to(other, {"kind": "bye", "reason": END_MEDIA_FAILED})
            await self._relay({"type": "hangup", "call": self.call_id})
        await self._end(END_MEDIA_FAILED, by=self.terminal_id, detail={"member": member, "why": why})

    # -- data channel and stills -----------------------------------------------------------------
    def _attach_channel(self, peer: _Peer, channel: RTCDataChannel) -> None:
        peer.channel = channel
        channel.bufferedAmountLowThreshold = BUFFER_HIGH // 4
        self.control.attach(peer.member, channel)

        @channel.on("message")
        def _message(message: str | bytes) -> None:
            self._on_channel_message(peer, message)

    def _on_channel_message(self, peer: _Peer, message: str | bytes) -> None:
        if isinstance(message, str):
            try:
                msg = json.loads(message)
            except ValueError:
                log.warning("%s: bad data channel message from %s", self.terminal_id, peer.member)
                return
            if msg.get("still") == "request":
                self._spawn(self._send_still(peer, str(msg.get("id", ""))), peer)
                return
            if "bye" in msg:
                self._spawn(self._on_bye(peer.member, str(msg["bye"])))
                return
            if isinstance(msg, dict) and self.control.handle(peer.member, msg):
                return
        try:
            done = peer.assembler.feed(message)
        except stills.StillError as err:
            self._still_failed(peer, str(err), None)
            return
        if done is not None:
            self._spawn(self._finish_still(peer, *done), peer)

    def _still_failed(self, peer: _Peer, why: str, sid: str | None) -> None:
        log.warning("%s: still from %s failed: %s", self.terminal_id, peer.member, why)
        self._emit(SessionEvent(EventKind.STILL_FAILED, member=peer.member, reason=why))
        waiters = (
            [self._still_waiters[sid]] if sid in self._still_waiters else list(self._still_waiters.values())
        )
        for fut in waiters:
            if not fut.done():
                fut.set_exception(stills.StillError(why))

    async def _finish_still(self, peer: _Peer, header: dict[str, Any], png: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            still = await loop.run_in_executor(None, stills.verify, header, png, peer.member)
        except stills.StillError as err:
            self._still_failed(peer, str(err), header.get("id"))
            return
        if self.state is SessionState.ENDED:
            still.wipe()
            return
        self.stills.append(still)
        fut = self._still_waiters.get(still.id)
        if fut is not None and not fut.done():
            fut.set_result(still)
        self._emit(SessionEvent(EventKind.STILL_RECEIVED, member=peer.member, still=still))

    async def _send_still(self, peer: _Peer, sid: str) -> None:
        channel = peer.channel
        assert channel is not None
        document = self.local.document
        frame = document.latest_frame() if document is not None else None
        if frame is None:
            why = (
                "this terminal has no document camera"
                if document is None
                else "no document frame captured yet"
            )
            channel.send(json.dumps({"still": "error", "id": sid, "message": why}))
            return
        rgb = np.array(frame, dtype=np.uint8, copy=True)
        captured_ms = int(time.time() * 1000)

        def build() -> tuple[list[str | bytes], str]:
            png = stills.encode_png(rgb)
            return stills.frame_messages(sid, rgb, png, captured_ms), stills.pixels_sha256(rgb)

        messages, digest = await asyncio.get_running_loop().run_in_executor(None, build)
        drained = asyncio.Event()
        channel.on("bufferedamountlow", drained.set)
        try:
            for m in messages:
                if channel.readyState != "open":
                    raise stills.StillError(f"data channel to {peer.member} closed during still {sid}")
                channel.send(m)
                while channel.bufferedAmount > BUFFER_HIGH:
                    drained.clear()
                    await asyncio.wait_for(drained.wait(), 30.0)
        finally:
            channel.remove_listener("bufferedamountlow", drained.set)
        self._emit(
            SessionEvent(
                EventKind.STILL_SENT,
                member=peer.member,
                detail={"id": sid, "pixels_sha256": digest, "frame": rgb},
            )
        )

    # -- ending ----------------------------------------------------------------------------------
    async def _say_bye(self, reason: str) -> None:
        """Tell every member directly (data channel) why we go: works while the relay is away too."""
        channels = [
            p.channel
            for p in self._peers.values()
            if p.channel is not None and p.channel.readyState == "open"
        ]
        for channel in channels:
            channel.send(json.dumps({"bye": reason}))
        deadline = time.monotonic() + BYE_FLUSH_TIMEOUT
        while any(c.bufferedAmount > 0 for c in channels) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _on_bye(self, member: str, reason: str) -> None:
        """A member said it is going (``leave``) or ending the call (``hangup``, ``media_failed``)."""
        self._remote_bye[member] = reason
        if self.state is SessionState.ENDED or member not in self._peers:
            return
        if reason == "leave" and member != self.counter_id:
            await self._drop_member(member, "leave")
        else:
            await self._end(reason, by=member)

    async def _close_peer(self, peer: _Peer, *, keep_sinks: bool = False) -> None:
        peer.closing = True
        self.control.detach(peer.member)
        for t in list(peer.tasks):
            t.cancel()
        for track in peer.local_tracks:
            track.stop()
            if isinstance(track, GatedAudioTrack) and track in self._audio_gates:
                self._audio_gates.remove(track)
        peer.assembler.reset()
        with contextlib.suppress(Exception):
            await peer.pc.close()
        for key in [k for k in self._remote if k[0] == peer.member]:
            remote = self._remote.pop(key)
            if remote.task is not None:
                remote.task.cancel()
            if remote.frame_sink is not None:
                remote.frame_sink.clear()  # screens show "no picture", never a frozen last frame
                if not keep_sinks:
                    self._sinks.pop(key, None)
            if remote.audio_sink is not None:
                remote.audio_sink.close()

    async def _end(
        self, reason: str, *, by: str | None = None, detail: Mapping[str, Any] | None = None
    ) -> None:
        if self.state is SessionState.ENDED:
            return
        self._set_state(SessionState.ENDED)
        self.end_reason = reason
        peers = list(self._peers.values())
        self._peers.clear()
        await asyncio.gather(*(self._close_peer(p) for p in peers))
        self.control.close()  # nothing handed over stays queued once the call is over
        for sink in self._sinks.values():
            sink.clear()
        self._sinks.clear()
        if self._adaptation is not None:
            await self._adaptation.close()  # the camera goes back to full size for the next call
            self._adaptation = None
        for s in self.stills:
            s.wipe()
        self.stills.clear()
        for e in self.events:
            frame = e.detail.get("frame") if e.kind is EventKind.STILL_SENT else None
            if isinstance(frame, np.ndarray):
                frame.fill(0)  # the kiosk's copy of a document still: nothing of it outlives the call
        for fut in self._still_waiters.values():
            if not fut.done():
                fut.set_exception(
                    SessionError(f"call {self.call_id} ended ({reason}) before the still arrived")
                )
        info = {"by": by} if by else {}
        info.update(detail or {})
        self._emit(SessionEvent(EventKind.ENDED, reason=reason, detail=info))
        self.ended.set()

    # -- plumbing --------------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any], peer: _Peer | None = None) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        owner = peer.tasks if peer is not None else self._tasks
        owner.add(task)
        task.add_done_callback(owner.discard)
        task.add_done_callback(_log_task_error)
        return task

    def _emit(self, event: SessionEvent) -> None:
        self.events.append(event)
        for match, fut in list(self._waiters):
            if not fut.done() and match(event):
                fut.set_result(event)
        if self.on_event is None:
            return
        try:
            result = self.on_event(event)
            if inspect.isawaitable(result):
                self._spawn(result)
        except Exception:
            log.exception("%s: session event handler failed for %s", self.terminal_id, event.kind.value)


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call session task failed", exc_info=task.exception())
