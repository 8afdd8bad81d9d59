"""Lower the resident's/staff camera resolution when this PC cannot encode it at full rate, and raise it again.

aiortc never scales video down by itself (PLATFORM.md): on a slow kiosk PC the encoder falls behind, frames are
skipped and every remaining frame arrives late. Chromium's answer is to lower the resolution while the encoder is
overused; this module does the same for the *camera* track only. The document camera is never scaled: staff must
read small print, so its frame rate is what a technician lowers.

:class:`CameraAdapter` is the pure rule (fed counts, returns a new scale); :class:`CameraAdaptation` is the edge
that counts frames captured and frames each peer's encoder took, and applies the scale to the
:class:`~kiosk.video.sources.VideoSource`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc.mediastreams import MediaStreamTrack

from common.logs import event
from kiosk.video.stamp import SENT_SCALES

__all__ = ["MIN_ADAPTED_WIDTH", "STEPS", "CameraAdaptation", "CameraAdapter"]

log = logging.getLogger(__name__)

STEPS = SENT_SCALES  # 1280×720 → 960×540 → 640×360 (frame stamps are read at these sizes too)
MIN_ADAPTED_WIDTH = 640  # never scale a picture narrower than this (nor one that already is)
WARM_UP_FRAMES = 10  # an encoder is judged only once it has taken this many frames
START_CALM = 4.0  # seconds of keeping up per step while a call that started small grows


@dataclass
class CameraAdapter:
    """When to step the camera's scale down or up (pure: no clock of its own, no I/O).

    Call :meth:`observe` once per window with how many frames the camera captured and how many each encoder took.
    Below ``low`` (a share of the captured frames) the encoders cannot keep up: one step down. At ``high`` or more
    for ``calm`` seconds: one step up. A step down soon after a step up doubles the calm time (up to
    ``max_calm``), so a PC at its limit does not flip between two sizes.
    """

    width: int  # the configured width: what scale 1.0 means
    low: float = 0.85
    high: float = 0.95
    calm: float = 10.0
    max_calm: float = 120.0
    relapse: float = 15.0  # a step down within this time after a step up counts as a relapse
    step: int = 0
    _calm_since: float | None = field(default=None, repr=False)
    _last_up: float | None = field(default=None, repr=False)

    @property
    def scale(self) -> float:
        return STEPS[self.step]

    @property
    def lowest_step(self) -> int:
        """The smallest picture allowed: the last step that keeps the width at MIN_ADAPTED_WIDTH or more."""
        allowed = [i for i, s in enumerate(STEPS) if i == 0 or self.width * s >= MIN_ADAPTED_WIDTH]
        return allowed[-1]

    def observe(self, now: float, captured: int, taken: list[int]) -> float | None:
        """One window's counts; returns the new scale when it changes, else None."""
        if captured <= 0 or not taken:
            self._calm_since = None
            return None
        share = min(taken) / captured
        if share < self.low:
            self._calm_since = None
            if self.step >= self.lowest_step:
                return None
            if self._last_up is not None and now - self._last_up < self.relapse:
                self.calm = min(self.calm * 2, self.max_calm)
            self.step += 1
            return self.scale
        if share >= self.high and self.step > 0:
            if self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= self.calm:
                self.step -= 1
                self._calm_since = None
                self._last_up = now
                return self.scale
            return None
        self._calm_since = None
        return None


class ScalableSource(Protocol):
    """What :class:`CameraAdaptation` needs of a :class:`~kiosk.video.sources.VideoSource`."""

    frames_captured: int

    def track(self) -> MediaStreamTrack: ...

    def set_scale(self, scale: float) -> None: ...


class _MeteredTrack(MediaStreamTrack):
    """A camera subscription that counts the frames its consumer (one peer's encoder) took."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source
        self.taken = 0

    async def recv(self) -> Any:
        frame = await self._source.recv()
        self.taken += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._source.stop()


class CameraAdaptation:
    """Watches the encoders fed by one camera and scales the camera to what they keep up with.

    Args:
        source: the camera.
        width: its configured width.
        name: for log lines.
        window: seconds per observation.
        adapter: the rule (default :class:`CameraAdapter` for ``width``).
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        source: ScalableSource,
        width: int,
        *,
        name: str = "camera",
        window: float = 2.0,
        adapter: CameraAdapter | None = None,
        clock: Callable[[], float] | None = None,
        start_small: bool = False,
    ) -> None:
        self.source = source
        self.name = name
        self.window = window
        self.adapter = adapter or CameraAdapter(width)
        if start_small and self.adapter.lowest_step:
            # As browsers do: the call opens with the smallest size (a small first key frame encodes and arrives
            # sooner, and leaves the CPU to the document camera's) and grows once the encoders show they keep up.
            self.adapter.step, self.adapter.calm = (
                self.adapter.lowest_step,
                min(self.adapter.calm, START_CALM),
            )
            source.set_scale(self.adapter.scale)
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._tracks: list[_MeteredTrack] = []
        self._task: asyncio.Task[None] | None = None

    def track(self) -> MediaStreamTrack:
        """A new metered subscription of the camera, for one peer connection."""
        t = _MeteredTrack(self.source.track())
        self._tracks.append(t)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return t

    async def _run(self) -> None:
        captured, taken = self.source.frames_captured, {id(t): t.taken for t in self._tracks}
        while True:
            await asyncio.sleep(self.window)
            live = [t for t in self._tracks if t.readyState == "live"]
            now_captured = self.source.frames_captured
            # Only encoders that were already running: one that waits for its connection, or encodes its first
            # key frame, is not behind.
            counts = [t.taken - taken[id(t)] for t in live if taken.get(id(t), 0) >= WARM_UP_FRAMES]
            before = self.adapter.scale
            scale = self.adapter.observe(self._clock(), now_captured - captured, counts)
            captured, taken = now_captured, {id(t): t.taken for t in live}
            if scale is not None:
                self.source.set_scale(scale)
                event(
                    log,
                    "camera_adapted",
                    camera=self.name,
                    scale=scale,
                    taken=",".join(map(str, counts)),
                    why="the encoders fell behind" if scale < before else "the encoders keep up again",
                )

    async def close(self) -> None:
        """Stop watching and give the camera back at full size."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._tracks.clear()
        if self.adapter.step:
            self.adapter.step = 0
            self.source.set_scale(1.0)
