"""The stills side of a call's data channel: full-resolution document stills asked for, sent and received.

Staff ask the counter for a still (:meth:`StillsChannel.request`); the counter grabs its document camera's latest
full-resolution frame, encodes it losslessly and sends it in chunks, pausing while the channel's buffer is full
(:meth:`StillsChannel.send`); the station reassembles the chunks per member, checks the file and pixel hashes off
the event loop and hands the verified :class:`~kiosk.video.still.Still` to whoever asked
(:meth:`StillsChannel.feed`). The wire format and the pure framing are :mod:`kiosk.video.still`; the call session
routes the data channel's messages here and reports through the events this module emits.

Nothing of a resident's papers outlives the call: received stills are wiped when it ends (:meth:`close`), and the
counter's copy of a sent frame is zeroed as soon as the ``still_sent`` observers have seen it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from aiortc import RTCDataChannel

from common.logs import event
from kiosk.video import still as stills
from kiosk.video.events import EventKind, Observers, SentStill, SessionError, SessionEvent
from kiosk.video.local_media import VideoSourceLike

__all__ = ["BUFFER_HIGH", "StillsChannel"]

log = logging.getLogger(__name__)

BUFFER_HIGH = 1024 * 1024  # data channel bytes queued before a still transfer waits
DRAIN_TIMEOUT = 30.0  # seconds a still transfer waits for the channel's buffer to drain


class StillsChannel:
    """One call session's stills, both directions.

    Args:
        terminal_id: this terminal (log lines, request ids).
        emit: reports ``still_received``, ``still_sent`` and ``still_failed`` events.
        still_sent: the observers that see each sent frame before it is zeroed.
        ended: whether the call is over (a still verified after that is wiped at once).
    """

    def __init__(
        self,
        terminal_id: str,
        *,
        emit: Callable[[SessionEvent], None],
        still_sent: Observers[SentStill],
        ended: Callable[[], bool],
    ) -> None:
        self.terminal_id = terminal_id
        self.received: list[stills.Still] = []  # wiped when the call ends
        self._emit = emit
        self._still_sent = still_sent
        self._ended = ended
        self._waiters: dict[str, asyncio.Future[stills.Still]] = {}
        self._ids = itertools.count(1)
        self._assemblers: dict[str, stills.StillAssembler] = {}

    # -- staff side ------------------------------------------------------------------------------
    async def request(self, channel: RTCDataChannel, timeout: float) -> stills.Still:
        """Ask the counter at the other end of ``channel`` for a still; return it verified.

        Raises:
            stills.StillError: the kiosk could not send it, or it arrived damaged.
            TimeoutError: nothing arrived within ``timeout`` seconds.
        """
        sid = f"{self.terminal_id}-{next(self._ids)}"
        fut: asyncio.Future[stills.Still] = asyncio.get_running_loop().create_future()
        self._waiters[sid] = fut
        channel.send(json.dumps({"still": "request", "id": sid}))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.pop(sid, None)

    def feed(self, member: str, message: str | bytes) -> Coroutine[Any, Any, None] | None:
        """One still message (header, chunk, end or error) from ``member``; when it completes a still, returns the
        coroutine that verifies it (the caller runs it with the member's tasks)."""
        assembler = self._assemblers.setdefault(member, stills.StillAssembler())
        try:
            done = assembler.feed(message)
        except stills.StillError as err:
            self._failed(member, str(err), None)
            return None
        if done is None:
            return None
        return self._finish(member, *done)

    def forget(self, member: str) -> None:
        """The peer connection to ``member`` is closing: drop its half-received still."""
        assembler = self._assemblers.pop(member, None)
        if assembler is not None:
            assembler.reset()

    def _failed(self, member: str, why: str, sid: str | None) -> None:
        event(log, "still_failed", logging.WARNING, terminal=self.terminal_id, member=member, why=why)
        self._emit(SessionEvent(EventKind.STILL_FAILED, member=member, reason=why))
        waiters = [self._waiters[sid]] if sid in self._waiters else list(self._waiters.values())
        for fut in waiters:
            if not fut.done():
                fut.set_exception(stills.StillError(why))

    async def _finish(self, member: str, header: dict[str, Any], png: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            still = await loop.run_in_executor(None, stills.verify, header, png, member)
        except stills.StillError as err:
            self._failed(member, str(err), header.get("id"))
            return
        if self._ended():
            still.wipe()
            return
        self.received.append(still)
        fut = self._waiters.get(still.id)
        if fut is not None and not fut.done():
            fut.set_result(still)
        self._emit(SessionEvent(EventKind.STILL_RECEIVED, member=member, still=still))

    # -- counter side ----------------------------------------------------------------------------
    async def send(
        self, channel: RTCDataChannel, member: str, sid: str, document: VideoSourceLike | None
    ) -> None:
        """Answer ``member``'s request ``sid``: the document camera's latest frame as a lossless still, or an error
        message saying why there is none.

        Raises:
            stills.StillError: the channel closed during the transfer.
        """
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
        try:
            digest = await self._send_frame(channel, member, sid, rgb)
            self._emit(
                SessionEvent(EventKind.STILL_SENT, member=member, detail={"id": sid, "pixels_sha256": digest})
            )
            self._still_sent.notify(SentStill(member=member, id=sid, pixels_sha256=digest, frame=rgb))
        finally:
            rgb.fill(0)  # the kiosk's copy of the resident's paper: nothing of it outlives the transfer

    async def _send_frame(self, channel: RTCDataChannel, member: str, sid: str, rgb: np.ndarray) -> str:
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
                    raise stills.StillError(f"data channel to {member} closed during still {sid}")
                channel.send(m)
                while channel.bufferedAmount > BUFFER_HIGH:
                    drained.clear()
                    await asyncio.wait_for(drained.wait(), DRAIN_TIMEOUT)
        finally:
            channel.remove_listener("bufferedamountlow", drained.set)
        return digest

    # -- end of the call -------------------------------------------------------------------------
    def close(self, why: str) -> None:
        """The call ended: wipe every received still and fail the requests still waiting (``why`` says how)."""
        for s in self.received:
            s.wipe()
        self.received.clear()
        for assembler in self._assemblers.values():
            assembler.reset()
        self._assemblers.clear()
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(SessionError(why))
