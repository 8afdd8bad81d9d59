"""Keeping a call's media alive: watching each peer connection, path attempts, rebuilding after an outage.

A :class:`MediaKeeper` watches every peer connection of one call session (:meth:`MediaKeeper.watch`): a new one must
connect within ``attempt_timeout`` (or get its answer within :data:`ANSWER_TIMEOUT`), a connected one must keep
receiving packets (``silence``). When media to a member stops — ICE failed, no packets, closed by the other side
without a ``bye``, or an attempt that never connected — an outage begins (``reconnecting``; the member's pictures
are cleared) and the media is rebuilt through the relay: the offerer makes a new peer connection over the next
TURN path of the member's :class:`~kiosk.video.paths.PathPlan`, the answerer asks it to (``restart``). When the
media is back the outage ends (``reconnected``); when it is not back within ``reconnect_window`` the call ends with
``media_failed``. The timing rules themselves are pure (:mod:`kiosk.video.paths`); this module carries them out on
the session's peers through the :class:`KeeperActions` the session gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from common.logs import event
from kiosk.video.events import EventKind, SessionEvent
from kiosk.video.paths import PathPlan, ReconnectWindow, SilenceWatch
from kiosk.video.peer import Peer
from kiosk.video.turnprobe import IcePathBook, ice_connections, selected_path

__all__ = ["ANSWER_TIMEOUT", "REMOTE_CLOSE_GRACE", "KeeperActions", "MediaKeeper"]

log = logging.getLogger(__name__)

# A peer connection closed by the other side is a failure only if the relay has not said, within
# this time, that the member left or the call ended (the DTLS close can overtake the relay message).
REMOTE_CLOSE_GRACE = 2.0
# An offer whose answer has not come back after this long is given up and made again (the other side was away from
# the relay, or too busy): generous, because a slow peer is not helped by more offers.
ANSWER_TIMEOUT = 15.0
WATCH_INTERVAL = 0.5  # seconds between two looks at a peer connection's health


@dataclass(frozen=True)
class KeeperActions:
    """What the keeper asks of its call session.

    Attributes:
        current: the member's peer connection now (None when there is none).
        ended: whether the call is over.
        offers: whether this side offers to the member (the protocol's offer rule).
        reoffer: close the peer connection (keeping the member's sinks) and offer a new one, ``attempt`` + 1.
        ask_restart: signal the member (the offerer) to offer again, saying why.
        media_failed: end the call: the member's media did not come back.
        emit: report an event.
        spawn: run a coroutine as one of the session's tasks (of the peer's, when one is given).
        clear_pictures: the member's video sinks show no picture.
    """

    current: Callable[[str], Peer | None]
    ended: Callable[[], bool]
    offers: Callable[[str], bool]
    reoffer: Callable[[Peer], Awaitable[None]]
    ask_restart: Callable[[str, str], Awaitable[None]]
    media_failed: Callable[[str, str], Awaitable[None]]
    emit: Callable[[SessionEvent], None]
    spawn: Callable[..., asyncio.Task[Any]]
    clear_pictures: Callable[[str], None]


class MediaKeeper:
    """The media health of one call session, per member.

    Args:
        who: this terminal (log lines).
        paths: the terminal's TURN paths; each member's attempts go through a plan of them.
        actions: what the keeper may do to the session.
        reconnect_window: seconds an outage of a member's media may last before the call ends.
        attempt_timeout: seconds a new peer connection may take to connect before the next path is tried.
        silence: seconds without a received packet after which a connected member's media counts as down.
    """

    def __init__(
        self,
        who: str,
        paths: IcePathBook,
        actions: KeeperActions,
        *,
        reconnect_window: float,
        attempt_timeout: float,
        silence: float,
    ) -> None:
        self.who = who
        self.paths = paths
        self.actions = actions
        self.reconnect_window = reconnect_window
        self.attempt_timeout = attempt_timeout
        self.silence = silence
        self.plans: dict[str, PathPlan] = {}
        self.outages: dict[str, ReconnectWindow] = {}
        self.media_paths: dict[str, dict[str, Any]] = {}
        self.ever_connected: set[str] = set()

    # -- what the session reports ------------------------------------------------------------------
    def plan(self, member: str) -> PathPlan:
        """The member's path plan (made on first use from the book's order)."""
        plan = self.plans.get(member)
        if plan is None:
            plan = self.plans[member] = PathPlan(self.paths.ordered())
        return plan

    def outage(self, member: str) -> ReconnectWindow:
        """The member's reconnect window (made on first use)."""
        w = self.outages.get(member)
        if w is None:
            w = self.outages[member] = ReconnectWindow(self.reconnect_window, self.attempt_timeout)
        return w

    def path_failures(self, member: str) -> list[dict[str, str]]:
        """The attempts towards ``member`` that failed, oldest first: ``[{"url", "why"}]``."""
        plan = self.plans.get(member)
        return [{"url": u, "why": w} for u, w in plan.failures] if plan is not None else []

    def reconnecting(self, member: str | None = None) -> bool:
        """Whether media to ``member`` (or to anyone) is down and being rebuilt."""
        return any(w.active for m, w in self.outages.items() if member is None or m == member)

    def forget(self, member: str) -> None:
        """``member`` left: it is no longer being reconnected; if invited again it joins afresh."""
        for per_member in (self.outages, self.plans, self.media_paths):
            per_member.pop(member, None)
        self.ever_connected.discard(member)

    def connected(self, peer: Peer) -> dict[str, Any]:
        """``peer`` reached ``connected``: note its media path and end the member's outage; returns the path."""
        path = selected_path(peer.pc) or {}
        if peer.path is not None:
            path["url"] = peer.path.url
        self.media_paths[peer.member] = path
        self.ever_connected.add(peer.member)
        event(
            log,
            "media_connected",
            terminal=self.who,
            member=peer.member,
            path=path.get("summary", "?"),
            attempt=peer.attempt,
            url=path.get("url", "no TURN"),
        )
        self.actions.emit(SessionEvent(EventKind.MEDIA_PATH, member=peer.member, detail=dict(path)))
        outage = self.outages.get(peer.member)
        if outage is not None and outage.active:
            lasted = outage.end(time.monotonic())
            event(log, "media_back", terminal=self.who, member=peer.member, outage_s=round(lasted, 1))
            self.actions.emit(
                SessionEvent(
                    EventKind.RECONNECTED,
                    member=peer.member,
                    detail={"outage_s": round(lasted, 3), "path": path.get("summary", "")},
                )
            )
        return path

    # -- watching ----------------------------------------------------------------------------------
    def _gone(self, peer: Peer) -> bool:
        return self.actions.current(peer.member) is not peer or self.actions.ended()

    async def watch(self, peer: Peer) -> None:
        """One peer connection's health: connect within ``attempt_timeout``, then keep receiving packets."""
        watch = SilenceWatch(self.silence)
        while not peer.closing and not self.actions.ended():
            await asyncio.sleep(WATCH_INTERVAL)
            if peer.closing or self.actions.current(peer.member) is not peer:
                return
            now = time.monotonic()
            outage = self.outages.get(peer.member)
            if outage is not None and outage.expired(now):
                await self.rebuild(peer, f"media not back within {self.reconnect_window:g} s")
                return
            if peer.down:
                # Waiting for the offerer's new offer (we are the answerer): ask again, or give up.
                if now - peer.created_at >= self.attempt_timeout:
                    peer.created_at = now
                    await self.rebuild(peer, "still no media")
                continue
            if peer.connected_at is None:
                if await self._attempt_overdue(peer, now) and peer.offerer:
                    return
                continue
            if watch.feed(now, await _packets_received(peer)):
                await self.path_down(peer, f"no packet received for {self.silence:g} s")
                if not peer.offerer:
                    continue  # keep watching: resend the restart request until an offer comes
                return

    async def _attempt_overdue(self, peer: Peer, now: float) -> bool:
        """A peer connection not connected yet: give the attempt up when its answer or ICE takes too long."""
        if peer.answered_at is None and now - peer.created_at >= ANSWER_TIMEOUT:
            await self.attempt_failed(peer, f"no answer to the offer within {ANSWER_TIMEOUT:g} s")
            return True
        if peer.answered_at is not None and now - peer.answered_at >= self.attempt_timeout:
            await self.attempt_failed(peer, f"not connected within {self.attempt_timeout:g} s")
            return True
        return False

    async def attempt_failed(self, peer: Peer, why: str) -> None:
        """A new peer connection did not connect: log why, move its path to the back, try the next one."""
        plan = self.plan(peer.member)
        allocated = peer.path is None or any(
            c.type == "relay" for conn in ice_connections(peer.pc) for c in conn.local_candidates
        )
        # Without an allocation here, peer.gather has already moved the path to the back (with its reason).
        nxt = plan.failed(peer.path, why, own_fault=False) if allocated else plan.current()
        event(
            log,
            "media_attempt_failed",
            logging.WARNING,
            terminal=self.who,
            attempt=peer.attempt,
            member=peer.member,
            over=peer.path.url if peer.path else "host/STUN",
            why=why,
            next=nxt.url if nxt is not None else "host/STUN again",
        )
        self.paths.refresh()  # the network may have changed: re-probe in the background
        await self.path_down(peer, why)

    async def path_down(self, peer: Peer, why: str) -> None:
        """Media to a member stopped (or never started): rebuild it, within the reconnect window."""
        if self._gone(peer):
            return
        outage = self.outage(peer.member)
        now = time.monotonic()
        if not outage.active:
            outage.begin(now)
            if peer.member in self.ever_connected:
                event(
                    log,
                    "media_lost",
                    logging.WARNING,
                    terminal=self.who,
                    member=peer.member,
                    why=why,
                    window_s=self.reconnect_window,
                )
                self.actions.clear_pictures(peer.member)  # a calm "reconnecting" instead of a frozen picture
                self.actions.emit(
                    SessionEvent(
                        EventKind.RECONNECTING,
                        member=peer.member,
                        reason=why,
                        detail={"window_s": self.reconnect_window},
                    )
                )
        # Not awaited: the rebuild closes this peer connection, whose tasks may be the caller.
        self.actions.spawn(self.rebuild(peer, why))

    async def rebuild(self, peer: Peer, why: str) -> None:
        """A new peer connection to the member (offerer), or a request for one (answerer); or, once the window
        has passed, the end of the call."""
        member = peer.member
        if self._gone(peer):
            return
        if self.outage(member).expired(time.monotonic()):
            # Spawned: ending closes every peer connection, and with it the task that may be running this.
            self.actions.spawn(
                self.actions.media_failed(member, f"no media for {self.reconnect_window:g} s ({why})")
            )
            return
        if self.actions.offers(member):
            await self.actions.reoffer(peer)
        else:
            peer.down = True
            await self.actions.ask_restart(member, why)

    async def restart_requested(self, member: str, why: str) -> None:
        """The answerer lost our media and asks for a new offer (we are the offerer)."""
        peer = self.actions.current(member)
        if peer is None or self.actions.ended() or not self.actions.offers(member):
            return
        if peer.connected_at is None and time.monotonic() - peer.created_at < 1.0:
            return  # an attempt has just started (its offer may be what they are waiting for)
        event(log, "restart_requested", terminal=self.who, member=member, why=why)
        await self.path_down(peer, f"{member} lost the media ({why})")

    async def closed_by_remote(self, peer: Peer) -> None:
        """The other side closed the peer connection: a failure unless the relay or a ``bye`` says why in time."""
        deadline = time.monotonic() + REMOTE_CLOSE_GRACE
        while time.monotonic() < deadline:
            if self._gone(peer):
                return
            await asyncio.sleep(0.05)
        if not self._gone(peer):
            await self.path_down(peer, "peer connection closed by the other side")


async def _packets_received(peer: Peer) -> int:
    """The most packets any of the peer connection's transports has received (0 when the stats are unavailable)."""
    received = 0
    with contextlib.suppress(Exception):
        for stat in (await peer.pc.getStats()).values():
            if getattr(stat, "type", "") == "transport":
                received = max(received, int(getattr(stat, "packetsReceived", 0) or 0))
    return received
