"""Video sources: spec strings, frame stamps through VP8, synthetic/file/V4L2 cameras, faults, fan-out."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from helpers import wait_until

from kiosk.config import CameraConfig
from kiosk.devices.cameras import Backoff, CameraError, CameraSpecError, FrameGrabber, parse_camera_spec
from kiosk.video.sources import (
    DOCUMENT_TEXT,
    SyntheticCameraGrabber,
    VideoSource,
    create_grabber,
    open_video_source,
    read_frame_stamp,
)
from kiosk.video.stamp import draw_frame_stamp
from kiosk.video.synthetic import DOCUMENT_LINES, SyntheticScene

RGB = npt.NDArray[np.uint8]
FAST_RETRY = Backoff(initial=0.05, maximum=0.2)


def rgb_of(frame: VideoFrame) -> RGB:
    array: RGB = frame.to_ndarray(format="rgb24")  # type: ignore[assignment]
    return array


async def recv_until(track: MediaStreamTrack, predicate: Callable[[RGB], bool], timeout: float = 5.0) -> RGB:
    """Receive frames until one satisfies ``predicate``; fail after ``timeout`` seconds."""

    async def loop() -> RGB:
        while True:
            frame = await track.recv()
            assert isinstance(frame, VideoFrame)
            rgb = rgb_of(frame)
            if predicate(rgb):
                return rgb

    return await asyncio.wait_for(loop(), timeout)


def looks_like(rgb: RGB, expected: RGB) -> bool:
    """Same picture up to the yuv420p conversion the tracks apply (a few grey levels on average)."""
    return rgb.shape == expected.shape and float(np.abs(rgb.astype(np.int16) - expected).mean()) < 4.0


def write_stamped_video(path: Path, count: int, size: tuple[int, int] = (192, 144)) -> None:
    """An MJPG AVI of ``count`` frames whose stamps carry counters 0..count-1 (written atomically)."""
    partial = path.with_name(path.name + ".partial.avi")
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, size)
    assert writer.isOpened()
    for i in range(count):
        rgb = np.full((size[1], size[0], 3), 90, dtype=np.uint8)
        draw_frame_stamp(rgb, i, 1_000_000 + i)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(partial, path)


# -- spec strings and stamps (pure) ------------------------------------------------------------------


def test_camera_specs_parse_to_device_file_and_synthetic() -> None:
    """Every documented spec form is recognised, so field installs and tests use the same config key."""
    assert parse_camera_spec("/dev/video0").kind == "v4l2"
    assert (
        parse_camera_spec("/dev/v4l/by-id/usb-Elmo_MO-2-video-index0").target
        == "/dev/v4l/by-id/usb-Elmo_MO-2-video-index0"
    )
    assert parse_camera_spec("2").target == 2
    assert parse_camera_spec("file:/srv/loop.avi").target == "/srv/loop.avi"
    assert parse_camera_spec("synthetic:document").target == "document"


@pytest.mark.parametrize("spec", ["webcam", "synthetic:tv", "file:", "http://cam"])
def test_bad_camera_spec_is_a_config_error_naming_the_spec(spec: str) -> None:
    """A malformed source is rejected at start-up with the spec and the accepted forms in the message."""
    with pytest.raises(CameraSpecError, match="camera source") as exc:
        open_video_source(CameraConfig(spec, 320, 240, 5), name="camera")
    assert repr(spec) in str(exc.value)


def test_stamp_round_trip_and_rejection() -> None:
    """The stamp decodes exactly, wraps the counter at 32 bits, and blank or tiny frames decode to None."""
    frame = np.full((120, 160, 3), 128, dtype=np.uint8)
    draw_frame_stamp(frame, 123456, 1_760_000_000_123)
    assert read_frame_stamp(frame) == (123456, 1_760_000_000_123)
    draw_frame_stamp(frame, 2**32 + 5, 7)
    assert read_frame_stamp(frame) == (5, 7)
    assert read_frame_stamp(np.zeros((120, 160, 3), dtype=np.uint8)) is None
    assert read_frame_stamp(np.zeros((20, 60, 3), dtype=np.uint8)) is None
    frame[5, :, :] = 255 - frame[5, :, :]  # corrupt a block row: the checksum must notice
    frame[: 4 * 6, 6:12] = 255 - frame[: 4 * 6, 6:12]
    assert read_frame_stamp(frame) is None


@pytest.mark.parametrize("scale", [0.75, 0.5])
def test_stamp_reads_from_a_camera_sent_smaller(scale: float) -> None:
    """A 1280×720 frame that the camera adaptation sent at ¾ or ½ size still decodes to its counter and time."""
    from kiosk.video.sources import scaled

    frame = SyntheticScene(1280, 720).render(now=1_760_000_000.5)
    small = scaled(frame, scale)
    assert small.shape[1] == round(1280 * scale)
    assert read_frame_stamp(small) == read_frame_stamp(frame) is not None


@pytest.mark.parametrize("size", [(160, 120), (320, 240), (640, 360)])
def test_synthetic_stamps_survive_vp8_round_trip(size: tuple[int, int]) -> None:
    """Frames of the moving scene still decode to their counter and time after aiortc's VP8 at its lowest bitrate."""
    scene = SyntheticScene(*size)
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    encoder.target_bitrate = 0  # clamped to aiortc's minimum (250 kbps): the worst case in a call
    sent: list[tuple[int, int]] = []
    decoded: list[tuple[int, int] | None] = []
    for i in range(40):
        rgb = scene.render(now=1_760_000_000.0 + i / 30)
        sent.append((i, int((1_760_000_000.0 + i / 30) * 1000)))
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = i * 3000, Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame, force_keyframe=(i == 0))
        data = b"".join(vp8_depayload(p) for p in payloads)
        for out in decoder.decode(JitterFrame(data, timestamp)):
            assert isinstance(out, VideoFrame)
            assert (out.width, out.height) == size
            decoded.append(read_frame_stamp(rgb_of(out)))
    assert decoded == sent


# -- synthetic sources -----------------------------------------------------------------------------


async def test_synthetic_camera_track_delivers_stamped_frames_in_order() -> None:
    """The synthetic camera's track delivers frames at the configured size with increasing counters and pts."""
    async with open_video_source(CameraConfig("synthetic:camera", 192, 144, 30), name="camera") as source:
        track = source.track()
        counters, pts = [], []
        for _ in range(5):
            frame = await asyncio.wait_for(track.recv(), 5)
            assert isinstance(frame, VideoFrame)
            assert (frame.width, frame.height) == (192, 144)
            stamp = read_frame_stamp(rgb_of(frame))
            assert stamp is not None and abs(stamp[1] - time.time() * 1000) < 5000
            assert frame.pts is not None
            counters.append(stamp[0])
            pts.append(frame.pts)
        assert counters == sorted(counters) and len(set(counters)) == 5
        assert pts == sorted(pts) and len(set(pts)) == 5
        assert source.status == "ok"


async def test_document_source_delivers_full_hd_form() -> None:
    """The document camera delivers 1920×1080 frames and the text printed on the form is available as data."""
    cfg = CameraConfig("synthetic:document", 1920, 1080, 5)
    async with open_video_source(cfg, name="document") as source:
        frame = await asyncio.wait_for(source.track().recv(), 10)
        assert isinstance(frame, VideoFrame) and (frame.width, frame.height) == (1920, 1080)
        still = source.latest_frame()
        assert still is not None and still.shape == (1080, 1920, 3)
        assert read_frame_stamp(still) is not None  # the desk corner carries a stamp for latency checks
        page = still[100:980, 700:1220]
        assert page.mean() > 200 and page.min() < 60  # a white page with dark print on it
    joined = "\n".join(DOCUMENT_TEXT)
    for needle in ("住所", "氏名", "生年月日", "HANAKO TOBETSU", "1983-07-14"):
        assert needle in joined
    assert min(line.size_mm for line in DOCUMENT_LINES) < 3 < max(line.size_mm for line in DOCUMENT_LINES)


async def test_rotation_turns_frames_and_changes_at_run_time() -> None:
    """A configured rotation turns frames, set_rotation changes it live, and a bad angle is refused."""
    async with open_video_source(
        CameraConfig("synthetic:camera", 192, 144, 30, rotation=90), name="doc"
    ) as source:
        track = source.track()
        upright = await recv_until(track, lambda rgb: rgb.shape == (192, 144, 3))
        assert read_frame_stamp(np.rot90(upright, k=1)) is not None  # undo 90° clockwise
        source.set_rotation(180)
        turned = await recv_until(track, lambda rgb: rgb.shape == (144, 192, 3))
        assert read_frame_stamp(turned) is None
        assert read_frame_stamp(np.rot90(turned, k=2)) is not None
        latest = source.latest_frame()
        assert latest is not None and read_frame_stamp(np.rot90(latest, k=2)) is not None
        with pytest.raises(ValueError, match="0, 90, 180 or 270"):
            source.set_rotation(45)


# -- file sources and faults -----------------------------------------------------------------------


async def test_file_source_loops(tmp_path: Path) -> None:
    """A file: camera plays its frames and starts again from the first at the end."""
    path = tmp_path / "loop.avi"
    write_stamped_video(path, 6)
    async with open_video_source(CameraConfig(f"file:{path}", 192, 144, 60), name="camera") as source:
        track = source.track()
        seen: list[int] = []

        def wrapped(rgb: RGB) -> bool:
            stamp = read_frame_stamp(rgb)
            assert stamp is not None, "a frame of the file lost its stamp"
            seen.append(stamp[0])
            return len(seen) >= 2 and seen[-2] == 5 and seen[-1] == 0

        await recv_until(track, wrapped)
        assert set(seen) <= set(range(6))


async def test_file_source_is_scaled_to_the_configured_size(tmp_path: Path) -> None:
    """A file whose frames differ from the configured size is delivered at the configured size."""
    path = tmp_path / "small.avi"
    write_stamped_video(path, 3, size=(192, 144))
    async with open_video_source(CameraConfig(f"file:{path}", 384, 288, 30), name="camera") as source:
        rgb = await recv_until(source.track(), lambda rgb: True)
        assert rgb.shape == (288, 384, 3)
        assert read_frame_stamp(rgb) is not None


async def test_vanishing_file_camera_shows_placeholder_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera that disappears mid-stream yields placeholder frames (one log line), then real frames on return."""
    caplog.set_level(logging.INFO, logger="kiosk")
    path = tmp_path / "cam.avi"
    write_stamped_video(path, 4)
    cfg = CameraConfig(f"file:{path}", 192, 144, 30)
    async with VideoSource(_grabber_for(cfg), cfg, name="camera", backoff=FAST_RETRY) as source:
        track = source.track()
        await recv_until(track, lambda rgb: read_frame_stamp(rgb) is not None)
        assert source.status == "ok"

        path.unlink()
        placeholder = source.placeholder()
        await recv_until(track, lambda rgb: looks_like(rgb, placeholder))
        assert source.status.startswith("unavailable:") and "no such file" in source.status
        assert source.latest_frame() is None
        for _ in range(5):  # the track keeps delivering at the frame rate while retries fail
            rgb = await recv_until(track, lambda rgb: True, timeout=1.0)
            assert looks_like(rgb, placeholder)
        unavailable = [r for r in caplog.records if "event=camera_unavailable" in r.getMessage()]
        assert len(unavailable) == 1 and str(path) in unavailable[0].getMessage()

        write_stamped_video(path, 4)
        await recv_until(track, lambda rgb: read_frame_stamp(rgb) is not None)
        await wait_until(lambda: source.status == "ok")
        assert any("event=camera_recovered" in r.getMessage() for r in caplog.records)


def _grabber_for(cfg: CameraConfig) -> FrameGrabber:
    return create_grabber(parse_camera_spec(cfg.source), cfg)


async def test_missing_device_delivers_placeholder_at_frame_rate() -> None:
    """A V4L2 path that does not exist never stalls the track: placeholders at the configured size, clear status."""
    cfg = CameraConfig("/dev/video-does-not-exist", 320, 180, 20)
    async with open_video_source(cfg, name="camera", backoff=FAST_RETRY) as source:
        track = source.track()
        started = time.monotonic()
        for _ in range(6):
            rgb = await recv_until(track, lambda rgb: True, timeout=1.0)
            assert rgb.shape == (180, 320, 3)
            assert looks_like(rgb, source.placeholder())
        assert time.monotonic() - started < 2.0
        assert source.status == "unavailable: V4L2 /dev/video-does-not-exist: no such device"
        assert source.latest_frame() is None


class FakeHangingGrabber(SyntheticCameraGrabber):
    """A camera whose driver hangs in read() until released (no error reported)."""

    def __init__(self) -> None:
        super().__init__(192, 144)
        self.hang = threading.Event()
        self.release = threading.Event()

    def read(self) -> RGB:
        if self.hang.is_set():
            self.release.wait(10)
            self.hang.clear()
        return super().read()


async def test_stalled_camera_shows_placeholder_until_frames_resume() -> None:
    """A camera that stops delivering without an error is covered by the placeholder after the stall timeout."""
    grabber = FakeHangingGrabber()
    cfg = CameraConfig("synthetic:camera", 192, 144, 30)
    async with VideoSource(grabber, cfg, name="camera", stall_timeout=0.3) as source:
        track = source.track()
        await recv_until(track, lambda rgb: read_frame_stamp(rgb) is not None)
        grabber.hang.set()
        await recv_until(track, lambda rgb: looks_like(rgb, source.placeholder()))
        assert source.status.startswith("unavailable:") and "no frame for" in source.status
        grabber.release.set()
        await recv_until(track, lambda rgb: read_frame_stamp(rgb) is not None)


# -- threading and fan-out -------------------------------------------------------------------------


class FakeSlowGrabber(SyntheticCameraGrabber):
    """A camera whose read() blocks for 150 ms, like a slow driver; records which threads call it."""

    def __init__(self) -> None:
        super().__init__(192, 144)
        self.threads: set[int] = set()
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        super().open()

    def read(self) -> RGB:
        self.threads.add(threading.get_ident())
        threading.Event().wait(0.15)  # the simulated driver latency
        return super().read()


async def test_capture_runs_off_the_event_loop() -> None:
    """A slow camera blocks only its capture thread: the event loop keeps ticking every few ms."""
    grabber = FakeSlowGrabber()
    cfg = CameraConfig("synthetic:camera", 192, 144, 30)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    async with VideoSource(grabber, cfg, name="camera") as source:
        track = source.track()
        for _ in range(4):
            await recv_until(track, lambda rgb: read_frame_stamp(rgb) is not None)
    stop.set()
    await beat
    assert threading.get_ident() not in grabber.threads
    assert grabber.threads == {source.capture_thread.ident}
    assert max(gaps) < 0.1, f"event loop blocked for {max(gaps):.3f} s"


async def test_relay_fans_one_capture_out_to_two_consumers() -> None:
    """Two subscribers (a peer and the preview) receive the same captured frames; the device is opened once."""
    grabber = FakeSlowGrabber()
    cfg = CameraConfig("synthetic:camera", 192, 144, 30)
    async with VideoSource(grabber, cfg, name="camera") as source:
        first, second = source.track(), source.track()

        async def collect(track: MediaStreamTrack) -> list[int]:
            counters = []
            for _ in range(4):
                rgb = await recv_until(track, lambda rgb: True)
                stamp = read_frame_stamp(rgb)
                assert stamp is not None
                counters.append(stamp[0])
            return counters

        a, b = await asyncio.gather(collect(first), collect(second))
        assert len(set(a) & set(b)) >= 3
        assert grabber.opens == 1


async def test_close_ends_every_subscriber() -> None:
    """Closing a source ends its tracks with MediaStreamError, so consumers finish instead of hanging."""
    source = open_video_source(CameraConfig("synthetic:camera", 192, 144, 30), name="camera")
    track = source.track()
    await asyncio.wait_for(track.recv(), 5)
    await source.aclose()

    async def drain() -> None:
        while True:
            await track.recv()

    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(drain(), 5)
    assert not source.capture_thread.is_alive()
    with pytest.raises(CameraError):
        source.track()


async def test_tracks_carry_yuv420p_frames_that_encoders_use_as_they_are() -> None:
    """Frames leave in yuv420p (converted once in the capture thread) so encoders of several peers never convert
    a shared frame."""
    async with open_video_source(CameraConfig("synthetic:camera", 192, 144, 30), name="camera") as source:
        frame = await asyncio.wait_for(source.track().recv(), 5)
        assert isinstance(frame, VideoFrame) and frame.format.name == "yuv420p"
    async with open_video_source(
        CameraConfig("/dev/video-none", 192, 144, 30), name="camera", backoff=FAST_RETRY
    ) as missing:
        frame = await asyncio.wait_for(missing.track().recv(), 5)
        assert isinstance(frame, VideoFrame) and frame.format.name == "yuv420p"


async def test_shared_frames_survive_concurrent_encoders() -> None:
    """Three peers encoding the same relayed 1080p frames in parallel threads (as aiortc does) do not crash."""
    cfg = CameraConfig("synthetic:document", 1920, 1080, 10)
    async with open_video_source(cfg, name="document") as source:
        tracks = [source.track() for _ in range(3)]
        encoders = [Vp8Encoder() for _ in tracks]

        async def send(track: MediaStreamTrack, encoder: Vp8Encoder) -> int:
            sizes = 0
            for _ in range(4):
                frame = await asyncio.wait_for(track.recv(), 5)
                assert isinstance(frame, VideoFrame)
                payloads, _ = await asyncio.to_thread(encoder.encode, frame)
                sizes += sum(len(p) for p in payloads)
            return sizes

        assert all(await asyncio.gather(*(send(t, e) for t, e in zip(tracks, encoders, strict=True))))


@pytest.mark.parametrize("size", [(1280, 720), (322, 180)])
def test_yuv_conversion_matches_libswscale(size: tuple[int, int]) -> None:
    """The fast colour conversion gives the encoder the same picture libswscale would (odd sizes included)."""
    from av.video.reformatter import VideoReformatter

    from kiosk.video.sources import rgb_to_yuv420p
    from kiosk.video.synthetic import SyntheticScene

    w, h = size
    rgb = np.ascontiguousarray(SyntheticScene(w, h).render(7.0)[:, :, :3])
    ours = rgb_to_yuv420p(rgb)
    theirs = VideoReformatter().reformat(VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuv420p")
    assert (ours.width, ours.height, ours.format.name) == (w, h, "yuv420p")
    luma_ours, luma_theirs = ours.to_ndarray()[:h].astype(int), theirs.to_ndarray()[:h].astype(int)
    assert np.abs(luma_ours - luma_theirs).max() <= 1, "same BT.601 video-range luma"
    back = ours.to_ndarray(format="rgb24").astype(int)
    assert np.abs(back - rgb).mean() < 2.0, "the picture survives the round trip"
    odd = rgb_to_yuv420p(np.ascontiguousarray(rgb[: h - 1, : w - 1]))  # odd sides: libswscale's own path
    assert (odd.width, odd.height, odd.format.name) == (w - 1, h - 1, "yuv420p")


def test_prerendered_scene_changes_only_square_clock_and_stamp() -> None:
    """The synthetic camera copies pre-drawn parts: two frames differ only where the stamp, the square and the
    clock are, each frame carries its own correct stamp, and the pre-drawn background is never written."""
    from kiosk.video.stamp import STAMP_ROWS, stamp_block_size

    scene = SyntheticScene(1280, 720)
    background = scene._background.copy()
    a, b = scene.render(now=1_760_000_000.0), scene.render(now=1_760_000_000.5)
    assert read_frame_stamp(a) == (0, 1_760_000_000_000)
    assert read_frame_stamp(b) == (1, 1_760_000_000_500)
    block = stamp_block_size(1280, 720)
    assert block is not None
    changed = np.argwhere((a != b).any(axis=2))
    stamp_rows = STAMP_ROWS * block
    box = scene._box
    square_rows = ((720 - box) // 2, (720 - box) // 2 + box)
    clock_top = 720 - int(scene._font_size * 1.6)
    for row in np.unique(changed[:, 0]):
        assert row < stamp_rows or square_rows[0] <= row < square_rows[1] or row >= clock_top, row
    assert np.array_equal(scene._background, background)


async def test_mjpg_camera_decodes_each_frame_and_keeps_a_readable_stamp() -> None:
    """synthetic:camera-mjpg delivers JPEG-decoded frames (not bit-identical to the scene) with fresh stamps."""
    assert parse_camera_spec("synthetic:camera-mjpg").target == "camera-mjpg"
    cfg = CameraConfig("synthetic:camera-mjpg", 640, 360, 30)
    async with open_video_source(cfg, name="camera") as source:
        track = source.track()
        stamps = []
        for _ in range(3):
            frame = await asyncio.wait_for(track.recv(), 10)
            assert isinstance(frame, VideoFrame)
            rgb = rgb_of(frame)
            assert rgb.shape == (360, 640, 3)
            stamp = read_frame_stamp(rgb)
            assert stamp is not None
            stamps.append(stamp)
        assert [s[0] for s in stamps] == sorted({s[0] for s in stamps})
        assert abs(stamps[-1][1] - time.time() * 1000) < 5000
        assert source.device == "synthetic:camera-mjpg 640x360"


async def test_idle_source_converts_nothing_until_a_track_reads() -> None:
    """A kiosk between calls captures (status, stills) but converts no frame for encoders; the first read gets
    the newest frame at once, and frames are converted in the capture thread while tracks read."""
    async with open_video_source(CameraConfig("synthetic:camera", 192, 144, 30), name="camera") as source:
        await wait_until(lambda: source.frames_captured >= 5, timeout=10)
        assert source.frames_converted == 0
        track = source.track()
        frame = await asyncio.wait_for(track.recv(), 5)
        assert isinstance(frame, VideoFrame) and read_frame_stamp(rgb_of(frame)) is not None
        for _ in range(5):
            await asyncio.wait_for(track.recv(), 5)
        assert source.frames_converted >= 6


@pytest.mark.parametrize("size", [(1280, 720), (960, 540), (642, 362), (320, 180), (160, 90), (192, 144)])
def test_yuv_frames_hold_the_converted_picture_at_every_width(size: tuple[int, int]) -> None:
    """Frames wrapped without a copy (widths that are multiples of 32) and copied ones (others) carry the same
    planes as OpenCV's conversion, at the right size."""
    from kiosk.video.sources import rgb_to_yuv420p

    w, h = size
    rgb = np.ascontiguousarray(SyntheticScene(w, h).render(3.0))
    frame = rgb_to_yuv420p(rgb)
    assert (frame.width, frame.height) == (w, h)
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    assert np.array_equal(frame.to_ndarray(), expected)
