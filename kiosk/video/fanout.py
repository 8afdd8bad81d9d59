"""One camera track to many consumers, each handed the newest frame: a frame a consumer was too busy to take is
dropped before it reaches that consumer, and counted.

aiortc's ``MediaRelay`` (unbuffered) also keeps only the newest frame per subscriber, but silently: nobody can tell
that an encoder fell behind and frames were thrown away, and a subscriber that reads again gets the frame it already
had if nothing new came (its slot is never emptied). Here each :class:`NewestFrameTrack` has a one-frame slot that
:meth:`~NewestFrameTrack.recv` empties: a frame that arrives while the slot is still full replaces the older one,
which is *dropped* (``dropped`` counts them). An encoder that takes longer than a frame interval therefore always
starts on the newest picture — what the browser's encoder queue does — and never on a backlog.

Between calls nobody reads, and the relay stops reading its source (aiortc's relay read it for ever after the first
call, so the camera kept converting every frame for nobody). A consumer that joins gets a picture at once: the
frame delivered last if it is recent (:data:`FRESH_FOR`; a colleague joining a running call), otherwise the source's
newest captured frame when the relay resumes reading (:class:`~kiosk.video.sources.VideoSource` converts it then),
never the wait for the camera's next frame — up to 200 ms for a 5 fps document camera.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

__all__ = ["NewestFrameRelay", "NewestFrameTrack"]

log = logging.getLogger(__name__)

FRESH_FOR = 0.5  # s: a frame delivered this recently is handed at once to a consumer that joins


class NewestFrameTrack(MediaStreamTrack):
    """A consumer's view of the source: the newest frame not yet taken, one at a time.

    Attributes:
        taken: frames handed out by :meth:`recv`.
        dropped: frames replaced by a newer one before this consumer asked for them (it was behind).
    """

    kind = "video"

    def __init__(self, relay: NewestFrameRelay) -> None:
        super().__init__()
        self._relay: NewestFrameRelay | None = relay
        self._frame: VideoFrame | None = None
        self._ended = False
        self._ready = asyncio.Event()
        self.taken = 0
        self.dropped = 0

    async def recv(self) -> VideoFrame:
        relay = self._relay
        if self.readyState != "live" or relay is None:
            raise MediaStreamError
        relay._start(self)
        while self._frame is None:
            if self._ended:
                self.stop()
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
            if self.readyState != "live":
                raise MediaStreamError
        frame, self._frame = self._frame, None
        self.taken += 1
        return frame

    def _offer(self, frame: VideoFrame | None) -> None:
        """The relay's task: a new frame (None: the source ended)."""
        if frame is None:
            self._ended = True
        else:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
        self._ready.set()

    def stop(self) -> None:
        super().stop()
        self._ready.set()  # a recv() waiting on this track returns (MediaStreamError)
        relay, self._relay = self._relay, None
        if relay is not None:
            relay._stop(self)


class NewestFrameRelay:
    """Fans out one source track to :class:`NewestFrameTrack` subscribers.

    The source is read by one task, started by the first subscriber's first :meth:`NewestFrameTrack.recv` and
    running until the source ends; every frame goes to every subscriber that has started reading.
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        self._source = source
        self._live: set[NewestFrameTrack] = set()
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._wanted = asyncio.Event()  # some consumer is reading: the source is read
        self._last: tuple[VideoFrame, float] | None = None  # the frame delivered last, when (monotonic)
        self.delivered = 0  # frames read from the source and offered to the subscribers
        self.dropped_total = 0  # frames dropped by subscribers that have already stopped

    def subscribe(self) -> NewestFrameTrack:
        """A new consumer track (it joins when it first reads)."""
        return NewestFrameTrack(self)

    @property
    def reading(self) -> int:
        """Subscribers that have started reading (and get every new frame)."""
        return len(self._live)

    @property
    def dropped(self) -> int:
        """Frames dropped by all subscribers so far (live and stopped)."""
        return self.dropped_total + sum(t.dropped for t in self._live)

    def _start(self, track: NewestFrameTrack) -> None:
        if self._ended:
            track._offer(None)
            return
        if track not in self._live:
            self._live.add(track)
            last = self._last
            if last is not None and time.monotonic() - last[1] < FRESH_FOR:
                track._offer(last[0])
        self._wanted.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _stop(self, track: NewestFrameTrack) -> None:
        if track in self._live:
            self._live.discard(track)
            self.dropped_total += track.dropped

    async def _run(self) -> None:
        while True:
            if not self._live:
                self._wanted.clear()
                await self._wanted.wait()  # nobody reads: neither do we (the source goes idle)
            try:
                frame: VideoFrame | None = await self._source.recv()  # type: ignore[assignment]
            except MediaStreamError:
                frame = None
            if frame is not None:
                self.delivered += 1
                self._last = (frame, time.monotonic())
            for track in list(self._live):
                track._offer(frame)
            if frame is None:
                self._ended = True
                return

    async def aclose(self) -> None:
        """Stop reading the source (the source itself is stopped by its owner)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
