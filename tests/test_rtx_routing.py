"""Retransmissions reach the right receiver when two video tracks share one transport (the counter's camera and
document camera): a lost packet of the second track is repaired by its retransmission, over real aiortc peers."""

from __future__ import annotations

import asyncio
import fractions
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from av import VideoFrame

from kiosk.video.ice import restrict_ice_addresses
from kiosk.video.jitter import use_frame_end_jitter_buffer


class _Frames(MediaStreamTrack):
    """A camera the test drives: frame ``n`` has pts ``n``."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def recv(self) -> VideoFrame:
        n = await self.queue.get()
        if n is None:
            raise MediaStreamError
        frame = VideoFrame.from_ndarray(
            np.full((120, 160, 3), (n * 40) % 256, dtype=np.uint8), format="rgb24"
        )
        frame.pts, frame.time_base = n * 3000, fractions.Fraction(1, 90000)
        return frame


@pytest.mark.timeout(90)
async def test_a_lost_packet_of_the_second_video_track_is_repaired_by_its_retransmission(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The document track's packet of frame 2 is dropped once on its way out; the receiver NACKs it, the sender
    retransmits it (RTX, its own SSRC) and frame 2 is decoded — aiortc alone discarded every retransmission when
    two video receivers share the payload types, so frame 2 never came."""
    restrict_ice_addresses(["127.0.0.1"])
    use_frame_end_jitter_buffer()
    camera, document = _Frames(), _Frames()
    sender, receiver = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    sender.addTrack(camera)
    sender.addTrack(document)
    remote: list[MediaStreamTrack] = []
    both = asyncio.Event()

    def on_track(track: MediaStreamTrack) -> None:
        remote.append(track)
        if len(remote) == 2:
            both.set()

    receiver.on("track", on_track)
    dropped: list[int] = []
    send_rtp: Callable[[RTCDtlsTransport, bytes], Awaitable[None]] = RTCDtlsTransport._send_rtp
    doc_ssrc: list[int] = []

    async def lossy_send(self: RTCDtlsTransport, data: bytes) -> None:
        ssrc = struct.unpack("!I", data[8:12])[0] if len(data) >= 12 else 0  # RTCP goes this way too
        if doc_ssrc and ssrc == doc_ssrc[0] and not 72 <= data[1] & 0x7F <= 76 and not dropped:
            payload_start = 12 + 4 * (data[0] & 0x0F)
            if data[payload_start:]:  # a media packet: the second one of the document track is lost
                document_packets.append(struct.unpack("!H", data[2:4])[0])
                if len(document_packets) == 2:
                    dropped.append(document_packets[-1])
                    return
        await send_rtp(self, data)

    document_packets: list[int] = []
    monkeypatch.setattr(RTCDtlsTransport, "_send_rtp", lossy_send)
    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        await asyncio.wait_for(both.wait(), 20)
        doc_ssrc.append(sender.getSenders()[1]._ssrc)
        document_remote = next(t for t in remote if t is receiver.getTransceivers()[1].receiver.track)
        received: list[int] = []

        async def next_frame() -> Any:
            frame = await asyncio.wait_for(document_remote.recv(), 20)
            assert isinstance(frame, VideoFrame) and frame.pts is not None
            received.append(frame.pts)
            return frame

        document.queue.put_nowait(1)
        await next_frame()
        document.queue.put_nowait(2)  # its packet is lost
        document.queue.put_nowait(3)  # the gap is seen: NACK, retransmission
        try:
            await next_frame()
        except TimeoutError:
            pytest.fail(f"frame 2 was never repaired (dropped packet {dropped}); received pts {received}")
        assert dropped, "the test did not drop a packet"
        assert 2900 <= received[1] - received[0] <= 3100, (
            f"not frame 2 after frame 1: received pts {received}"
        )
    finally:
        await sender.close()
        await receiver.close()
        restrict_ice_addresses([])


def test_the_aiortc_internals_the_routing_fix_relies_on_are_there() -> None:
    """aiortc's transport still registers receivers through _register_rtp_receiver(receiver, parameters) and routes
    RTP by an ssrc_table (kiosk/video/jitter.py's route_retransmissions adds the RTX SSRC there)."""
    import inspect

    from aiortc.rtcdtlstransport import RtpRouter

    from kiosk.video import jitter

    params = list(inspect.signature(jitter._register_rtp_receiver).parameters)
    assert params == ["self", "receiver", "parameters"], f"_register_rtp_receiver changed: {params}"
    assert isinstance(RtpRouter().ssrc_table, dict)
