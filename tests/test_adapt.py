"""Camera resolution follows what the encoders keep up with: the pure rule, the scaled source, the edge."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame
from helpers import wait_until

from kiosk.config import CameraConfig
from kiosk.video.adapt import CameraAdaptation, CameraAdapter
from kiosk.video.sources import open_video_source


async def next_frame(track: MediaStreamTrack) -> VideoFrame:
    """The next video frame a track delivers."""
    frame = await asyncio.wait_for(track.recv(), 10)
    assert isinstance(frame, VideoFrame), frame
    return frame


def _windows(
    adapter: CameraAdapter, shares: list[float], *, start: float = 0.0, every: float = 2.0, captured: int = 60
) -> list[float | None]:
    """Feed one window per share (the slowest encoder took share × captured frames); the scales returned."""
    return [
        adapter.observe(start + i * every, captured, [round(share * captured), captured])
        for i, share in enumerate(shares)
    ]


def test_encoders_falling_behind_step_the_camera_down_to_640_wide_and_no_further() -> None:
    """720p whose slowest encoder takes half the frames: 960×540, then 640×360, then it stays there."""
    adapter = CameraAdapter(1280)
    assert _windows(adapter, [0.5, 0.5, 0.5, 0.5]) == [0.75, 0.5, None, None]
    assert adapter.scale == 0.5


def test_small_pictures_are_never_scaled() -> None:
    """A camera configured at 640 wide or less is never made smaller; 960 wide goes down one step only."""
    assert _windows(CameraAdapter(640), [0.2, 0.2]) == [None, None]
    assert _windows(CameraAdapter(320), [0.2]) == [None]
    assert _windows(CameraAdapter(960), [0.2, 0.2]) == [0.75, None]


def test_calm_encoders_step_back_up_after_the_calm_time() -> None:
    """Ten seconds of keeping up raise the picture one step; a middling window restarts the count."""
    adapter = CameraAdapter(1280, calm=10.0)
    assert _windows(adapter, [0.5]) == [0.75]
    got = _windows(adapter, [1.0, 1.0, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], start=2.0)
    # 0.9 (between low and high) resets the calm; from t=8 it is calm again, 10 s later (t=18) it steps up.
    assert got == [None, None, None, None, None, None, None, None, 1.0]
    assert adapter.scale == 1.0


def test_relapse_after_stepping_up_doubles_the_calm_time() -> None:
    """A PC at its limit does not flip between two sizes every few seconds: each relapse doubles the wait."""
    adapter = CameraAdapter(1280, calm=4.0)
    assert _windows(adapter, [0.5, 1.0, 1.0, 1.0]) == [0.75, None, None, 1.0]  # up at t=6
    assert adapter.observe(8.0, 60, [30]) == 0.75 and adapter.calm == 8.0  # relapse 2 s later
    assert adapter.observe(10.0, 60, [60]) is None


def test_no_frames_means_no_decision() -> None:
    """A camera that captured nothing (unplugged) or no running encoder says nothing about the encoders."""
    adapter = CameraAdapter(1280)
    assert adapter.observe(0.0, 0, [0]) is None and adapter.observe(2.0, 60, []) is None and adapter.step == 0


async def test_scaled_source_sends_smaller_frames_but_keeps_full_size_stills() -> None:
    """set_scale changes what the tracks carry from the next frame; latest_frame (stills, preview) stays full."""
    async with open_video_source(CameraConfig("synthetic:camera", 1280, 720, 20), name="camera") as source:
        track = source.track()
        frame = await next_frame(track)
        assert (frame.width, frame.height) == (1280, 720)
        source.set_scale(0.5)
        for _ in range(20):
            frame = await next_frame(track)
            if frame.width == 640:
                break
        assert (frame.width, frame.height) == (640, 360)
        latest = source.latest_frame()
        assert latest is not None and latest.shape[:2] == (720, 1280)
        with pytest.raises(ValueError):
            source.set_scale(0)
        track.stop()


@pytest.mark.timeout(60)
async def test_a_call_starts_small_and_grows_while_the_encoders_keep_up() -> None:
    """A call opens with the smallest camera size (a small first key frame) and grows step by step to the full
    size while every encoder keeps up."""
    async with open_video_source(
        CameraConfig("synthetic:camera", 1280, 720, 20, adapt=True), name="camera"
    ) as source:
        adaptation = CameraAdaptation(
            source, 1280, window=1.0, adapter=CameraAdapter(1280, calm=1.0, high=0.9), start_small=True
        )
        assert source.scale == 0.5, "the first frames are already small"
        track = adaptation.track()
        first = await next_frame(track)
        assert (first.width, first.height) == (640, 360)
        widths: list[int] = [first.width]

        async def consume() -> None:
            while True:
                frame = await next_frame(track)
                if widths[-1] != frame.width:
                    widths.append(frame.width)

        task = asyncio.create_task(consume())
        try:
            await wait_until(lambda: widths[-1] == 1280, 20)
            assert widths == [640, 960, 1280], "one step at a time"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await adaptation.close()
            track.stop()


@pytest.mark.timeout(60)
async def test_a_slow_encoder_lowers_the_camera_and_a_recovered_one_raises_it() -> None:
    """Two peers take the camera: one keeps up, one (a slow encoder) takes a frame every 0.15 s. The camera
    steps down to 640×360; when that peer keeps up again it steps back to full size; closing restores it too."""
    async with open_video_source(
        CameraConfig("synthetic:camera", 1280, 720, 20, adapt=True), name="camera"
    ) as source:
        adaptation = CameraAdaptation(
            source, 1280, window=1.0, adapter=CameraAdapter(1280, calm=1.0, high=0.9)
        )
        fast, slow = adaptation.track(), adaptation.track()
        slow_down = asyncio.Event()
        slow_down.set()
        sizes: set[tuple[int, int]] = set()

        async def consume(track: object, slow: bool) -> None:
            while True:
                frame = await track.recv()  # type: ignore[attr-defined]
                sizes.add((frame.width, frame.height))
                if slow and slow_down.is_set():
                    await asyncio.sleep(0.15)  # this peer's encoder takes 150 ms a frame: it cannot keep up

        tasks = [asyncio.create_task(consume(fast, False)), asyncio.create_task(consume(slow, True))]
        try:
            await wait_until(lambda: source.scale == 0.5, 15)
            await wait_until(lambda: (640, 360) in sizes, 5)
            slow_down.clear()  # the PC has time again
            await wait_until(lambda: source.scale == 1.0, 15)
            slow_down.set()
            await wait_until(lambda: source.scale < 1.0, 15)
            await adaptation.close()
            assert source.scale == 1.0, "a closed adaptation gives the camera back at full size"
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            fast.stop()
            slow.stop()
