"""The rendering hook between decoded video and the screens.

A :class:`FrameSink` takes decoded frames from any thread or task and keeps only the newest, as an
RGB numpy array with a sequence number. The UI polls :meth:`FrameSink.latest` on the main thread
(e.g. from a Kivy clock callback) and uploads a texture only when the sequence number changed.
:func:`consume_track` feeds a sink from a remote (or local) ``MediaStreamTrack``.

Only what is displayed is converted: the views showing a sink tell it their size in pixels
(:meth:`FrameSink.set_display_size`), and each decoded frame is converted to RGB *at that size* in one
libswscale pass (a 1080p document shown in a 384×216 tile is converted to 384×216, not to 1920×1080 and
then shrunk by the GPU); a frame that a newer one replaced before it was converted is dropped; while every
view of a sink is hidden nothing is converted. A sink nobody has sized (headless terminals, benchmarks)
keeps the full decoded size. :class:`LocalPreview` does the same for this terminal's own cameras (the
self-view and document preview): the capture thread shrinks each frame to the preview's size.

Frames from a ``MediaRelay`` are shared with other consumers (encoders, other sinks). They are
converted with a converter owned by the sink or the consuming task, never with ``frame.to_ndarray``
/ ``frame.reformat``, which use one converter cached in the frame and crash when two threads convert
the same frame at once.

Screens import this module, never aiortc: the sink hands them plain arrays.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter

from kiosk.video.frames import fit_within, shrunk_to

__all__ = ["HIDDEN", "DisplaySizes", "FrameSink", "LocalPreview", "consume_track"]

RGBArray = npt.NDArray[np.uint8]
Size = tuple[int, int]
HIDDEN: Size = (0, 0)  # a view that is not on screen
WANTED_GRACE = 1.0  # s after its last poll during which a preview is still shrunk for


class DisplaySizes:
    """The sizes (pixels) at which views show one stream; thread-safe.

    :meth:`box` is what a frame is converted to: ``None`` when no view ever said (full size), :data:`HIDDEN`
    when every view is off screen (convert nothing), else the smallest box holding every visible view.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[int, Size] = {}

    def set(self, owner: object, size: Size | None) -> None:
        """``owner`` (a view) shows the stream at ``size`` (:data:`HIDDEN`: not on screen; None: no longer)."""
        with self._lock:
            if size is None:
                self._sizes.pop(id(owner), None)
            else:
                self._sizes[id(owner)] = (max(0, int(size[0])), max(0, int(size[1])))

    def box(self) -> Size | None:
        with self._lock:
            if not self._sizes:
                return None
            return max(w for w, _ in self._sizes.values()), max(h for _, h in self._sizes.values())


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
        self.display = DisplaySizes()
        self.frames_dropped = 0  # decoded frames a newer one replaced before they were converted
        self.frames_hidden = 0  # decoded frames not converted because no view showed them

    def set_display_size(self, owner: object, size: Size | None) -> None:
        """A view shows this stream at ``size`` pixels (:data:`HIDDEN`: it is off screen; None: it is gone)."""
        self.display.set(owner, size)

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
                rgb: RGBArray = _to_rgb(frame, self._reformatter, self.display.box())
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


def _to_rgb(frame: VideoFrame, reformatter: VideoReformatter, box: Size | None = None) -> RGBArray:
    """``frame`` as RGB, shrunk to fit ``box`` in the same libswscale pass (area filter: small print stays
    as legible as the screen allows)."""
    width, height = frame.width, frame.height
    if box is not None and box != HIDDEN:
        width, height = fit_within(frame.width, frame.height, box)
    if (width, height) == (frame.width, frame.height):
        out = reformatter.reformat(frame, format="rgb24")
    else:
        # area for large steps (as cheap as bilinear there, and small print stays legible), bilinear otherwise
        smaller = width * 2 <= frame.width
        interpolation = Interpolation.AREA if smaller else Interpolation.BILINEAR
        out = reformatter.reformat(
            frame, format="rgb24", width=width, height=height, interpolation=interpolation
        )
    rgb: RGBArray = out.to_ndarray()  # type: ignore[assignment]
    return rgb


async def consume_track(track: MediaStreamTrack, sink: FrameSink) -> None:
    """Pull frames from ``track`` into ``sink`` until the track ends.

    One task reads the decoded frames as they come and keeps the newest; this one converts the newest to RGB at
    the sink's display size in a worker thread (a full-frame colour conversion never runs on the event loop).
    When conversion falls behind, the frames it never got to are dropped (``sink.frames_dropped``): the screen
    shows the newest picture, never a queue of old ones. Returns normally when the track ends; cancel the task to
    stop earlier.
    """
    reformatter = VideoReformatter()  # used by one conversion at a time: this task awaits each
    slot: list[VideoFrame] = []
    ready = asyncio.Event()

    async def read() -> None:
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                if not isinstance(frame, VideoFrame):
                    raise TypeError(
                        f"consume_track: expected video frames from track {track.id}, got {type(frame).__name__}"
                    )
                if slot:
                    sink.frames_dropped += 1
                    slot.clear()
                slot.append(frame)
                ready.set()
        finally:
            ready.set()

    reader = asyncio.get_running_loop().create_task(read())
    try:
        while True:
            if not slot:
                if reader.done():
                    break
                ready.clear()
                await ready.wait()
                continue
            frame = slot.pop()
            box = sink.display.box()
            if box == HIDDEN:
                sink.frames_hidden += 1
                continue
            rgb = await asyncio.to_thread(_to_rgb, frame, reformatter, box)
            sink.put(rgb)
        await reader  # raises what the reader raised (a track that is not video)
    finally:
        if not reader.done():
            reader.cancel()


class LocalPreview:
    """This terminal's own camera on screen (self-view, document preview), at the size it is shown.

    ``offer`` is called by the capture thread with every captured frame: while a view has polled within the
    last :data:`WANTED_GRACE` and has said its size, the frame is shrunk there, off the UI thread, and only the
    shrunk copy reaches the texture. ``latest`` is a :class:`kiosk.ui.video.FrameSource`.

    Args:
        newest: the newest captured frame, full size (for the first poll, before the capture thread offered one).
    """

    def __init__(self, newest: Callable[[], tuple[int, RGBArray] | None]) -> None:
        self._newest = newest
        self.display = DisplaySizes()
        self._lock = threading.Lock()
        self._frame: tuple[int, RGBArray] | None = None
        self._polled = 0.0
        self.frames_shrunk = 0

    def set_display_size(self, owner: object, size: Size | None) -> None:
        self.display.set(owner, size)

    @property
    def wanted(self) -> bool:
        """Whether a view polled recently (the capture thread prepares frames for it)."""
        return time.monotonic() - self._polled < WANTED_GRACE

    def offer(self, seq: int, rgb: RGBArray) -> None:
        """Capture thread: a new frame; shrunk and kept only while a view shows the preview."""
        box = self.display.box()
        if not self.wanted or box == HIDDEN:
            with self._lock:
                self._frame = None
            return
        small = shrunk_to(rgb, box)
        if small is not rgb:
            self.frames_shrunk += 1
            small.setflags(write=False)
        with self._lock:
            self._frame = (seq, small)

    def latest(self) -> tuple[int, RGBArray] | None:
        self._polled = time.monotonic()
        with self._lock:
            frame = self._frame
        if frame is not None:
            return frame
        newest = self._newest()
        if newest is None:
            return None
        seq, rgb = newest
        small = shrunk_to(rgb, self.display.box() if self.display.box() != HIDDEN else None)
        with self._lock:
            self._frame = (seq, small)
        return seq, small
