"""Frame conversions shared by the capture side and the screens: RGB → yuv420p for the encoders, scaling.

Kept apart from :mod:`kiosk.video.sources` (the aiortc track and its capture thread) and
:mod:`kiosk.video.grabbers` (the synthetic devices), which both use them: OpenCV set up once per process, the
cheapest RGB → yuv420p wrap PyAV accepts without a copy, and a resize that picks its filter by the step.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt
from av import VideoFrame
from av.video.reformatter import VideoReformatter

__all__ = ["RGBArray", "fit_within", "opencv", "rgb_to_yuv420p", "scaled", "shrunk_to"]

RGBArray = npt.NDArray[np.uint8]


@functools.cache
def opencv() -> Any:
    """OpenCV, set up once for this process: one thread per call.

    OpenCV runs conversions and resizes on a pool of worker threads that spin (``sched_yield``) between jobs: on
    a 2-core kiosk those spinning workers took 8 % of the station's samples in the profile
    (docs/performance.md), for conversions of about a millisecond that each run on a capture or decode thread of
    their own anyway.
    """
    import cv2

    cv2.setNumThreads(1)
    return cv2


def scaled(rgb: RGBArray, scale: float) -> RGBArray:
    """``rgb`` at ``scale`` × its size, even sides (yuv420p).

    Halving (and any whole divisor) averages areas; other steps (0.75) are bilinear: OpenCV's area filter at a
    fractional factor costs 5.5 ms per 720p frame against 1.2 ms (a sixth of a core at 30 fps), and for shrinking
    by less than half, bilinear samples every source pixel anyway (no aliasing).
    """
    cv2 = opencv()
    height, width = rgb.shape[:2]
    size = (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))
    whole = abs(1 / scale - round(1 / scale)) < 1e-6
    interpolation = cv2.INTER_AREA if whole or scale < 0.5 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(rgb, size, interpolation=interpolation), dtype=np.uint8)


def rgb_to_yuv420p(rgb: RGBArray, reformatter: VideoReformatter | None = None) -> VideoFrame:
    """An RGB frame as the ``yuv420p`` frame encoders take (BT.601, video range, as libswscale makes it).

    OpenCV's SIMD conversion is about four times faster than libswscale's here (1.4 vs 6.3 ms at 1280×720 on
    the project machine: a tenth of a core at 30 fps); yuv420p needs even sides, so odd sizes go through swscale.
    The usual widths (640, 960, 1280, 1920) are wrapped without a copy.
    """
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        return (reformatter or VideoReformatter()).reformat(
            VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuv420p"
        )
    cv2 = opencv()
    i420 = np.asarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420), dtype=np.uint8)
    if width % 32 == 0 and height % 4 == 0:
        # The frame wraps the new array without copying it (1.2 ms a 720p frame, 2.6 ms at 1080p). PyAV reads
        # the planes this way only for widths whose half is a multiple of 16, and rounds other heights down
        # (160×90 became 160×88): those sizes are copied.
        frame = VideoFrame.from_numpy_buffer(i420, format="yuv420p")
        if (frame.width, frame.height) == (width, height):
            return frame
    return VideoFrame.from_ndarray(i420, format="yuv420p")


SHRINK_BELOW = (
    0.5  # a view larger than this share of the frame is drawn from the full frame (the GPU scales it)
)


def fit_within(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """The size at which a ``width`` × ``height`` picture is worth preparing for a view of ``box``: shrunk (never
    grown) to fit with its aspect ratio kept, even sides, at least 2 × 2; the full size when the view is at least
    :data:`SHRINK_BELOW` of it (shrinking a picture by a little costs the CPU more than uploading it whole: a
    1280×720 frame converted at 1000×562 took 1.8 ms against 0.3 ms at full size, the larger upload 0.4 ms more)."""
    box_w, box_h = max(2, int(box[0])), max(2, int(box[1]))
    scale = min(1.0, box_w / width, box_h / height)
    if scale >= SHRINK_BELOW:
        return width, height
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def shrunk_to(rgb: RGBArray, box: tuple[int, int] | None) -> RGBArray:
    """``rgb`` shrunk to fit ``box`` (see :func:`fit_within`), or as it is when it already fits or there is no box.

    By a whole factor first (OpenCV's area filter is fast only for whole factors: 0.8 ms for 1280×720 → 320×180,
    against 2.1 ms straight to 280×158), then bilinear for the rest (less than 2×: no aliasing)."""
    if box is None:
        return rgb
    height, width = rgb.shape[:2]
    size = fit_within(width, height, box)
    if size == (width, height):
        return rgb
    cv2 = opencv()
    factor = int(min(width / size[0], height / size[1]))
    if factor > 1:
        rgb = cv2.resize(rgb, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    if (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
    return np.asarray(rgb, dtype=np.uint8)
