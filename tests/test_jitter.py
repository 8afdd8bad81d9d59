"""The receiver's jitter buffer: a video frame is complete at its marker packet, not one frame later."""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, VideoStreamTrack
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from kiosk.video.ice import restrict_ice_addresses
from kiosk.video.jitter import FrameEndJitterBuffer, use_frame_end_jitter_buffer


def _packet(seq: int, ts: int, marker: bool = False, data: bytes | None = None) -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=int(marker))
    p._data = data if data is not None else bytes([seq % 256])  # type: ignore[attr-defined]
    return p


def _feed(buf: JitterBuffer, packets: list[RtpPacket]) -> list[tuple[int, bytes] | None]:
    out: list[tuple[int, bytes] | None] = []
    for p in packets:
        _, frame = buf.add(p)
        out.append(None if frame is None else (frame.timestamp, frame.data))
    return out


def test_frame_is_complete_at_its_marker_packet() -> None:
    """The last packet of a frame releases it at once; aiortc's own buffer waits for the next frame."""
    frame = [_packet(10, 900), _packet(11, 900), _packet(12, 900, marker=True)]
    assert _feed(FrameEndJitterBuffer(capacity=128, is_video=True), frame) == [
        None,
        None,
        (900, b"\x0a\x0b\x0c"),
    ]
    assert _feed(JitterBuffer(capacity=128, is_video=True), frame) == [None, None, None], (
        "aiortc's buffer holds the frame until the next one starts: the reason this module exists"
    )


def test_out_of_order_frame_waits_for_the_gap() -> None:
    """A marker packet that overtakes its frame's earlier packets releases nothing until the gap is filled."""
    buf = FrameEndJitterBuffer(capacity=128, is_video=True)
    assert _feed(buf, [_packet(1, 0, marker=True)]) == [(0, b"\x01")]
    got = _feed(buf, [_packet(2, 3000), _packet(4, 3000, marker=True), _packet(3, 3000)])
    assert got == [None, None, (3000, b"\x02\x03\x04")]


def test_lost_marker_packet_is_closed_by_the_next_frame() -> None:
    """Without its marker packet a frame is released when the next frame starts, as aiortc does."""
    buf = FrameEndJitterBuffer(capacity=128, is_video=True)
    got = _feed(
        buf,
        [
            _packet(1, 0),
            _packet(2, 0),
            _packet(4, 3000),
            _packet(3, 3000, marker=False),
            _packet(5, 3000, marker=True),
        ],
    )
    # 1, 2 (frame 0, marker lost), 4 (a gap at 3), then 3 fills it: frame 0 ends where timestamp 3000 begins
    assert got[:3] == [None, None, None]
    assert got[3] == (0, b"\x01\x02")
    assert got[4] == (3000, b"\x03\x04\x05"), "the next frame still completes at its own marker"


def test_consecutive_frames_come_out_in_order_one_each() -> None:
    """A stream of single-packet frames comes out one frame per packet, each with its own data."""
    buf = FrameEndJitterBuffer(capacity=128, is_video=True)
    got = _feed(buf, [_packet(100 + i, 3000 * i, marker=True, data=bytes([i])) for i in range(5)])
    assert got == [(3000 * i, bytes([i])) for i in range(5)]


def test_audio_keeps_aiortc_behaviour() -> None:
    """An audio buffer (prefetch, no video flag) is not changed: marker bits mean nothing there."""
    packets = [_packet(i, 960 * i, marker=True) for i in range(8)]
    ours = _feed(FrameEndJitterBuffer(capacity=16, prefetch=4), packets)
    theirs = _feed(JitterBuffer(capacity=16, prefetch=4), packets)
    assert ours == theirs and any(f is not None for f in ours)


class _OneFrame(VideoStreamTrack):
    """Sends a single frame, then nothing: only a receiver that honours the marker bit can show it."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()  # set once both sides are connected, so the frame is not sent into the void
        self.sent = asyncio.Event()

    async def recv(self) -> av.VideoFrame:
        await self.go.wait()
        if self.sent.is_set():
            await asyncio.Event().wait()  # the camera went quiet
        frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 200, dtype=np.uint8), format="rgb24")
        frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
        self.sent.set()
        return frame


@pytest.mark.timeout(60)
async def test_a_single_frame_reaches_the_remote_decoder() -> None:
    """Over a real aiortc connection on 127.0.0.1, one sent frame is decoded without a second frame behind it."""
    restrict_ice_addresses(["127.0.0.1"])
    use_frame_end_jitter_buffer()
    sender, receiver = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    source = _OneFrame()
    sender.addTrack(source)
    remote: asyncio.Future = asyncio.get_running_loop().create_future()
    receiver.on("track", lambda track: remote.set_result(track))
    changed = asyncio.Event()
    for pc in (sender, receiver):
        pc.on("connectionstatechange", changed.set)
    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        track = await asyncio.wait_for(remote, 10)
        while not (sender.connectionState == receiver.connectionState == "connected"):
            await asyncio.wait_for(changed.wait(), 10)
            changed.clear()
        source.go.set()
        frame = await asyncio.wait_for(track.recv(), 20)
        assert source.sent.is_set()
        assert (frame.width, frame.height) == (160, 120)
    finally:
        await sender.close()
        await receiver.close()
        restrict_ice_addresses([])


def test_a_gap_older_than_a_second_is_given_up_for_a_key_frame() -> None:
    """A packet that never comes (NACK and retransmission lost) holds a slow track up for at most STALE_GAP of media
    time: then the incomplete frame is dropped, a PLI is asked for, and the newest complete frame comes out."""
    from kiosk.video.jitter import STALE_GAP

    buf = FrameEndJitterBuffer(capacity=128, is_video=True)
    step = 45000  # 2 fps on the 90 kHz clock: the document camera
    assert buf.add(_packet(1, 0, data=b"a"))[1] is None  # packet 2 (the rest of frame 0) is lost for good
    pli, frame = buf.add(_packet(3, step, marker=True, data=b"b"))
    assert frame is None and not pli  # within STALE_GAP: wait for the retransmission
    late = int(STALE_GAP * 90000) + step + 1
    pli, frame = buf.add(_packet(4, late, marker=True, data=b"c"))
    assert pli and frame is not None and frame.timestamp == late and frame.data == b"c"
