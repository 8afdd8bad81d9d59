"""The call session's end of the papers/marks/writing messages (:mod:`kiosk.assist`) on the data channel.

A :class:`ControlLink` belongs to one :class:`~kiosk.video.session.CallSession`, which hands it each member's data
channel (:meth:`attach`, :meth:`detach`) and every JSON text message it receives (:meth:`handle` takes those with an
``"assist"`` field). Outgoing messages are queued per member and sent in order once the channel is open, pausing
while the channel's buffer is full (a paper of several pages is a few megabytes), so callers never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from common.logs import event

__all__ = ["ControlLink"]

log = logging.getLogger(__name__)

PACE_BYTES = 64 * 1024  # bytes queued in the data channel before sending pauses
PACE_POLL = 0.02
OPEN_TIMEOUT = 30.0


class _Outbox:
    def __init__(self, member: str, channel: Any) -> None:
        self.member = member
        self.channel = channel
        self.queue: deque[str] = deque()
        self.task: asyncio.Task[None] | None = None
        self.opened = asyncio.Event()


class ControlLink:
    """Routes ``assist`` messages in, queues them out, per member of one call.

    Attributes:
        on_message: ``(member, message_dict)`` for every received ``assist`` message.
        on_open: ``(member)`` when a member's data channel is open (or at once if it already is).
        on_resume: ``(member)`` when a member's data channel opens again after the media path was rebuilt (called
            before ``on_open``, before anything queued is sent on it): what was sent on the lost channel may not
            have arrived, so each side repairs what the other must hold (:meth:`retract`, then :meth:`send`).
    """

    def __init__(self) -> None:
        self.on_message: Callable[[str, Mapping[str, Any]], Any] | None = None
        self.on_open: Callable[[str], Any] | None = None
        self.on_resume: Callable[[str], Any] | None = None
        self._seen: set[str] = set()  # members that had a data channel in this call
        self._boxes: dict[str, _Outbox] = {}
        self._pending: dict[
            str, deque[str]
        ] = {}  # unsent messages of a member whose connection is being rebuilt
        self.sent = 0

    @property
    def members(self) -> list[str]:
        """Members with an open data channel."""
        return [m for m, b in self._boxes.items() if b.opened.is_set()]

    def attach(self, member: str, channel: Any) -> None:
        """The data channel to ``member`` (the session calls this for each peer)."""
        old = self._boxes.get(member)
        box = _Outbox(member, channel)
        box.queue.extend(self._pending.pop(member, ()))
        if old is not None:
            box.queue.extend(old.queue)
            if old.task is not None:
                old.task.cancel()
        self._boxes[member] = box
        resumed = member in self._seen
        self._seen.add(member)

        def opened() -> None:
            if self._boxes.get(member) is not box:
                return  # replaced again before it opened
            box.opened.set()  # the drain task runs only after these handlers: they may change the queue
            handlers = [self.on_resume] if resumed else []
            for handler in [*handlers, self.on_open]:
                if handler is not None:
                    try:
                        handler(member)
                    except Exception:
                        event(log, "control_open_handler_failed", logging.ERROR, exc_info=True, member=member)

        if channel.readyState == "open":
            asyncio.get_running_loop().call_soon(opened)
        else:
            channel.once("open", opened)
        if box.queue:
            self._kick(box)

    def detach(self, member: str) -> None:
        """The peer connection to ``member`` closed. Messages not yet sent wait for its next data channel (the
        session rebuilds a lost connection); :meth:`close` drops them."""
        box = self._boxes.pop(member, None)
        if box is not None:
            if box.task is not None:
                box.task.cancel()
            if box.queue:
                self._pending.setdefault(member, deque()).extend(box.queue)

    def retract(self, member: str, unwanted: Callable[[str], bool]) -> int:
        """Withdraw the messages queued for ``member`` but not sent yet for which ``unwanted(text)`` is true (e.g.
        the rest of a page cut off by a rebuild, which is then sent again whole); returns how many."""
        queues = [
            q for q in (self._pending.get(member), getattr(self._boxes.get(member), "queue", None)) if q
        ]
        count = 0
        for queue in queues:
            kept = [m for m in queue if not unwanted(m)]
            count += len(queue) - len(kept)
            queue.clear()
            queue.extend(kept)
        if count:
            event(log, "assist_messages_withdrawn", member=member, count=count)
        return count

    def close(self) -> None:
        for member in list(self._boxes):
            self.detach(member)
        self._pending.clear()
        self._seen.clear()

    def handle(self, member: str, msg: Mapping[str, Any]) -> bool:
        """Take ``msg`` if it is an ``assist`` message (True), else leave it to the session (False)."""
        if "assist" not in msg:
            return False
        if self.on_message is not None:
            try:
                self.on_message(member, msg)
            except Exception:
                event(log, "assist_handler_failed", logging.ERROR, exc_info=True, member=member)
        return True

    def send(self, messages: Iterable[str], member: str | None = None) -> None:
        """Queue text messages for ``member`` (None: every member), to go out in order."""
        messages = list(messages)
        boxes = (
            [self._boxes[member]] if member in self._boxes else [] if member else list(self._boxes.values())
        )
        if member and not boxes:
            if member in self._seen:  # its media path is being rebuilt: they go on its next data channel
                self._pending.setdefault(member, deque()).extend(messages)
                return
            event(log, "assist_messages_dropped", logging.WARNING, member=member, problem="no data channel")
        if not member:  # members whose media path is being rebuilt get them on their next data channel
            for away in self._seen - set(self._boxes):
                self._pending.setdefault(away, deque()).extend(messages)
        for box in boxes:
            box.queue.extend(messages)
            self._kick(box)

    def _kick(self, box: _Outbox) -> None:
        if box.task is None or box.task.done():
            box.task = asyncio.get_running_loop().create_task(
                self._drain(box), name=f"assist-to-{box.member}"
            )

    async def _drain(self, box: _Outbox) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await asyncio.wait_for(box.opened.wait(), OPEN_TIMEOUT)
            except TimeoutError:
                event(
                    log,
                    "assist_messages_dropped",
                    logging.WARNING,
                    member=box.member,
                    count=len(box.queue),
                    problem="data channel did not open",
                )
                box.queue.clear()
                return
            while box.queue:
                if box.channel.readyState != "open":
                    # Kept: the session detaches the lost channel (the queue waits for the rebuilt one) or ends
                    # the call (close drops it).
                    event(
                        log,
                        "assist_messages_waiting",
                        logging.INFO,
                        member=box.member,
                        count=len(box.queue),
                        why="data channel closed",
                    )
                    return
                box.channel.send(box.queue.popleft())
                self.sent += 1
                # A paper is dozens of chunks: pace them so that audio and video packets keep flowing beside them
                # (a flooded transport looks like a dead link to the media watchdog).
                await asyncio.sleep(0)
                waited = 0.0
                while (
                    box.channel.bufferedAmount > PACE_BYTES
                    and box.channel.readyState == "open"
                    and waited < 30.0
                ):
                    await asyncio.sleep(PACE_POLL)
                    waited += PACE_POLL
