"""The rendering hook between decoded video and the screens.

A :class:`FrameSink` takes decoded frames from any thread or task and keeps only the newest, as an
RGB numpy array with a sequence number. The UI polls :meth:`FrameSink.latest` on the main thread
(e.g. from a Kivy clock callback) and uploads a texture only when the sequence number changed.
:func:`consume_track` feeds a sink from a remote (or local) ``MediaStreamTrack``.

Frames from a ``MediaRelay`` are shared with other consumers (encoders, other sinks). They are
converted with a converter owned by the sink or the consuming task, never with ``frame.to_ndarray``
/ ``frame.reformat``, which use one converter cached in the frame and crash when two threads convert
the same frame at once.

Screens import this module, never aiortc: the sink hands them plain arrays.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from av.video.reformatter import VideoReformatter

__all__ = ["FrameSink", "consume_track"]

RGBArray = npt.NDArray[np.uint8]


class FrameSink:
    """Latest-frame-wins mailbox for one video stream; thread-safe.

    Arrays handed out by :meth:`latest` are read-only and never modified afterwards, so the UI can
    keep one without copying while new frames arrive.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._convert_lock = threading.Lock()
        self._reformatter = VideoReformatter()
        self._seq = 0
        self._latest: tuple[int, RGBArray] | None = None

    def put(self, frame: VideoFrame | RGBArray) -> int:
        """Store a frame (an ``av.VideoFrame`` in any format, or a height × width × 3 uint8 RGB array).

        An array is kept as is (not copied): the caller must not change it afterwards.

        Returns:
            The frame's sequence number (1, 2, ...).

        Raises:
            ValueError: an array that is not height × width × 3 uint8.
        """
        if isinstance(frame, VideoFrame):
            with self._convert_lock:
                rgb: RGBArray = _to_rgb(frame, self._reformatter)
        else:
            rgb = np.asarray(frame)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(
                    f"frame sink {self.name!r}: expected a height×width×3 uint8 RGB array, "
                    f"got shape {rgb.shape} dtype {rgb.dtype}"
                )
        if rgb.flags.writeable:
            rgb.setflags(write=False)
        with self._lock:
            self._seq += 1
            self._latest = (self._seq, rgb)
            return self._seq

    def latest(self) -> tuple[int, RGBArray] | None:
        """``(seq, rgb)`` of the newest frame, or None before the first one (or after :meth:`clear`)."""
        with self._lock:
            return self._latest

    @property
    def seq(self) -> int:
        """Sequence number of the newest frame put (0 before the first)."""
        with self._lock:
            return self._seq

    def clear(self) -> None:
        """Forget the current frame (the call ended); sequence numbers keep counting up."""
        with self._lock:
            self._latest = None


def _to_rgb(frame: VideoFrame, reformatter: VideoReformatter) -> RGBArray:
    rgb: RGBArray = reformatter.reformat(frame, format="rgb24").to_ndarray()  # type: ignore[assignment]
    return rgb


async def consume_track(track: MediaStreamTrack, sink: FrameSink) -> None:
    """Pull frames from ``track`` into ``sink`` until the track ends.

    The conversion to RGB (a full-frame colour conversion) runs in a worker thread, not on the
    event loop. Returns normally when the track ends; cancel the task to stop earlier.
    """
    reformatter = VideoReformatter()  # used by one conversion at a time: this task awaits each
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, VideoFrame):
            raise TypeError(
                f"consume_track: expected video frames from track {track.id}, got {type(frame).__name__}"
            )
        rgb = await asyncio.to_thread(_to_rgb, frame, reformatter)
        sink.put(rgb)
