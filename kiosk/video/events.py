"""What a call session reports: its state, events and errors, the hooks observers subscribe to, and its event log.

A :class:`~kiosk.video.session.CallSession` tells its owner what happens through :class:`SessionEvent` values
(``on_event``), and lets anyone else subscribe through its :class:`SessionHooks`: a small registry of
:class:`Observers`, one per kind of notification. Observers are attached from the outside (a test, a benchmark, a
report) and keep whatever they want to keep themselves; the session holds no buffer on their behalf. In particular
:class:`SentStill` hands the kiosk's copy of a document still to the ``still_sent`` observers only while they are
called: the session zeroes it right afterwards, so nothing of the resident's papers outlives the transfer.

:class:`EventLog` is the session's own record of the events of one call (small: kinds, members, states, reasons; no
pixels), which :meth:`~kiosk.video.session.CallSession.wait_event` waits on (the demo and ``kiosk call-test`` use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from common.logs import event
from common.transitions import TransitionTable, by_value
from kiosk.video.still import Still

__all__ = [
    "SESSION_TRANSITIONS",
    "EventKind",
    "EventLog",
    "Observers",
    "SentStill",
    "SessionError",
    "SessionEvent",
    "SessionHooks",
    "SessionState",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SessionState(enum.Enum):
    """Life of a session: waiting for the call to become active, active, ended (final)."""

    WAITING = "waiting"
    ACTIVE = "active"
    ENDED = "ended"


SESSION_TRANSITIONS: TransitionTable[SessionState] = TransitionTable(
    "call session",
    {
        SessionState.WAITING: {SessionState.ACTIVE, SessionState.ENDED},
        SessionState.ACTIVE: {SessionState.ENDED},
        SessionState.ENDED: set(),
    },
    label=by_value,
)


class SessionError(Exception):
    """A call-session operation that cannot be done now (the message says what and in which state)."""


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
        detail: anything else (``still_sent``: ``{"id", "pixels_sha256"}``; ``ended``: ``{"by"}``).
        at: ``time.monotonic()`` of the event.
    """

    kind: EventKind
    member: str | None = None
    track: str | None = None
    state: str | None = None
    reason: str | None = None
    still: Still | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class SentStill:
    """A document still this kiosk has just sent (``still_sent`` observers).

    Attributes:
        member: the station that asked for it.
        id: the request's id.
        pixels_sha256: the hash the station verifies.
        frame: the captured RGB frame that was sent. Valid only during the call to the observer: the session
            zeroes it afterwards (an observer that needs the pixels later copies them).
    """

    member: str
    id: str
    pixels_sha256: str
    frame: np.ndarray


class Observers(Generic[T]):
    """Callbacks subscribed to one kind of notification.

    A callback that raises is logged and the others still run; a callback that returns an awaitable has it
    handed to ``spawn`` (the session's task set), so async observers never block the session.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[[T], object]] = []

    def subscribe(self, callback: Callable[[T], object]) -> Callable[[], None]:
        """Call ``callback`` with every notification from now on; returns a function that unsubscribes it."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def notify(self, value: T, spawn: Callable[[Awaitable[Any]], object] | None = None) -> None:
        """Call every subscribed callback with ``value``, in subscription order."""
        for callback in list(self._callbacks):
            try:
                result = callback(value)
                if inspect.isawaitable(result) and spawn is not None:
                    spawn(result)
            except Exception:
                event(
                    log,
                    "observer_failed",
                    logging.ERROR,
                    exc_info=True,
                    hook=self.name,
                    observer=repr(callback),
                )

    def __len__(self) -> int:
        return len(self._callbacks)


@dataclass
class SessionHooks:
    """Where observers subscribe to one call session.

    Attributes:
        events: every :class:`SessionEvent`, as the owner's ``on_event`` gets it.
        still_sent: every document still this (counter) side sent, with the pixels (see :class:`SentStill`).
    """

    events: Observers[SessionEvent] = field(default_factory=lambda: Observers("session event"))
    still_sent: Observers[SentStill] = field(default_factory=lambda: Observers("still sent"))


class EventLog:
    """The events of one session so far, and waiting for one (past or future)."""

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self._waiters: list[tuple[Callable[[SessionEvent], bool], asyncio.Future[SessionEvent]]] = []

    def record(self, event: SessionEvent) -> None:
        """Add ``event`` and wake the waiters it matches."""
        self.events.append(event)
        for match, fut in list(self._waiters):
            if not fut.done() and match(event):
                fut.set_result(event)

    async def wait(
        self,
        kind: EventKind,
        *,
        member: str | None,
        track: str | None,
        timeout: float,
        past: bool,
        where: Callable[[], str],
    ) -> SessionEvent:
        """The first event of ``kind`` (for ``member``/``track`` if given); ``past`` includes recorded ones.

        Raises:
            TimeoutError: none within ``timeout`` seconds; the message starts with ``where()`` and lists the events
                so far.
        """

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
                f"{where()}: no '{kind.value}' event (member={member}, track={track}) within {timeout} s; "
                f"events so far: {[e.kind.value for e in self.events]}"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
