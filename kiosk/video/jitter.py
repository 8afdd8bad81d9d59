"""A video frame is decoded when its last packet arrives, not when the next frame begins.

aiortc's receiver (``aiortc.jitterbuffer.JitterBuffer``) treats a video frame as complete only when
a packet of the *next* frame arrives: every received frame waits one frame interval before it is
decoded. At 30 fps that is 33 ms added to glass-to-glass latency; on the document camera's 5 fps
track it is 200 ms, and the first document frame of a call is shown only with the second one.

RFC 3550 §5.1 and the VP8/H.264 payload formats (RFC 7741 §4.1, RFC 6184 §5.1) define the RTP
marker bit as "last packet of this frame", and aiortc's sender sets it. :class:`FrameEndJitterBuffer`
completes a frame at that packet when every packet of the frame from the buffer's origin is there
(no gap), and otherwise falls back to aiortc's rule (a packet of the next frame closes the frame),
so a lost marker packet costs no more than before. Audio buffers keep aiortc's behaviour.

On a lossy link a packet can stay missing (its NACK or the retransmission lost too: aiortc NACKs a packet again
only when a *new* gap appears). aiortc then waits until 128 packets have piled up behind the gap, which on the
document camera's slow track takes minutes. :class:`FrameEndJitterBuffer` gives a gap up after
:data:`STALE_GAP` seconds of media time: the incomplete frames are dropped and a PLI asks the sender for a key frame.

Retransmissions reach the right receiver: aiortc's transport registers a receiver under the SSRC of its media
packets but not of its retransmissions (RTX, RFC 4588: another SSRC, paired in the SDP by ``a=ssrc-group:FID``), and
routes a packet of an unknown SSRC by payload type only when a single receiver has that payload type. The counter
sends two video tracks (camera and document camera) on one bundled transport with the same payload types, so at the
station *every* retransmission was discarded: under 3 % loss a lost packet was never repaired, each gap waited for
:data:`STALE_GAP` and a key frame, and the counter's camera arrived at 7 of 30 fps (a single video track, the
station's camera at the counter, was unaffected). :func:`route_retransmissions` registers the RTX SSRC too.

:func:`use_frame_end_jitter_buffer` makes every receiver created afterwards in this process use both; it is
idempotent, and like :func:`kiosk.video.ice.restrict_ice_addresses` it replaces names in aiortc for the whole
process.
"""

from __future__ import annotations

import logging
from typing import Any

import aiortc.rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket

from common.logs import event

__all__ = ["STALE_GAP", "FrameEndJitterBuffer", "route_retransmissions", "use_frame_end_jitter_buffer"]

log = logging.getLogger(__name__)


STALE_GAP = (
    1.0  # seconds of media time a missing packet may hold up a video track before its frames are dropped
)
_VIDEO_CLOCK = 90000


class FrameEndJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, but a video frame is complete at its marker packet, and a gap older than
    :data:`STALE_GAP` is given up for a key frame."""

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        if frame is not None or not self._is_video or self._origin is None:
            return pli_flag, frame
        oldest = None
        for count in range(self.capacity):
            held = self._packets[(self._origin + count) % self.capacity]
            if held is not None:
                oldest = held
                break
        if (
            oldest is None
            or (packet.timestamp - oldest.timestamp) % (1 << 32) <= STALE_GAP * _VIDEO_CLOCK
            or (packet.timestamp - oldest.timestamp) % (1 << 32) >= (1 << 31)
        ):
            return pli_flag, frame
        # Drop everything before the newest frame's first packet we hold, then ask for a key frame.
        while self._origin != packet.sequence_number:
            held = self._packets[self._origin % self.capacity]
            if held is not None and held.timestamp == packet.timestamp:
                break
            self.remove(1)
        event(log, "video_gap_given_up", logging.DEBUG, older_than_s=STALE_GAP, action="key frame request")
        return True, self._remove_frame(packet.sequence_number)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if not self._is_video or self._origin is None:
            return super()._remove_frame(sequence_number)
        packets = []
        timestamp = None
        end = 0  # packets from the origin that make up the frame
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None:
                return None  # a gap: wait for it (or for aiortc's overflow handling in add())
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                end = count  # the marker packet was lost: the next frame's start closes this one
                break
            packets.append(packet)
            if packet.marker:
                end = count + 1
                break
        else:
            return None
        assert timestamp is not None
        frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)  # type: ignore[attr-defined]
        self.remove(end)
        return frame


_register_rtp_receiver = RTCDtlsTransport._register_rtp_receiver


def _register_with_retransmissions(self: RTCDtlsTransport, receiver: Any, parameters: Any) -> None:
    _register_rtp_receiver(self, receiver, parameters)
    for encoding in parameters.encodings:
        if encoding.rtx is not None:
            self._rtp_router.ssrc_table[encoding.rtx.ssrc] = receiver


def route_retransmissions() -> None:
    """Make every aiortc transport set up from now on route retransmitted packets (RTX) by their SSRC to the
    receiver they belong to, also when several receivers share the payload types (two video tracks, one bundle)."""
    if RTCDtlsTransport._register_rtp_receiver is not _register_with_retransmissions:
        RTCDtlsTransport._register_rtp_receiver = _register_with_retransmissions  # type: ignore[method-assign]
        event(log, "rtx_routing", logging.DEBUG, installed=True)


def use_frame_end_jitter_buffer() -> None:
    """Make every aiortc receiver created from now on in this process use :class:`FrameEndJitterBuffer`, and
    route retransmissions to it (:func:`route_retransmissions`)."""
    route_retransmissions()
    if aiortc.rtcrtpreceiver.JitterBuffer is not FrameEndJitterBuffer:
        aiortc.rtcrtpreceiver.JitterBuffer = FrameEndJitterBuffer  # type: ignore[misc]
        event(log, "frame_end_jitter_buffer", logging.DEBUG, installed=True)
