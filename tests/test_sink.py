"""FrameSink: newest frame wins, any thread can feed it, and consume_track drains a track into it."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from av import VideoFrame

from kiosk.config import CameraConfig
from kiosk.video.sink import FrameSink, consume_track
from kiosk.video.sources import open_video_source, read_frame_stamp


def test_sink_keeps_only_the_newest_frame() -> None:
    """Only the last frame put is kept, with a sequence number that counts every frame."""
    sink = FrameSink("remote camera")
    assert sink.latest() is None and sink.seq == 0
    frames = [np.full((4, 6, 3), i, dtype=np.uint8) for i in range(3)]
    for frame in frames:
        sink.put(frame)
    latest = sink.latest()
    assert latest is not None
    seq, rgb = latest
    assert seq == 3 and rgb is frames[2]
    sink.clear()
    assert sink.latest() is None
    assert sink.put(frames[0]) == 4


def test_sink_converts_video_frames_to_rgb_and_freezes_arrays() -> None:
    """An av.VideoFrame in YUV becomes an RGB array of the same size, and handed-out arrays are read-only."""
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    rgb[:, :, 0] = 200
    yuv = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    sink = FrameSink()
    sink.put(yuv)
    latest = sink.latest()
    assert latest is not None
    out = latest[1]
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert abs(int(out[:, :, 0].mean()) - 200) < 8 and out[:, :, 1].mean() < 16
    with pytest.raises(ValueError):
        out[0, 0, 0] = 1


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), dtype=np.uint8),
        np.zeros((4, 4, 3), dtype=np.float32),
        np.zeros((4, 4, 4), dtype=np.uint8),
    ],
)
def test_sink_rejects_non_rgb_arrays(bad: np.ndarray) -> None:
    """Arrays that are not height×width×3 uint8 are refused with the shape and dtype in the message."""
    with pytest.raises(ValueError, match="height×width×3 uint8"):
        FrameSink("preview").put(bad)


def test_sink_is_fed_safely_from_several_threads() -> None:
    """Frames put concurrently from worker threads are all counted and the kept one is whole."""
    sink = FrameSink()

    def feed(value: int) -> None:
        for _ in range(200):
            sink.put(np.full((8, 8, 3), value, dtype=np.uint8))

    threads = [threading.Thread(target=feed, args=(v,)) for v in (10, 20, 30, 40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latest = sink.latest()
    assert latest is not None and latest[0] == 800
    assert len(np.unique(latest[1])) == 1


async def test_consume_track_fills_the_sink_until_the_track_ends() -> None:
    """consume_track delivers stamped frames into the sink in order and returns when the source closes."""
    sink = FrameSink("camera")
    source = open_video_source(CameraConfig("synthetic:camera", 192, 144, 30), name="camera")
    task = asyncio.create_task(consume_track(source.track(), sink))
    counters: list[int] = []

    async def watch() -> None:
        last_seq = 0
        while len(counters) < 5:
            latest = sink.latest()
            if latest is not None and latest[0] != last_seq:
                last_seq = latest[0]
                stamp = read_frame_stamp(latest[1])
                assert stamp is not None
                counters.append(stamp[0])
            await asyncio.sleep(0.005)  # the UI's poll interval

    await asyncio.wait_for(watch(), 5)
    assert counters == sorted(counters)
    await source.aclose()
    await asyncio.wait_for(task, 5)
