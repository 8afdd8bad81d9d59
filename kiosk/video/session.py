"""The media side of one call: aiortc peer connections to every other member (mesh, up to 4).

A :class:`CallSession` is an edge in the sense of ``ARCHITECTURE.md``: it is fed relay messages
(:meth:`CallSession.on_message`), sends signalling through an injected ``send`` coroutine (``RelayClient.send``),
and reports what happens to its owner through ``on_event`` (:class:`SessionEvent`) and to observers through
:attr:`CallSession.hooks`. It never talks to the relay socket or the UI directly. This module decides at the call
level — who is a member (:mod:`kiosk.video.membership`), when the call is active and when it ends; the peer
connections and what flows over them are :mod:`kiosk.video.mesh`'s (with :mod:`~kiosk.video.peer`,
:mod:`~kiosk.video.remote`, :mod:`~kiosk.video.stills_channel` and :mod:`~kiosk.video.reconnect`).

``{"bye": REASON}`` on the data channel (and ``{"kind": "bye", "reason": REASON}`` as signal data) tells the other
members why this side is going: ``hangup``, ``leave`` or ``media_failed``. The data channel works while the relay
is away, so a call survives a relay restart and can still be ended cleanly: ``ended`` with reason ``shutdown`` (the
relay going down) is reported as ``relay_lost``, and the ``call_state`` that follows a reconnection is reconciled
with the peers we have (missing members dropped, missing connections offered by rule). Media to a member that
stops is rebuilt within ``reconnect_window``; when it does not come back the session sends ``bye`` and ``hangup``
and ends with reason ``media_failed`` — remote pictures are cleared, so no screen freezes on the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from common.logs import event
from kiosk.video.control import ControlLink
from kiosk.video.events import (
    SESSION_TRANSITIONS,
    EventKind,
    EventLog,
    SessionError,
    SessionEvent,
    SessionHooks,
    SessionState,
)
from kiosk.video.local_media import LocalMedia
from kiosk.video.membership import offers_to, reconcile
from kiosk.video.mesh import MeshHost, PeerMesh
from kiosk.video.peer import Peer
from kiosk.video.remote import RemoteTrack, TrackKind
from kiosk.video.still import Still
from kiosk.video.turnprobe import IcePathBook

__all__ = [
    "CODECS",
    "CallSession",
    "EventKind",
    "RemoteTrack",
    "SessionError",
    "SessionEvent",
    "SessionState",
    "TrackKind",
    "offers_to",
]

log = logging.getLogger(__name__)

CODECS = ("vp8", "h264")
END_MEDIA_FAILED = "media_failed"
_ADOPTS = (("ringing", "counter"), ("call_state", "office"))  # the messages whose call a session adopts

SendFn = Callable[[dict[str, Any]], Awaitable[None]]


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

    Attributes:
        hooks: where observers subscribe (every event; every still sent, with its pixels).
        keeper: the media's health per member (:class:`~kiosk.video.reconnect.MediaKeeper`).
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
        self.ice_servers: list[Mapping[str, Any]] = list(ice_servers or ())
        self.state = SessionState.WAITING
        self.end_reason: str | None = None
        self.counter_id: str | None = terminal_id if role == "counter" else None
        self.order: list[str] = [terminal_id] if role == "counter" else []
        self.ended = asyncio.Event()
        self.relay_call_lost = False
        self.hooks = SessionHooks()
        if on_event is not None:
            self.hooks.events.subscribe(on_event)
        self.event_log = EventLog()
        self.control = ControlLink()  # papers, marks, writing (kiosk.assist) on the data channel
        self._own_book = paths is None
        self.paths = paths if paths is not None else IcePathBook(self.ice_servers)
        self._send = send
        self.mesh = PeerMesh(
            terminal_id,
            role,
            local,
            MeshHost(
                ended=lambda: self.state is SessionState.ENDED,
                offers=self._offers,
                activate=self._activate,
                joined=self._joined,
                signal=self._signal_to,
                relay=self._relay,
                call_id=lambda: self.call_id,
                on_bye=self._on_bye,
                media_failed=self._media_failed,
                emit=self._emit,
                spawn=self._spawn,
            ),
            hooks=self.hooks,
            control=self.control,
            paths=self.paths,
            codec=codec,
            audio_output=audio_output,
            reconnect_window=reconnect_window,
            attempt_timeout=attempt_timeout,
            silence=silence,
        )
        self.keeper = self.mesh.keeper
        self._remote = self.mesh.remote
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._remote_bye: dict[str, str] = {}

    # -- public API ------------------------------------------------------------------------------
    @property
    def members(self) -> list[str]:
        """Remote members we have (or are setting up) a peer connection with, in join order."""
        known = [m for m in self.order if m in self.mesh.peers]
        return known + [m for m in self.mesh.peers if m not in known]

    @property
    def events(self) -> list[SessionEvent]:
        """The session's events so far (kinds, members, states, reasons: no pixels)."""
        return self.event_log.events

    @property
    def stills(self) -> list[Still]:
        """The verified stills received in this call (wiped when it ends)."""
        return self.mesh.stills.received

    def remote_tracks(self, member: str | None = None) -> list[RemoteTrack]:
        """Tracks received so far (from one member, or from everyone)."""
        return self._remote.of(member)

    def remote_track(self, member: str, label: str) -> RemoteTrack | None:
        """The ``camera``/``document``/``audio`` track received from ``member``, if any."""
        return self._remote.get(member, label)

    def frame_sink(self, member: str, label: str = "camera") -> Any:
        """The FrameSink showing ``member``'s ``camera`` or ``document`` video, or None."""
        t = self._remote.get(member, label)
        return t.frame_sink if t is not None else None

    def audio_sink(self, member: str) -> Any:
        """The AudioSink playing ``member``'s audio, or None."""
        t = self._remote.get(member, TrackKind.AUDIO)
        return t.audio_sink if t is not None else None

    def connection_state(self, member: str) -> str | None:
        """``RTCPeerConnection.connectionState`` towards ``member`` (None if no peer connection)."""
        peer = self.mesh.peers.get(member)
        return peer.pc.connectionState if peer is not None else None

    def connected_at(self, member: str) -> float | None:
        """``time.monotonic()`` when the connection to ``member`` first reached ``connected``."""
        peer = self.mesh.peers.get(member)
        return peer.connected_at if peer is not None else None

    def media_path(self, member: str) -> dict[str, Any] | None:
        """The candidate pair that carries media to ``member`` (``{"local", "transport", "remote", "turn",
        "summary"}``, see :func:`~kiosk.video.turnprobe.selected_path`), once connected."""
        return self.keeper.media_paths.get(member)

    def path_failures(self, member: str) -> list[dict[str, str]]:
        """The attempts towards ``member`` that failed, oldest first: ``[{"url", "why"}]``."""
        return self.keeper.path_failures(member)

    def reconnecting(self, member: str | None = None) -> bool:
        """Whether media to ``member`` (or to anyone) is down and being rebuilt."""
        return self.keeper.reconnecting(member)

    @property
    def mic_muted(self) -> bool:
        return self.mesh.outgoing.mic_muted

    def set_mic_muted(self, muted: bool) -> None:
        """Mute or unmute the microphone towards every member (silence is sent while muted)."""
        self.mesh.outgoing.set_mic_muted(muted)

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

    async def request_still(self, member: str | None = None, timeout: float = 60.0) -> Still:
        """Ask the kiosk for a full-resolution document still; returns it verified (staff side).

        Args:
            member: the counter's terminal id (default: the call's counter).
            timeout: seconds to wait for the transfer.

        Raises:
            SessionError: no data channel to that member (not connected yet, or not a counter).
            StillError: the kiosk could not send it, or it arrived damaged.
            TimeoutError: nothing arrived in time.
        """
        member = member or self.counter_id
        channel = self.mesh.open_channel(member) if member else None
        if channel is None:
            raise SessionError(
                f"no open data channel to {member!r} in call {self.call_id} "
                f"(session {self.state.value}); stills come from the counter once connected"
            )
        return await self.mesh.stills.request(channel, timeout)

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
        return await self.event_log.wait(
            kind,
            member=member,
            track=track,
            timeout=timeout,
            past=past,
            where=lambda: f"{self.terminal_id} (session {self.state.value})",
        )

    async def hangup(self) -> None:
        """End the call for everyone: send ``hangup`` (best effort) and end locally."""
        await self._go("hangup")

    async def leave(self) -> None:
        """Leave the call without ending it for the others (staff): send ``leave`` and end locally."""
        if self.role != "office":
            raise SessionError("only a staff station can leave a call; the counter hangs up")
        await self._go("leave")

    async def _go(self, reason: str) -> None:
        """This side goes (``hangup`` or ``leave``): say so directly and to the relay, then end locally."""
        if self.state is SessionState.ENDED:
            return
        await self.mesh.say_bye(reason)
        if self.call_id is not None:
            await self._relay({"type": reason, "call": self.call_id})
        await self._end(reason, by=self.terminal_id)

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
                self._log("session_message_failed", logging.ERROR, exc_info=True, type=msg.get("type"))

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
        if self.call_id is None and isinstance(call, str) and (kind, self.role) in _ADOPTS:
            self.call_id = call  # a session started before its call id was known takes the first one it sees
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
            await self._call_ended(msg)
        elif kind == "signal":
            await self.mesh.on_signal(msg["from"], msg.get("data") or {})

    async def _call_ended(self, msg: dict[str, Any]) -> None:
        if msg.get("reason") == "shutdown" and self.state is SessionState.ACTIVE:
            # The relay is going away, not the call: media is peer to peer and carries on (or is being
            # rebuilt: no peer connection at this instant is no reason to end). The members resume the call
            # on the restarted relay, and can always end it (bye over the data channel).
            self._log("relay_lost_media_continues", logging.WARNING, call=self.call_id)
            self.relay_call_lost = True
            self._emit(SessionEvent(EventKind.RELAY_LOST, reason="shutdown"))
            return
        member_reason = next(iter(self._remote_bye.values()), None)
        await self._end(member_reason or msg.get("reason", "hangup"), by=msg.get("by"))

    def _activate(self) -> None:
        if self.state is SessionState.WAITING:
            self._set_state(SessionState.ACTIVE)

    def _set_state(self, new: SessionState) -> None:
        self.state = SESSION_TRANSITIONS.move(
            self.state, new, log, subject=f"{self.call_id} ({self.terminal_id})"
        )

    async def _call_state(self, msg: dict[str, Any]) -> None:
        state = msg.get("state")
        if state == "ended":
            await self._end(msg.get("reason", "hangup"))
            return
        if state != "active":
            return
        self._activate()
        self.counter_id = msg.get("counter", self.counter_id)
        changes = reconcile(self.terminal_id, msg.get("members", []), list(self.mesh.peers))
        self.order = changes.order
        for member in changes.gone:
            await self._drop_member(member, "disconnected")
        for member in changes.present:
            await self._member_present(member)

    async def _member_present(self, member: str) -> None:
        if member not in self.order:
            self.order.append(member)
        if member in self.mesh.peers:
            await self.mesh.recheck(member)
            return
        if self._offers(member):
            await self.mesh.offer(member)

    async def _drop_member(self, member: str, reason: str) -> None:
        if member in self.order and member != self.terminal_id:
            self.order.remove(member)
        if await self.mesh.drop(member) is not None:
            self._emit(SessionEvent(EventKind.MEMBER_LEFT, member=member, reason=reason))

    # -- signalling ------------------------------------------------------------------------------
    def _offers(self, member: str) -> bool:
        return offers_to(self.terminal_id, member, counter=self.counter_id, order=self.order)

    def _joined(self, member: str, first: bool) -> None:
        if member not in self.order:
            self.order.append(member)
        if first:
            self._emit(SessionEvent(EventKind.MEMBER_JOINED, member=member))

    async def _signal_to(self, member: str, data: dict[str, Any]) -> None:
        if self.call_id is None:
            raise SessionError(f"{self.terminal_id}: cannot signal {member} before the call id is known")
        await self._relay({"type": "signal", "call": self.call_id, "to": member, "data": data})

    async def _relay(self, msg: dict[str, Any]) -> None:
        try:
            await self._send(msg)
        except Exception as err:  # NotConnected while the relay is away: media carries on regardless
            self._log("relay_send_failed", logging.WARNING, type=msg.get("type"), error=err)

    # -- ending ----------------------------------------------------------------------------------
    async def _media_failed(self, member: str, why: str) -> None:
        if self.state is SessionState.ENDED:
            return
        self._log("media_failed", logging.WARNING, member=member, why=why, call=self.call_id)
        await self.mesh.say_bye(END_MEDIA_FAILED)
        if self.call_id is not None:
            for other in list(self.mesh.peers):
                await self._signal_to(other, {"kind": "bye", "reason": END_MEDIA_FAILED})
            await self._relay({"type": "hangup", "call": self.call_id})
        await self._end(END_MEDIA_FAILED, by=self.terminal_id, detail={"member": member, "why": why})

    async def _on_bye(self, member: str, reason: str) -> None:
        """A member said it is going (``leave``) or ending the call (``hangup``, ``media_failed``)."""
        self._remote_bye[member] = reason
        if self.state is SessionState.ENDED or member not in self.mesh.peers:
            return
        if reason == "leave" and member != self.counter_id:
            await self._drop_member(member, "leave")
        else:
            await self._end(reason, by=member)

    async def _end(
        self, reason: str, *, by: str | None = None, detail: Mapping[str, Any] | None = None
    ) -> None:
        if self.state is SessionState.ENDED:
            return
        self._set_state(SessionState.ENDED)
        self.end_reason = reason
        await self.mesh.close(f"call {self.call_id} ended ({reason}) before the still arrived")
        info = {"by": by} if by else {}
        info.update(detail or {})
        self._emit(SessionEvent(EventKind.ENDED, reason=reason, detail=info))
        self.ended.set()

    # -- plumbing --------------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any], peer: Peer | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` as one of the session's tasks (of ``peer``'s, cancelled when it closes); failures logged."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        owner = peer.tasks if peer is not None else self._tasks
        owner.add(task)
        task.add_done_callback(owner.discard)
        task.add_done_callback(_log_task_error)
        return task

    def _log(self, name: str, level: int = logging.INFO, **fields: Any) -> None:
        event(log, name, level, terminal=self.terminal_id, **fields)

    def _emit(self, event: SessionEvent) -> None:
        self.event_log.record(event)
        self.hooks.events.notify(event, self._spawn)


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        event(log, "session_task_failed", logging.ERROR, error=repr(task.exception()))
