"""Previews at display size: the texture a VideoView uploads is the size it is shown at, not the size the camera
captured or the remote track decoded; nothing is converted for a view that is off screen."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)  # the size every UI test module asks for: the suite's one window is made once

import asyncio  # noqa: E402
import fractions  # noqa: E402

import numpy as np  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402
from av import VideoFrame  # noqa: E402
from helpers import wait_until  # noqa: E402
from kivy.core.window import Window  # noqa: E402

from kiosk.config import CameraConfig  # noqa: E402
from kiosk.ui.video import VideoView  # noqa: E402
from kiosk.video.sink import HIDDEN, FrameSink, consume_track  # noqa: E402
from kiosk.video.sources import open_video_source  # noqa: E402
from kiosk.video.stamp import draw_frame_stamp, read_frame_stamp  # noqa: E402


class _Decoded(MediaStreamTrack):
    """Stands for a remote track: hands out the decoded frames the test puts in (None ends it)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[VideoFrame | None] = asyncio.Queue()

    async def recv(self) -> VideoFrame:
        frame = await self.queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


def decoded_frame(width: int, height: int, n: int) -> VideoFrame:
    rgb = np.full((height, width, 3), 90, dtype=np.uint8)
    draw_frame_stamp(rgb, n, 1_700_000_000_000 + n)
    frame = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    frame.pts, frame.time_base = n, fractions.Fraction(1, 90000)
    return frame


def shown_view(width: int, height: int) -> VideoView:
    view = VideoView(size_hint=(None, None), size=(width, height), fps=1)
    Window.add_widget(view)
    return view


def texture_size(view: VideoView) -> tuple[int, int]:
    assert view._texture is not None, "nothing was uploaded"
    w, h = view._texture.size
    return int(w), int(h)


async def poll_until_shown(view: VideoView, frames: int = 1) -> None:
    async def shown() -> None:
        while view.frames_shown < frames:
            view.poll()
            await asyncio.sleep(0.01)

    await asyncio.wait_for(shown(), 20)


async def test_a_remote_1080p_track_reaches_a_small_view_as_a_small_texture() -> None:
    """A decoded 1920×1080 document shown in a 384×300 tile is converted to 384×216 (aspect kept) in the sink's
    conversion, and that is the texture uploaded."""
    view = shown_view(384, 300)
    sink = FrameSink("counter/document")
    view.sink = sink
    view.poll()  # the view tells the sink its size
    assert sink.display.box() == (384, 300)
    track = _Decoded()
    task = asyncio.ensure_future(consume_track(track, sink))
    try:
        track.queue.put_nowait(decoded_frame(1920, 1080, 1))
        await poll_until_shown(view)
        assert texture_size(view) == (384, 216)
        assert list(view.frame_size) == [384, 216]
        latest = sink.latest()
        assert latest is not None and latest[1].shape == (216, 384, 3)
    finally:
        track.queue.put_nowait(None)
        await asyncio.wait_for(task, 10)
        view.stop()
        Window.remove_widget(view)


async def test_without_a_view_a_sink_keeps_the_decoded_size() -> None:
    """Headless terminals and benchmarks (no view said a size) get the full decoded frame, stamp readable."""
    sink = FrameSink("counter/camera")
    track = _Decoded()
    task = asyncio.ensure_future(consume_track(track, sink))
    track.queue.put_nowait(decoded_frame(1280, 720, 7))
    await wait_until(lambda: sink.seq == 1, timeout=10)
    latest = sink.latest()
    assert latest is not None and latest[1].shape == (720, 1280, 3)
    assert read_frame_stamp(latest[1]) is not None and read_frame_stamp(latest[1])[0] == 7  # type: ignore[index]
    track.queue.put_nowait(None)
    await asyncio.wait_for(task, 10)


async def test_a_view_off_screen_gets_nothing_converted() -> None:
    """When the only view of a stream leaves the window, decoded frames are no longer converted (counted as
    hidden), and the view uploads nothing; back on screen, the next frame is converted at its size."""
    view = shown_view(320, 240)
    sink = FrameSink("counter/camera")
    view.sink = sink
    track = _Decoded()
    task = asyncio.ensure_future(consume_track(track, sink))
    try:
        track.queue.put_nowait(decoded_frame(1280, 720, 1))
        await poll_until_shown(view)
        assert texture_size(view) == (320, 180)
        Window.remove_widget(view)
        view.poll()
        assert sink.display.box() == HIDDEN
        track.queue.put_nowait(decoded_frame(1280, 720, 2))
        await wait_until(lambda: sink.frames_hidden == 1, timeout=10)
        assert sink.seq == 1 and view.frames_shown == 1
        Window.add_widget(view)
        view.poll()
        track.queue.put_nowait(decoded_frame(1280, 720, 3))
        await poll_until_shown(view, 2)
        assert texture_size(view) == (320, 180)
    finally:
        track.queue.put_nowait(None)
        await asyncio.wait_for(task, 10)
        view.stop()
        Window.remove_widget(view)


async def test_frames_the_screen_could_not_keep_up_with_are_dropped_not_queued() -> None:
    """Decoded frames that arrive while one is being converted are not queued: only the newest is converted
    next, the others are counted as dropped."""
    sink = FrameSink("counter/camera")
    track = _Decoded()
    for n in range(1, 6):
        track.queue.put_nowait(decoded_frame(320, 180, n))  # all there before the first conversion ends
    task = asyncio.ensure_future(consume_track(track, sink))
    track.queue.put_nowait(None)
    await asyncio.wait_for(task, 10)
    latest = sink.latest()
    assert latest is not None
    assert read_frame_stamp(latest[1]) is not None and read_frame_stamp(latest[1])[0] == 5  # type: ignore[index]
    assert sink.frames_dropped + sink.seq == 5 and sink.frames_dropped >= 3


async def test_the_self_view_is_shrunk_in_the_capture_thread_to_the_view_size() -> None:
    """The counter's own 1280×720 camera in a 320×240 self-view: the capture thread shrinks frames to 320×180 and
    that is what is uploaded; stills and the encoders still get the full size."""
    view = shown_view(320, 240)
    async with open_video_source(CameraConfig("synthetic:camera", 1280, 720, 30), name="camera") as source:
        preview = source.preview()
        view.sink = preview
        try:
            await poll_until_shown(view)
            await wait_until(lambda: preview.frames_shrunk > 0, timeout=10)
            shown = view.frames_shown
            await poll_until_shown(view, shown + 2)
            assert texture_size(view) == (320, 180)
            full = source.latest_frame()
            assert full is not None and full.shape == (720, 1280, 3)
        finally:
            view.stop()
            Window.remove_widget(view)
