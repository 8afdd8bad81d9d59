"""The camera family: each configured camera opens the way the kiosk opens it, delivers frames of the configured
size at (nearly) the configured rate, and leaves a snapshot PNG for the technician to look at.

:func:`measure_camera` does the I/O and turns the camera's exception (:mod:`kiosk.devices.cameras` raises one type
per fault) into a :class:`CameraCause`; :func:`camera_result` judges the measurement and picks advice by cause.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.config import CameraConfig
from kiosk.doctor.report import CheckResult

__all__ = [
    "FPS_TOLERANCE",
    "CameraCause",
    "CameraMeasurement",
    "camera_cause",
    "camera_result",
    "check_camera",
    "measure_camera",
]

FPS_TOLERANCE = 0.85  # a camera delivering at least 85 % of the configured rate passes


class CameraCause(enum.Enum):
    """Why a camera delivered nothing."""

    SPEC = "spec"  # [camera] source is not a valid spec
    NOT_FOUND = "not_found"  # no such device node or file
    CANNOT_OPEN = "cannot_open"  # busy, no permission, not a capture device or not a video file
    NO_FRAME = "no_frame"  # opened, but no frame came within the open timeout
    STOPPED = "stopped"  # delivered, then a read failed or frames stopped coming


def camera_cause(err: BaseException | None) -> CameraCause:
    """The cause of a camera fault, from the type of the exception the device raised (None: a stall)."""
    from kiosk.devices.cameras import CameraNotFoundError, CameraOpenError, CameraSpecError

    if isinstance(err, CameraSpecError):
        return CameraCause.SPEC
    if isinstance(err, CameraNotFoundError):
        return CameraCause.NOT_FOUND
    if isinstance(err, CameraOpenError):
        return CameraCause.CANNOT_OPEN
    return CameraCause.STOPPED


@dataclass(frozen=True)
class CameraMeasurement:
    """What a camera did during the measuring window.

    Attributes:
        source: the spec string from the config.
        error: why it could not deliver (empty when it did).
        frames: frames received in the window.
        fps: measured frame rate (0 when fewer than two frames).
        width, height: size of the frames delivered.
        snapshot: path of the PNG saved, or empty.
        cause: the kind of fault behind ``error`` (None when it delivered).
        is_file: the source is a video file (``file:``), not a device.
    """

    source: str
    error: str = ""
    frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    snapshot: str = ""
    cause: CameraCause | None = None
    is_file: bool = False


async def measure_camera(
    cfg: CameraConfig,
    name: str,
    *,
    seconds: float = 2.0,
    open_timeout: float = 5.0,
    snapshot_dir: str | Path | None = None,
) -> CameraMeasurement:
    """Open ``cfg.source`` the way the kiosk does, count frames for ``seconds`` and save a snapshot.

    The window is at least four frame periods, so a 5 fps document camera is measured fairly.
    """
    from kiosk.devices.cameras import CameraError, parse_camera_spec
    from kiosk.video.sources import open_video_source

    try:
        is_file = parse_camera_spec(cfg.source).kind == "file"
        source = open_video_source(cfg, name=name)
    except CameraError as err:  # a malformed spec
        return CameraMeasurement(cfg.source, error=str(err), cause=camera_cause(err))

    def fault(frames: int = 0) -> CameraMeasurement:
        return CameraMeasurement(
            cfg.source,
            error=source.status.removeprefix("unavailable: "),
            frames=frames,
            cause=camera_cause(source.fault_error),
            is_file=is_file,
        )

    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + open_timeout
        while source.status != "ok":
            if source.status.startswith("unavailable"):
                return fault()
            if loop.time() > deadline:
                return CameraMeasurement(
                    cfg.source,
                    error=f"no frame within {open_timeout:g} s of opening it",
                    cause=CameraCause.NO_FRAME,
                    is_file=is_file,
                )
            await asyncio.sleep(0.01)
        track = source.track()
        window = max(seconds, 4.0 / cfg.fps)
        stamps: list[float] = []
        width = height = 0
        end = loop.time() + window
        try:
            while loop.time() < end:
                frame = await asyncio.wait_for(track.recv(), max(0.1, end - loop.time() + 1.0))
                if source.status != "ok":  # the placeholder, not the camera
                    return fault(len(stamps))
                stamps.append(loop.time())
                width, height = getattr(frame, "width", 0), getattr(frame, "height", 0)
        except TimeoutError:
            pass
        finally:
            track.stop()
        fps = (
            (len(stamps) - 1) / (stamps[-1] - stamps[0])
            if len(stamps) > 1 and stamps[-1] > stamps[0]
            else 0.0
        )
        snapshot = ""
        picture = source.latest_frame()
        if snapshot_dir is not None and picture is not None:
            snapshot = await asyncio.to_thread(_save_png, picture, Path(snapshot_dir) / f"{name}.png")
        return CameraMeasurement(
            cfg.source,
            frames=len(stamps),
            fps=fps,
            width=width,
            height=height,
            snapshot=snapshot,
            is_file=is_file,
        )
    finally:
        await source.aclose()


def _save_png(rgb: Any, path: Path) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return str(path)


def camera_advice(cause: CameraCause, key: str, m: CameraMeasurement) -> str:
    """One line a technician can act on, for each :class:`CameraCause`."""
    src = m.source
    if cause is CameraCause.SPEC:
        return f"fix [{key}] source: {m.error.split(': ', 1)[-1]}"
    if cause is CameraCause.NOT_FOUND and m.is_file:
        return f'the video file of [{key}] source = "{src}" does not exist: fix the path'
    if cause is CameraCause.NOT_FOUND:
        return (
            f"camera {src} is not there: plug it in (directly, not through a hub), then put its "
            f"/dev/v4l/by-id/… path from 'video devices' into [{key}] source"
        )
    if cause is CameraCause.CANNOT_OPEN and m.is_file:
        return f'[{key}] source = "{src}" is not a video file OpenCV can read: convert it (MJPG AVI or MP4V)'
    if cause is CameraCause.CANNOT_OPEN:
        return (
            f"{src} cannot be opened: stop whatever uses it (the kiosk service: `systemctl --user stop "
            "kiosk-counter`), and make sure this user is in group video (`sudo usermod -aG video $USER`, "
            "then log in again)"
        )
    if cause is CameraCause.NO_FRAME:
        return (
            f"{src} opened but sends nothing: replug it, try another USB port or cable, and look at "
            "`dmesg | tail` for USB errors"
        )
    return f"{src} stopped delivering frames: replug it, try another USB port or cable, and look at `dmesg | tail`"


def camera_result(label: str, key: str, cfg: CameraConfig, m: CameraMeasurement) -> CheckResult:
    """Judge a measurement against ``cfg``: the size must match exactly, the rate reach 85 % of ``fps``."""
    want_w, want_h = (cfg.height, cfg.width) if cfg.rotation in (90, 270) else (cfg.width, cfg.height)
    src = cfg.source
    if m.error:
        return CheckResult(
            label, False, f"{src}: {m.error}", camera_advice(m.cause or CameraCause.STOPPED, key, m)
        )
    detail = f"{src}: {m.width}x{m.height} at {m.fps:.1f} fps (configured {want_w}x{want_h} at {cfg.fps:g})"
    if m.snapshot:
        detail += f"\nsnapshot: {m.snapshot}"
    if (m.width, m.height) != (want_w, want_h):
        return CheckResult(
            label,
            False,
            detail,
            f"the camera does not deliver {want_w}x{want_h}: set [{key}] width and height to a size "
            f"it supports (`v4l2-ctl --list-formats-ext -d {src}`)",
        )
    if m.fps < FPS_TOLERANCE * cfg.fps:
        return CheckResult(
            label,
            False,
            detail,
            f"the camera is slower than [{key}] fps = {cfg.fps:g}: give it more light (auto-exposure "
            "lowers the rate in dim light), plug it into its own USB port, or lower fps",
        )
    return CheckResult(label, True, detail)


async def check_camera(
    cfg: CameraConfig, label: str, key: str, *, seconds: float = 2.0, snapshot_dir: str | Path | None = None
) -> CheckResult:
    """Measure one camera and judge it."""
    return camera_result(
        label, key, cfg, await measure_camera(cfg, key, seconds=seconds, snapshot_dir=snapshot_dir)
    )
