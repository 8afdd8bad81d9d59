"""Video sources: a camera (real, file or synthetic) as an aiortc track that one capture feeds to all.

``open_video_source(cfg, name=...)`` starts a :class:`~kiosk.devices.cameras.CameraCapture` thread
for the camera named by ``cfg.source`` (see :mod:`kiosk.devices.cameras` for the spec strings) and
returns a :class:`VideoSource`. Every :meth:`VideoSource.track` call returns a new
``MediaStreamTrack`` subscribed through a :class:`~kiosk.video.fanout.NewestFrameRelay`: the peer connections
and the local preview all share one capture. Each subscriber holds one frame: an encoder that is behind gets
the newest frame when it asks again, never a backlog, and the frames it missed are counted
(:attr:`VideoSource.frames_dropped`).

Frames leave as ``yuv420p``, converted once in the capture thread: the encoders then use them as they
are. Handing the same RGB frame to several peers would make each encoder thread convert it through
that frame's one cached converter at the same time, which crashes the process (PyAV keeps one
``VideoReformatter`` per frame).

While the camera is unavailable (fails to open, unplugged, stalls) the track keeps delivering the
"カメラが使用できません / camera unavailable" placeholder at the configured frame rate and size, so
the call never freezes; real frames resume by themselves when the capture thread reopens the device.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
import time
from types import TracebackType
from typing import Any

import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from av.video.reformatter import VideoReformatter

from common.logs import event
from kiosk.config import CameraConfig
from kiosk.devices.cameras import (
    Backoff,
    CameraCapture,
    CameraError,
    CapturedFrame,
    FrameGrabber,
    parse_camera_spec,
)
from kiosk.video.encoders import profile_for, tag_frame
from kiosk.video.fanout import NewestFrameRelay
from kiosk.video.frames import RGBArray, opencv, rgb_to_yuv420p, scaled
from kiosk.video.grabbers import (
    SyntheticCameraGrabber,
    SyntheticDocumentGrabber,
    SyntheticMjpegGrabber,
    create_grabber,
)
from kiosk.video.sink import LocalPreview
from kiosk.video.stamp import read_frame_stamp
from kiosk.video.synthetic import DOCUMENT_TEXT, render_placeholder

__all__ = [
    "DOCUMENT_TEXT",
    "Backoff",
    "SyntheticCameraGrabber",
    "SyntheticDocumentGrabber",
    "SyntheticMjpegGrabber",
    "VideoSource",
    "create_grabber",
    "open_video_source",
    "opencv",
    "read_frame_stamp",
    "rgb_to_yuv420p",
    "scaled",
]

log = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
WANTED_GRACE = 1.0  # s after a track last asked for a frame during which captured frames are still converted


# ---------------------------------------------------------------------------------------------------
# The track


class _CaptureTrack(MediaStreamTrack):
    """The single source track of a VideoSource; consumers get relay subscriptions of it."""

    kind = "video"

    def __init__(self, source: VideoSource) -> None:
        super().__init__()
        self._source = source
        self._last_seq = 0
        self._placeholder = False
        self._start: float | None = None
        self._last_pts = -1

    async def recv(self) -> VideoFrame:
        source = self._source
        wake = source._bind_loop()
        loop = asyncio.get_running_loop()
        period = 1.0 / source.config.fps
        deadline = loop.time() + (period if self._placeholder else source.stall_timeout)
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            wake.clear()
            pending = source._newer_than(self._last_seq)
            if pending is not None:
                self._last_seq, frame = pending
                if self._placeholder:
                    self._placeholder = False
                break
            faulted = source._capture.fault is not None
            remaining = deadline - loop.time()
            if (faulted and not self._placeholder) or remaining <= 0:
                if not faulted and not self._placeholder:
                    event(
                        log,
                        "camera_stalled",
                        level=logging.WARNING,
                        camera=source.name,
                        device=source.device,
                        waited_s=source.stall_timeout,
                    )
                self._placeholder = True
                frame = source._placeholder_frame()
                break
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except TimeoutError:
                pass
        frame.pts = self._next_pts()
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def _next_pts(self) -> int:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        pts = max(int((now - self._start) * VIDEO_CLOCK_RATE), self._last_pts + 1)
        self._last_pts = pts
        return pts

    def stop(self) -> None:
        super().stop()
        self._source._wake_now()


# ---------------------------------------------------------------------------------------------------
# VideoSource


class VideoSource:
    """One camera, captured once and shared: aiortc tracks, full-resolution stills, status, rotation.

    Args:
        grabber: the device (see :func:`create_grabber`; tests pass their own).
        config: requested size and rate, initial rotation.
        name: the camera's role (``camera``, ``document_camera``), for logs and status.
        backoff: reopen delays after a fault.
        stall_timeout: seconds without a frame after which the tracks show the placeholder even
            though the device has not reported an error (a hung driver). Default: the longer of 2 s
            and three frame periods.
    """

    def __init__(
        self,
        grabber: FrameGrabber,
        config: CameraConfig,
        *,
        name: str,
        backoff: Backoff | None = None,
        stall_timeout: float | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.device = grabber.description
        self.stall_timeout = stall_timeout if stall_timeout is not None else max(2.0, 3.0 / config.fps)
        self._lock = threading.Lock()
        self._av_frame: tuple[int, VideoFrame] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False
        self._reformatter = VideoReformatter()  # capture thread only
        self.encoder_profile = profile_for(name)  # how the peers' VP8 encoders treat this camera's frames
        self._wanted_until = 0.0  # monotonic time until which captured frames are converted for the tracks
        self._scale = (
            1.0  # of the frames sent to encoders (kiosk.video.adapt); stills and previews stay full size
        )
        self.frames_captured = 0
        self.frames_converted = 0  # wrapped for the tracks (scaled, yuv420p): only while a track reads
        self._placeholder_yuv: tuple[int, npt.NDArray[Any]] | None = None  # (rotation, yuv420p planes)
        self._capture = CameraCapture(
            grabber,
            name=name,
            fps=config.fps,
            rotation=config.rotation,
            backoff=backoff,
            listener=self._on_capture,
        )
        self._preview: LocalPreview | None = None
        self._track = _CaptureTrack(self)
        self._relay = NewestFrameRelay(self._track)
        self._capture.start()

    # -- public API --

    def track(self) -> MediaStreamTrack:
        """A new subscriber track of this camera (one per peer connection or preview)."""
        if self._closed:
            raise CameraError(f"camera {self.name}: track() after close()")
        return self._relay.subscribe()

    @property
    def frames_dropped(self) -> int:
        """Frames a track's consumer (an encoder, a preview) was too busy to take and got a newer one instead."""
        return self._relay.dropped

    def preview(self) -> LocalPreview:
        """This camera on this terminal's own screen (self-view, document preview): a frame source that views
        tell their size, shrunk to it in the capture thread (:class:`~kiosk.video.sink.LocalPreview`)."""
        if self._preview is None:
            self._preview = LocalPreview(self._newest_captured)
        return self._preview

    def _newest_captured(self) -> tuple[int, RGBArray] | None:
        if self._capture.fault is not None:
            return None
        frame = self._capture.latest
        return None if frame is None else (frame.seq, frame.rgb)

    def latest_frame(self) -> RGBArray | None:
        """The newest captured frame (read-only RGB, full capture size, rotated), or None if unavailable."""
        if self._capture.fault is not None:
            return None
        frame = self._capture.latest
        return None if frame is None else frame.rgb

    @property
    def status(self) -> str:
        """``ok``, ``starting`` (before the first frame) or ``unavailable: <reason>``."""
        fault = self._capture.fault
        if fault is not None:
            return f"unavailable: {fault}"
        latest = self._capture.latest
        if latest is None:
            return "starting"
        silent = time.monotonic() - latest.monotonic
        if silent > self.stall_timeout:
            return f"unavailable: {self.device}: no frame for {silent:.1f}s"
        return "ok"

    @property
    def fault_error(self) -> BaseException | None:
        """The exception behind an ``unavailable`` status raised by the device (None for a stall or while fine)."""
        return self._capture.fault_error

    @property
    def rotation(self) -> int:
        """Current rotation in degrees clockwise."""
        return self._capture.rotation

    def set_rotation(self, degrees: int) -> None:
        """Rotate from the next frame on: 0, 90, 180 or 270 degrees clockwise (ValueError otherwise)."""
        self._capture.set_rotation(degrees)
        event(log, "camera_rotation", camera=self.name, degrees=degrees)

    @property
    def scale(self) -> float:
        """The share of the captured size that the tracks carry (1.0 unless :mod:`kiosk.video.adapt` lowered it)."""
        return self._scale

    def set_scale(self, scale: float) -> None:
        """Send frames at ``scale`` × the captured size from the next frame on (0 < scale ≤ 1); stills and the
        local preview (``latest_frame``) keep the full size."""
        if not 0 < scale <= 1:
            raise ValueError(f"camera {self.name}: scale must be in (0, 1], got {scale}")
        self._scale = scale

    def placeholder(self) -> RGBArray:
        """The placeholder picture at the configured size, turned like the frames (read-only)."""
        width, height = self.config.width, self.config.height
        if self.rotation in (90, 270):
            width, height = height, width
        return render_placeholder(width, height)

    @property
    def capture_thread(self) -> threading.Thread:
        """The thread that runs the device (diagnostics and tests)."""
        return self._capture.thread

    def close(self) -> None:
        """End the tracks and stop the capture (waits briefly for the thread)."""
        self._begin_close()
        self._capture.stop()

    async def aclose(self) -> None:
        """Like :meth:`close`, but waits for the capture thread off the event loop."""
        self._begin_close()
        await asyncio.to_thread(self._capture.stop)

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> VideoSource:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- plumbing between the capture thread and the loop --

    def _begin_close(self) -> None:
        if not self._closed:
            self._closed = True
            self._track.stop()

    def _on_capture(self, frame: CapturedFrame | None) -> None:
        """Capture thread: wrap the frame for aiortc here, off the loop, then wake the track.

        Only while some track is being read (a call, a preview through a track): an idle kiosk captures for its
        status and stills but converts nothing. The first frame a track asks for after a pause is converted
        where it is asked for (:meth:`_newer_than`)."""
        if frame is not None:
            self.frames_captured += 1
            preview = self._preview
            if preview is not None:
                preview.offer(frame.seq, frame.rgb)
            if time.monotonic() < self._wanted_until:
                av_frame = self._wrap(frame.rgb, self._reformatter)
                with self._lock:
                    self._av_frame = (frame.seq, av_frame)
            else:
                with self._lock:
                    self._av_frame = None
        self._wake_now()

    def _wrap(self, rgb: RGBArray, reformatter: VideoReformatter | None = None) -> VideoFrame:
        self.frames_converted += 1
        if self._scale < 1.0:
            rgb = scaled(rgb, self._scale)
        return tag_frame(rgb_to_yuv420p(rgb, reformatter), self.encoder_profile)

    def _wake_now(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def _bind_loop(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._wake is None:
            self._loop, self._wake = loop, asyncio.Event()
        return self._wake

    def _placeholder_frame(self) -> VideoFrame:
        """A new yuv420p frame of the placeholder (a new object each time: its pts is set per frame)."""
        rotation, rgb = self.rotation, self.placeholder()
        if rgb.shape[0] % 2 or rgb.shape[1] % 2:  # yuv420p planes need even sides: convert each time
            return tag_frame(rgb_to_yuv420p(rgb), self.encoder_profile)
        cached = self._placeholder_yuv
        if cached is None or cached[0] != rotation:
            cached = self._placeholder_yuv = (rotation, rgb_to_yuv420p(rgb).to_ndarray())
        return tag_frame(VideoFrame.from_ndarray(cached[1], format="yuv420p"), self.encoder_profile)

    def _newer_than(self, seq: int) -> tuple[int, VideoFrame] | None:
        now = time.monotonic()
        was_idle = now >= self._wanted_until
        self._wanted_until = now + WANTED_GRACE
        with self._lock:
            pending = self._av_frame
            if pending is not None and pending[0] > seq:
                self._av_frame = None  # each wrapped frame goes out once; its pts is set on the way
                return pending
        latest = self._capture.latest
        if was_idle and latest is not None and latest.seq > seq and self._capture.fault is None:
            return latest.seq, self._wrap(
                latest.rgb
            )  # nobody read for a while: the newest frame, converted now
        return None


def open_video_source(cfg: CameraConfig, *, name: str, backoff: Backoff | None = None) -> VideoSource:
    """Open the camera named by ``cfg.source`` and start capturing.

    A device that is missing or fails does not raise: the source starts with status
    ``unavailable: ...``, shows the placeholder and keeps retrying.

    Args:
        cfg: ``[camera]`` or ``[document_camera]`` of the terminal config.
        name: the camera's role, for logs and status (``camera``, ``document_camera``).
        backoff: reopen delays after a fault (default 0.5 s doubling to 10 s).

    Raises:
        CameraSpecError: ``cfg.source`` is not a valid spec (a configuration error).
    """
    spec = parse_camera_spec(cfg.source)
    source = VideoSource(create_grabber(spec, cfg), cfg, name=name, backoff=backoff)
    event(
        log,
        "camera_open",
        camera=name,
        source=spec.text,
        size=f"{cfg.width}x{cfg.height}",
        fps=cfg.fps,
        rotation=cfg.rotation,
    )
    return source
