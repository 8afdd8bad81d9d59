"""Frames dropped before the encoder when it is behind: each consumer of a camera gets the newest frame, counted."""

from __future__ import annotations

import asyncio
import fractions
import threading
from typing import Any

import aiortc.rtcrtpsender
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av import VideoFrame
from av.frame import Frame
from helpers import wait_until

from kiosk.config import CameraConfig
from kiosk.devices.cameras import CameraError
from kiosk.video.encoders import CAMERA, TrackVp8Encoder
from kiosk.video.fanout import NewestFrameRelay
from kiosk.video.ice import restrict_ice_addresses
from kiosk.video.jitter import use_frame_end_jitter_buffer
from kiosk.video.sources import open_video_source


class _QueueTrack(MediaStreamTrack):
    """A camera the test drives: frame ``n`` has pts ``n``; None ends the track."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def recv(self) -> VideoFrame:
        n = await self.queue.get()
        if n is None:
            self.stop()
            raise MediaStreamError
        frame = VideoFrame.from_ndarray(np.full((120, 160, 3), n % 256, dtype=np.uint8), format="rgb24")
        frame.pts, frame.time_base = n, fractions.Fraction(1, 90000)
        return frame


async def test_a_busy_consumer_gets_the_newest_frame_and_the_missed_ones_are_counted() -> None:
    """A consumer that does not read while four frames arrive gets the fourth; three are counted as dropped; a
    consumer that keeps up gets every frame and drops none."""
    source = _QueueTrack()
    relay = NewestFrameRelay(source)
    fast, slow = relay.subscribe(), relay.subscribe()
    firsts = [asyncio.ensure_future(t.recv()) for t in (fast, slow)]
    await wait_until(lambda: relay.reading == 2)
    source.queue.put_nowait(1)
    assert [f.pts for f in await asyncio.wait_for(asyncio.gather(*firsts), 5)] == [1, 1]
    for n in (2, 3, 4, 5):  # the slow consumer is busy (encoding) meanwhile
        source.queue.put_nowait(n)
        assert (await asyncio.wait_for(fast.recv(), 5)).pts == n
    frame = await asyncio.wait_for(slow.recv(), 5)
    assert frame.pts == 5, "the newest frame, not the oldest waiting one"
    assert (slow.dropped, slow.taken) == (3, 2)
    assert (fast.dropped, fast.taken) == (0, 5)
    assert relay.dropped == 3 and relay.delivered == 5
    source.queue.put_nowait(None)
    for track in (fast, slow):
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(track.recv(), 5)
    assert relay.dropped == 3, "drops of stopped consumers stay counted"


async def test_a_consumer_that_asks_again_waits_for_a_new_frame() -> None:
    """A frame goes to each consumer once: asking again before a new frame came waits, it never repeats the last
    one (an encoder would encode the same picture twice)."""
    source = _QueueTrack()
    relay = NewestFrameRelay(source)
    track = relay.subscribe()
    source.queue.put_nowait(1)
    assert (await asyncio.wait_for(track.recv(), 5)).pts == 1
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert not pending.done()
    source.queue.put_nowait(2)
    assert (await asyncio.wait_for(pending, 5)).pts == 2
    track.stop()
    source.stop()


class _GatedEncoder(TrackVp8Encoder):
    """The project's VP8 encoder that, after its first frame, waits until the test lets it go on (an encoder that
    fell behind), and notes every frame's pts."""

    def __init__(self) -> None:
        super().__init__(CAMERA)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.encoded: list[int] = []

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        assert frame.pts is not None
        self.encoded.append(int(frame.pts))
        if len(self.encoded) == 1:
            self.entered.set()
            self.release.wait(30)
        return super().encode(frame, force_keyframe)


@pytest.mark.timeout(90)
async def test_an_encoder_that_fell_behind_encodes_the_newest_frame_over_a_real_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over real aiortc peers on 127.0.0.1: while the sender's encoder is stuck on frame 1, frames 2–5 arrive; the
    encoder's next frame is 5, frames 2–4 are counted as dropped, and the receiver decodes 1 then 5."""
    encoder = _GatedEncoder()

    def get_encoder(codec: RTCRtpCodecParameters) -> Any:
        return encoder

    monkeypatch.setattr(aiortc.rtcrtpsender, "get_encoder", get_encoder)
    restrict_ice_addresses(["127.0.0.1"])
    use_frame_end_jitter_buffer()  # a frame is decoded at its last packet, as in the product
    source = _QueueTrack()
    relay = NewestFrameRelay(source)
    sender, receiver = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    sent = relay.subscribe()
    sender.addTrack(sent)
    remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    receiver.on("track", lambda track: remote.set_result(track))
    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        track = await asyncio.wait_for(remote, 20)
        await wait_until(
            lambda: relay.reading == 1, timeout=30
        )  # the sender reads once the call is connected
        source.queue.put_nowait(1)
        assert await asyncio.to_thread(encoder.entered.wait, 30)
        for n in (2, 3, 4, 5):
            source.queue.put_nowait(n)
        await wait_until(lambda: relay.delivered == 5, timeout=30)
        encoder.release.set()
        await wait_until(lambda: len(encoder.encoded) >= 2, timeout=30)
        assert encoder.encoded[:2] == [1, 5]
        assert sent.dropped == 3
        first = await asyncio.wait_for(track.recv(), 30)
        second = await asyncio.wait_for(track.recv(), 30)
        assert isinstance(first, VideoFrame) and isinstance(second, VideoFrame)
        assert second.pts is not None and first.pts is not None
        assert second.pts - first.pts == 4, "the receiver got frame 5 right after frame 1 (RTP clock units)"
    finally:
        encoder.release.set()
        await sender.close()
        await receiver.close()
        restrict_ice_addresses([])


async def test_a_camera_source_counts_the_frames_its_busy_consumer_missed() -> None:
    """A real capture (synthetic camera): a track read once and then left alone while frames keep coming counts
    them as dropped, and its next frame is the newest one delivered."""
    async with open_video_source(CameraConfig("synthetic:camera", 160, 120, 30), name="camera") as source:
        track = source.track()
        await asyncio.wait_for(track.recv(), 5)
        relay = source._relay
        seen = relay.delivered
        await wait_until(lambda: relay.delivered >= seen + 3, timeout=10)
        await asyncio.wait_for(track.recv(), 5)
        assert source.frames_dropped >= 2
        assert source.frames_dropped == relay.dropped


async def test_nobody_reading_means_the_source_is_not_read() -> None:
    """Between calls (no consumer) the relay stops reading its source, so the camera goes idle and converts
    nothing; a consumer that joins later gets the newest frame then, not the ones it missed."""
    source = _QueueTrack()
    relay = NewestFrameRelay(source)
    first = relay.subscribe()
    source.queue.put_nowait(1)
    assert (await asyncio.wait_for(first.recv(), 5)).pts == 1
    first.stop()
    for n in (2, 3):
        source.queue.put_nowait(n)
    for _ in range(20):  # let the relay's task run as long as it wants
        await asyncio.sleep(0)
    assert relay.delivered <= 2 and source.queue.qsize() >= 1, "the source was read with nobody reading"
    later = relay.subscribe()
    got = [(await asyncio.wait_for(later.recv(), 5)).pts]
    while got[-1] != 3:
        got.append((await asyncio.wait_for(later.recv(), 5)).pts)
    assert got[-1] == 3
    later.stop()
    source.stop()


class _GatedGrabber:
    """A camera that delivers a frame only when the test allows one (``allow``)."""

    paced = False  # the capture thread's pacing never drops an allowed frame
    description = "gated test camera"

    def __init__(self) -> None:
        self.allowed = threading.Semaphore(0)
        self.closed = threading.Event()

    def allow(self) -> None:
        self.allowed.release()

    def open(self) -> None:
        pass

    def read(self) -> Any:
        while not self.allowed.acquire(timeout=0.1):
            if self.closed.is_set():
                raise CameraError("closed")
        return np.full((144, 192, 3), 128, dtype=np.uint8)

    def close(self) -> None:
        self.closed.set()


async def test_a_new_call_gets_the_document_picture_at_once_not_at_the_next_capture() -> None:
    """A consumer that joins (the next call's encoder) gets the picture already captured at once: it does not wait
    for the camera's next frame (200 ms at the document camera's 5 fps), whether the last call ended just now or
    long ago."""
    from kiosk.video.sources import VideoSource

    grabber = _GatedGrabber()
    source = VideoSource(grabber, CameraConfig("gated", 192, 144, 5), name="document", stall_timeout=60)
    try:
        grabber.allow()
        first = source.track()
        await asyncio.wait_for(first.recv(), 10)
        first.stop()
        # the next call right after: no new frame is allowed, yet its first recv returns
        second = source.track()
        frame = await asyncio.wait_for(second.recv(), 10)
        assert isinstance(frame, VideoFrame) and source.frames_captured == 1
        second.stop()
        grabber.allow()
        await wait_until(lambda: source.frames_captured == 2, timeout=10)
        # and long after (the source went idle: WANTED_GRACE): still at once, the newest captured frame
        source._wanted_until = 0.0
        third = source.track()
        frame = await asyncio.wait_for(third.recv(), 10)
        assert isinstance(frame, VideoFrame) and source.frames_captured == 2
        third.stop()
    finally:
        grabber.closed.set()
        await source.aclose()
