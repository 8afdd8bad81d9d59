"""Camera capture edge: camera spec strings, OpenCV grabbers and the capture thread.

A camera is named by a spec string (``[camera] source`` in the terminal config), like a pyserial URL:

====================================  =============================================================
``/dev/video0``, ``/dev/v4l/by-id/…``  a V4L2 device by path (by-id paths survive re-plugging)
``0``, ``1``, …                        a V4L2 device by index
``file:PATH``                          a video file, played in a loop (tests, demos, fault drills)
``synthetic:camera``                   the moving test scene with clock and frame stamp
``synthetic:document``                 an A4 form with Japanese and Latin text (document camera)
``synthetic:camera-mjpg``              the test scene as a USB camera delivers it: MJPG, decoded per frame
====================================  =============================================================

This module holds everything that touches OpenCV, plus :class:`CameraCapture`, the thread that pulls
frames from any :class:`FrameGrabber`, paces them to the configured frame rate, keeps only the
newest one, and survives faults: when the camera fails to open or stops delivering, it logs one line,
retries with exponential backoff and resumes when the device is back. The synthetic grabbers live
with the pictures they draw in :mod:`kiosk.video.sources`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from common.backoff import Backoff
from common.logs import event

__all__ = [
    "ROTATIONS",
    "Backoff",
    "CameraCapture",
    "CameraError",
    "CameraNotFoundError",
    "CameraOpenError",
    "CameraReadError",
    "CameraSpec",
    "CameraSpecError",
    "FrameGrabber",
    "OpenCVGrabber",
    "parse_camera_spec",
]

log = logging.getLogger(__name__)

ROTATIONS = (0, 90, 180, 270)
RGBArray = npt.NDArray[np.uint8]


class CameraError(Exception):
    """A camera could not be opened or stopped delivering frames; the message says which and why."""


class CameraSpecError(CameraError, ValueError):
    """A camera spec string is malformed (a configuration error, not a device fault)."""


class CameraNotFoundError(CameraError):
    """The device node or video file does not exist (unplugged, or a wrong path)."""


class CameraOpenError(CameraError):
    """The device exists but cannot be opened (busy, no permission, not a capture device, not a video file)."""


class CameraReadError(CameraError):
    """The camera was open but a read failed (unplugged, driver error, a file without frames)."""


# ---------------------------------------------------------------------------------------------------
# Spec strings


@dataclass(frozen=True)
class CameraSpec:
    """A parsed camera spec.

    Attributes:
        kind: ``v4l2``, ``file`` or ``synthetic``.
        target: the device path or index (``v4l2``), the file path (``file``) or the pattern name
            ``camera``/``document`` (``synthetic``).
        text: the spec as written, for messages.
    """

    kind: Literal["v4l2", "file", "synthetic"]
    target: str | int
    text: str


SYNTHETIC_PATTERNS = ("camera", "document", "camera-mjpg")


def parse_camera_spec(spec: str) -> CameraSpec:
    """Parse a camera spec string (see the module docstring).

    Raises:
        CameraSpecError: the spec matches none of the forms; the message lists them.
    """
    text = spec.strip()
    if text.startswith("synthetic:"):
        pattern = text.removeprefix("synthetic:")
        if pattern not in SYNTHETIC_PATTERNS:
            raise CameraSpecError(
                f"camera source {spec!r}: unknown synthetic pattern {pattern!r}, "
                f"expected one of {', '.join('synthetic:' + p for p in SYNTHETIC_PATTERNS)}"
            )
        return CameraSpec("synthetic", pattern, text)
    if text.startswith("file:"):
        path = text.removeprefix("file:")
        if not path:
            raise CameraSpecError(
                f"camera source {spec!r}: file: needs a path, e.g. file:/srv/kiosk/loop.avi"
            )
        return CameraSpec("file", path, text)
    if text.isdigit():
        return CameraSpec("v4l2", int(text), text)
    if text.startswith("/dev/"):
        return CameraSpec("v4l2", text, text)
    raise CameraSpecError(
        f"camera source {spec!r}: expected a V4L2 device (/dev/video0, /dev/v4l/by-id/..., or an index "
        "such as 0), file:PATH, synthetic:camera, synthetic:camera-mjpg or synthetic:document"
    )


# ---------------------------------------------------------------------------------------------------
# Grabbers


class FrameGrabber(Protocol):
    """Something that yields RGB frames in a blocking way; used only from the capture thread.

    Attributes:
        description: what is captured, for log lines and status (``V4L2 /dev/video0``).
        paced: True when :meth:`read` blocks until the device has a new frame (a live camera sets
            the pace and extra frames are dropped); False when frames are ready at once (files,
            synthetic pictures) and the capture thread waits between reads.
    """

    description: str
    paced: bool

    def open(self) -> None:
        """Open the device. Raises CameraError."""

    def read(self) -> RGBArray:
        """The next frame as a height × width × 3 uint8 RGB array. Raises CameraError."""
        ...

    def close(self) -> None:
        """Release the device; safe to call when not open."""


class OpenCVGrabber:
    """A V4L2 camera or a looped video file, through ``cv2.VideoCapture``.

    A camera is asked for the configured size and rate (MJPG, so that 1920×1080 fits through USB 2)
    and delivers what it can: the size it actually delivers is logged and kept, never scaled down.
    A file is scaled to the configured size and reopened from its path at every loop, so a file that
    is removed behaves like an unplugged camera and one that comes back like a re-plugged one.
    """

    def __init__(self, spec: CameraSpec, width: int, height: int, fps: float) -> None:
        if spec.kind not in ("v4l2", "file"):
            raise CameraSpecError(f"OpenCVGrabber cannot capture {spec.text!r}")
        self.spec = spec
        self.width, self.height, self.fps = width, height, fps
        self.is_file = spec.kind == "file"
        self.paced = not self.is_file
        self.description = f"file {spec.target}" if self.is_file else f"V4L2 {spec.target}"
        self._cap: Any = None
        self._reported_size: tuple[int, int] | None = None

    def open(self) -> None:
        import cv2

        self.close()
        target = self.spec.target
        if isinstance(target, str) and not os.path.exists(target):
            raise CameraNotFoundError(f"{self.description}: no such {'file' if self.is_file else 'device'}")
        try:
            if self.is_file:
                cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG)
            else:
                cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
        except cv2.error as err:
            raise CameraOpenError(f"{self.description}: OpenCV failed to open it: {err}") from err
        if not cap.isOpened():
            cap.release()
            why = (
                "not a readable video file"
                if self.is_file
                else "busy, no permission (group video?) or not a capture device"
            )
            raise CameraOpenError(f"{self.description}: cannot open ({why})")
        if not self.is_file:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            # A deep driver queue delivers old frames when we read slower than the camera runs.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def read(self) -> RGBArray:
        import cv2

        if self._cap is None:
            raise CameraError(f"{self.description}: read before open")
        ok, bgr = self._cap.read()
        if not ok and self.is_file:
            self.open()  # end of file: start the next loop from the path
            ok, bgr = self._cap.read()
            if not ok:
                raise CameraReadError(f"{self.description}: the file has no readable video frames")
        if not ok or bgr is None:
            raise CameraReadError(f"{self.description}: read failed (unplugged or driver error)")
        height, width = bgr.shape[:2]
        if self.is_file and (width, height) != (self.width, self.height):
            bgr = cv2.resize(bgr, (self.width, self.height), interpolation=cv2.INTER_AREA)
        elif not self.is_file and self._reported_size != (width, height):
            self._reported_size = (width, height)
            if (width, height) != (self.width, self.height):
                event(
                    log,
                    "camera_size",
                    level=logging.WARNING,
                    camera=self.description,
                    requested=f"{self.width}x{self.height}",
                    delivered=f"{width}x{height}",
                )
        rgb: RGBArray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return rgb

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# ---------------------------------------------------------------------------------------------------
# The capture thread


@dataclass(frozen=True)
class CapturedFrame:
    """One published frame: a read-only RGB array, its sequence number and capture time (monotonic)."""

    seq: int
    rgb: RGBArray
    monotonic: float


class CameraCapture:
    """Runs one grabber in a thread: paced, newest frame wins, retries on faults.

    Args:
        grabber: the device.
        name: the camera's role (``camera``, ``document_camera``), for log lines.
        fps: frames per second to publish.
        rotation: initial rotation in degrees clockwise (0, 90, 180, 270).
        backoff: reopen delays after a fault (default: 0.5 s doubling up to 10 s).
        listener: called from the capture thread after every published frame and every change of
            availability; must be quick and thread-safe.
    """

    def __init__(
        self,
        grabber: FrameGrabber,
        *,
        name: str,
        fps: float,
        rotation: int = 0,
        backoff: Backoff | None = None,
        listener: Callable[[CapturedFrame | None], None] | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"camera {name}: fps must be greater than 0, got {fps}")
        self.grabber = grabber
        self.name = name
        self.fps = fps
        self.backoff = backoff or Backoff()
        self._listener = listener
        self._rotation = _check_rotation(rotation, name)
        self._lock = threading.Lock()
        self._latest: CapturedFrame | None = None
        self._seq = 0
        self._fault: str | None = None
        self._fault_error: BaseException | None = None
        self._started = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{name}", daemon=True)

    # -- control (any thread) --

    def start(self) -> None:
        """Start the capture thread (once)."""
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the thread and release the device; waits up to ``timeout`` s for a blocked read."""
        self._stop.set()
        if self._started and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                event(
                    log,
                    "camera_stop_timeout",
                    level=logging.WARNING,
                    camera=self.name,
                    device=self.grabber.description,
                    waited_s=timeout,
                )

    @property
    def rotation(self) -> int:
        """Current rotation in degrees clockwise."""
        return self._rotation

    def set_rotation(self, degrees: int) -> None:
        """Rotate the frames published from now on (0, 90, 180 or 270 degrees clockwise)."""
        self._rotation = _check_rotation(degrees, self.name)

    @property
    def latest(self) -> CapturedFrame | None:
        """The newest published frame, or None before the first one."""
        with self._lock:
            return self._latest

    @property
    def fault(self) -> str | None:
        """Why the camera is unavailable right now, or None while it delivers (or is starting)."""
        with self._lock:
            return self._fault

    @property
    def fault_error(self) -> BaseException | None:
        """The exception behind :attr:`fault` (for callers that choose what to do by its type), or None."""
        with self._lock:
            return self._fault_error if self._fault is not None else None

    @property
    def thread(self) -> threading.Thread:
        """The capture thread (for diagnostics and tests)."""
        return self._thread

    # -- the thread --

    def _run(self) -> None:
        retry = self.backoff.start()
        while not self._stop.is_set():
            try:
                self.grabber.open()
            except Exception as err:  # noqa: BLE001 - any library error is a camera fault, never a dead thread
                self._set_fault(_reason(err), err)
                if self._stop.wait(retry.jittered(retry.next())):
                    break
                continue
            try:
                self._pump()
                retry.reset()
            except Exception as err:  # noqa: BLE001
                self._set_fault(_reason(err), err)
                retry.reset()  # it was working a moment ago: try again soon
                self._stop.wait(self.backoff.initial)
            finally:
                try:
                    self.grabber.close()
                except Exception as err:  # noqa: BLE001
                    event(
                        log,
                        "camera_close_failed",
                        level=logging.WARNING,
                        camera=self.name,
                        error=_reason(err),
                    )

    def _pump(self) -> None:
        period = 1.0 / self.fps
        # A live camera's frames jitter; accept one that comes a little early rather than wait a whole
        # camera frame more.
        early = 0.2 * period
        due = time.monotonic()
        while not self._stop.is_set():
            if not self.grabber.paced:
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
            rgb = self.grabber.read()
            now = time.monotonic()
            if self.grabber.paced and now < due - early:
                continue  # the camera runs faster than asked: drop this one
            due = now if now - due > period else due
            due += period
            self._publish(rgb, now)

    def _publish(self, rgb: RGBArray, now: float) -> None:
        turns = self._rotation // 90
        if turns:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=-turns))
        rgb.setflags(write=False)
        with self._lock:
            self._seq += 1
            frame = CapturedFrame(self._seq, rgb, now)
            self._latest = frame
            recovered, self._fault = self._fault, None
        if recovered is not None:
            event(log, "camera_recovered", camera=self.name, device=self.grabber.description)
        if self._listener is not None:
            self._listener(frame)

    def _set_fault(self, reason: str, error: BaseException | None = None) -> None:
        with self._lock:
            first, self._fault = self._fault is None, reason
            self._fault_error = error
            self._latest = None
        if first:
            event(
                log,
                "camera_unavailable",
                level=logging.WARNING,
                camera=self.name,
                device=self.grabber.description,
                reason=reason,
                action=f"showing placeholder, retrying every {self.backoff.initial:g}-{self.backoff.maximum:g}s",
            )
        else:
            event(log, "camera_retry_failed", level=logging.DEBUG, camera=self.name, reason=reason)
        if self._listener is not None:
            self._listener(None)


def _check_rotation(degrees: int, name: str) -> int:
    if degrees not in ROTATIONS:
        raise ValueError(f"camera {name}: rotation must be 0, 90, 180 or 270 degrees, got {degrees!r}")
    return degrees


def _reason(err: BaseException) -> str:
    return str(err) if isinstance(err, CameraError) else f"{type(err).__name__}: {err}"
