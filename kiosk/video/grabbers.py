"""Synthetic cameras: the moving test scene, the same scene MJPG-decoded like a USB camera's, the A4 form.

Each is a :class:`~kiosk.devices.cameras.FrameGrabber` (``open``/``read``/``close``, RGB frames) that a
:class:`~kiosk.video.sources.VideoSource` captures exactly like a real camera; :func:`create_grabber` turns a parsed
camera spec into the grabber for it (a real device goes to :class:`~kiosk.devices.cameras.OpenCVGrabber`).
"""

from __future__ import annotations

import time

import numpy as np

from kiosk.config import CameraConfig
from kiosk.devices.cameras import CameraError, CameraSpec, FrameGrabber, OpenCVGrabber
from kiosk.video.frames import RGBArray, opencv
from kiosk.video.stamp import draw_frame_stamp
from kiosk.video.synthetic import SyntheticScene, render_document_page

__all__ = ["SyntheticCameraGrabber", "SyntheticDocumentGrabber", "SyntheticMjpegGrabber", "create_grabber"]


class SyntheticCameraGrabber:
    """``synthetic:camera``: the moving test scene with clock and frame stamp."""

    paced = False

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.description = f"synthetic:camera {width}x{height}"
        self._scene: SyntheticScene | None = None

    def open(self) -> None:
        try:
            self._scene = SyntheticScene(self.width, self.height)
        except ValueError as err:
            raise CameraError(f"{self.description}: {err}") from err

    def read(self) -> RGBArray:
        if self._scene is None:
            raise CameraError(f"{self.description}: read before open")
        return self._scene.render()

    def close(self) -> None:
        self._scene = None


class SyntheticMjpegGrabber(SyntheticCameraGrabber):
    """``synthetic:camera-mjpg``: the test scene as a USB camera delivers it, for benchmarks.

    A UVC camera at 1280×720@30 sends MJPG (raw YUV does not fit through USB 2), and OpenCV's V4L2 backend
    decodes every frame with libjpeg into BGR, which :class:`~kiosk.devices.cameras.OpenCVGrabber` turns into
    RGB. This grabber does the same work per frame on a loop of :data:`MJPG_LOOP` JPEG frames of the scene,
    encoded once at open (quality 80, like webcams), then stamps the decoded frame with its counter and capture
    time so glass-to-glass still reads.
    """

    MJPG_LOOP = 30

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        self.description = f"synthetic:camera-mjpg {width}x{height}"
        self._jpegs: list[bytes] = []
        self._counter = 0

    def open(self) -> None:
        cv2 = opencv()
        super().open()
        assert self._scene is not None
        self._jpegs = []
        for _ in range(self.MJPG_LOOP):
            bgr = cv2.cvtColor(self._scene.render(), cv2.COLOR_RGB2BGR)
            ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if not ok:
                raise CameraError(f"{self.description}: JPEG encoding failed")
            self._jpegs.append(jpeg.tobytes())

    def read(self) -> RGBArray:
        cv2 = opencv()
        if not self._jpegs:
            raise CameraError(f"{self.description}: read before open")
        jpeg = np.frombuffer(self._jpegs[self._counter % len(self._jpegs)], dtype=np.uint8)
        bgr = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        if bgr is None:
            raise CameraError(f"{self.description}: a JPEG frame did not decode")
        rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        draw_frame_stamp(rgb, self._counter, int(time.time() * 1000))
        self._counter += 1
        return rgb

    def close(self) -> None:
        super().close()
        self._jpegs = []


class SyntheticDocumentGrabber:
    """``synthetic:document``: the A4 form on a desk, with a frame stamp in the desk's top-left corner."""

    paced = False

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.description = f"synthetic:document {width}x{height}"
        self._page: RGBArray | None = None
        self._counter = 0

    def open(self) -> None:
        try:
            self._page = render_document_page(self.width, self.height)
        except FileNotFoundError as err:
            raise CameraError(f"{self.description}: {err}") from err

    def read(self) -> RGBArray:
        if self._page is None:
            raise CameraError(f"{self.description}: read before open")
        frame = self._page.copy()
        # The page is centred and leaves the desk's corner free: the stamp never covers text.
        if frame.shape[1] >= frame.shape[0]:
            draw_frame_stamp(frame, self._counter, int(time.time() * 1000))
        self._counter += 1
        return frame

    def close(self) -> None:
        self._page = None


def create_grabber(spec: CameraSpec, cfg: CameraConfig) -> FrameGrabber:
    """The grabber for a parsed spec, asked for the configured size and rate."""
    if spec.kind == "synthetic":
        if spec.target == "camera":
            return SyntheticCameraGrabber(cfg.width, cfg.height)
        if spec.target == "camera-mjpg":
            return SyntheticMjpegGrabber(cfg.width, cfg.height)
        return SyntheticDocumentGrabber(cfg.width, cfg.height)
    return OpenCVGrabber(spec, cfg.width, cfg.height, cfg.fps)
