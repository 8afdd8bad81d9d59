"""One peer connection of a call and what this terminal sends over it.

The media layout of a call (the contract between terminals; ``docs/protocol.md``, "Media tracks"):

* One ``RTCPeerConnection`` per remote member, all media bundled on one transport (max-bundle).
* The offerer adds its transceivers in this order: ``audio`` (sendrecv), ``camera`` video (sendrecv), and — counter
  only — ``document`` video (sendonly), then a data channel labelled :data:`~kiosk.video.still.CONTROL_CHANNEL`. The
  signal data says which mid carries what: ``{"kind": "offer"|"answer", "sdp": SDP, "tracks": {MID: KIND}}``
  (:class:`~kiosk.video.remote.TrackKind`). A receiver that finds no ``tracks`` map falls back to order: first video
  m-line = camera, second = document. The answerer attaches its own camera/audio to the offered transceivers.
* A received video frame is decoded as soon as its last packet is in (:mod:`kiosk.video.jitter`); each track's VP8
  settings follow what it carries (:mod:`kiosk.video.encoders`).
* The camera track's resolution follows what this PC's encoders keep up with (``[camera] adapt``,
  :mod:`kiosk.video.adapt`); the document track is never scaled and is sent at the camera's full resolution.
* aiortc uses only the first TURN URL it is given, so each peer connection gets one path (``PathPlan``): a failed
  attempt moves that path to the back and the next attempt tries the next one (:mod:`kiosk.video.reconnect`).

:class:`Peer` is the session's record of one such connection; :class:`LocalTracks` hands out this terminal's
sources, one subscription per peer connection, with the microphone's mute and the camera's adaptation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from common.logs import event
from kiosk.video.adapt import CameraAdaptation
from kiosk.video.encoders import use_track_encoders
from kiosk.video.events import SessionError
from kiosk.video.ice import rtc_configuration
from kiosk.video.jitter import use_frame_end_jitter_buffer
from kiosk.video.local_media import GatedAudioTrack, LocalMedia
from kiosk.video.paths import IcePath, PathPlan
from kiosk.video.remote import TrackKind
from kiosk.video.turnprobe import IcePathBook, apply_tls_context, ice_connections

__all__ = [
    "LocalTracks",
    "Peer",
    "add_offer_transceivers",
    "gather",
    "open_peer",
    "prefer_codec",
    "track_kind",
]

log = logging.getLogger(__name__)


@dataclass
class Peer:
    """One member's peer connection, as the session keeps it.

    Attributes:
        member: the remote terminal.
        pc: the peer connection.
        offerer: whether this side made the offer.
        labels: mid → kind, from the offer's ``tracks`` map.
        local_tracks: what this side sends over it (stopped when it closes).
        channel: the data channel (stills, ``bye``, assist messages), once there is one.
        closing: being closed or replaced: its states no longer matter.
        connected_at: ``time.monotonic()`` when it first reached ``connected``.
        tasks: the tasks that belong to it (cancelled when it closes).
        path: the one TURN path it may use (None: host/STUN only).
        attempt: 1 for the first connection to the member, +1 for each rebuild.
        created_at: ``time.monotonic()`` when it was made.
        answered_at: offer and answer both applied: from here ICE has ``attempt_timeout`` to connect.
        down: its media stopped; a new peer connection is being set up.
    """

    member: str
    pc: RTCPeerConnection
    offerer: bool
    labels: dict[str, str] = field(default_factory=dict)
    local_tracks: list[MediaStreamTrack] = field(default_factory=list)
    channel: RTCDataChannel | None = None
    closing: bool = False
    connected_at: float | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    path: IcePath | None = None
    attempt: int = 1
    created_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None
    down: bool = False


def open_peer(
    member: str, *, offerer: bool, attempt: int, plan: PathPlan, paths: IcePathBook, who: str
) -> Peer:
    """A new peer connection to ``member`` over the plan's current TURN path (plus the book's STUN servers)."""
    use_frame_end_jitter_buffer()  # decode each remote frame at its last packet (kiosk.video.jitter)
    use_track_encoders()  # VP8 settings per track: camera or document (kiosk.video.encoders)
    path = plan.current()
    servers = paths.stun_servers() + ([path.server()] if path is not None else [])
    pc = RTCPeerConnection(rtc_configuration(servers))
    event(
        log,
        "media_attempt",
        terminal=who,
        member=member,
        attempt=attempt,
        over=path.url if path is not None else "host/STUN candidates only (no TURN server)",
    )
    return Peer(member=member, pc=pc, offerer=offerer, path=path, attempt=attempt)


async def gather(
    peer: Peer, description: RTCSessionDescription, paths: IcePathBook, plan: PathPlan, who: str
) -> None:
    """``setLocalDescription`` (aiortc gathers every candidate there), with our TLS context for turns:,
    and a log line when the TURN path gave no relay candidate (aioice gives up after 5 s silently)."""
    apply_tls_context(peer.pc, paths.context)
    await peer.pc.setLocalDescription(description)
    if peer.path is not None:
        types = {c.type for conn in ice_connections(peer.pc) for c in conn.local_candidates}
        if "relay" not in types:
            why = "no TURN allocation within 5 s"
            result = paths.results.get(peer.path.url)
            if result is not None and not result.ok:
                why += f"; last probe: {result.explain()}"
            event(log, "turn_no_relay_candidate", logging.WARNING, terminal=who, url=peer.path.url, why=why)
            plan.failed(peer.path, why)
            paths.refresh()


def prefer_codec(transceiver: RTCRtpTransceiver, codec: str) -> None:
    """Offer ``codec`` (``vp8``/``h264``) for this video transceiver, with RTX.

    Raises:
        SessionError: this aiortc build has no such codec.
    """
    caps = RTCRtpSender.getCapabilities("video")
    wanted = f"video/{codec}"
    preferred = [c for c in caps.codecs if c.mimeType.lower() == wanted]
    if not preferred:
        raise SessionError(f"codec {codec!r} is not available in this aiortc build")
    rtx = [c for c in caps.codecs if c.mimeType.lower() == "video/rtx"]
    transceiver.setCodecPreferences(preferred + rtx)


def track_kind(peer: Peer, transceiver: RTCRtpTransceiver) -> TrackKind:
    """What ``transceiver`` carries: from the offer's ``tracks`` map, else by order (audio; camera, document)."""
    label = peer.labels.get(str(transceiver.mid))
    if label is not None and label in TrackKind.__members__.values():
        return TrackKind(label)
    if transceiver.kind == "audio":
        return TrackKind.AUDIO
    videos = [t for t in peer.pc.getTransceivers() if t.kind == "video"]
    return TrackKind.DOCUMENT if videos.index(transceiver) == 1 else TrackKind.CAMERA


def add_offer_transceivers(
    peer: Peer, local: LocalTracks, codec: str
) -> list[tuple[RTCRtpTransceiver, TrackKind]]:
    """The offerer's transceivers in the contract's order (audio, camera, the counter's document)."""
    pc = peer.pc
    audio = local.for_peer(peer, TrackKind.AUDIO)
    t_audio = pc.addTransceiver(
        audio if audio is not None else "audio", direction="sendrecv" if audio is not None else "recvonly"
    )
    camera = local.for_peer(peer, TrackKind.CAMERA)
    t_camera = pc.addTransceiver(
        camera if camera is not None else "video",
        direction="sendrecv" if camera is not None else "recvonly",
    )
    prefer_codec(t_camera, codec)
    transceivers = [(t_audio, TrackKind.AUDIO), (t_camera, TrackKind.CAMERA)]
    document = local.for_peer(peer, TrackKind.DOCUMENT)
    if document is not None:
        t_doc = pc.addTransceiver(document, direction="sendonly")
        prefer_codec(t_doc, codec)
        transceivers.append((t_doc, TrackKind.DOCUMENT))
    return transceivers


def attach_answer_tracks(peer: Peer, local: LocalTracks) -> None:
    """The answerer's own audio and camera on the offered transceivers (the offer is applied)."""
    for t in peer.pc.getTransceivers():
        kind = track_kind(peer, t)
        if kind not in (TrackKind.AUDIO, TrackKind.CAMERA):
            continue
        track = local.for_peer(peer, kind)
        if track is not None:
            t.sender.replaceTrack(track)
            t.direction = "sendrecv"


class LocalTracks:
    """This terminal's sources as tracks for each peer connection.

    Args:
        local: the terminal's sources (borrowed, never closed here).
        role: ``counter`` (sends its document camera too) or ``office``.
        name: for the camera adaptation's log lines.
    """

    def __init__(self, local: LocalMedia, role: str, name: str) -> None:
        self.local = local
        self.role = role
        self.name = name
        self._audio_gates: list[GatedAudioTrack] = []
        self._adaptation: CameraAdaptation | None = None
        self._mic_muted = False

    @property
    def mic_muted(self) -> bool:
        return self._mic_muted

    def set_mic_muted(self, muted: bool) -> None:
        """Mute or unmute the microphone towards every member (silence is sent while muted)."""
        self._mic_muted = muted
        for gate in self._audio_gates:
            gate.muted = muted

    def for_peer(self, peer: Peer, kind: TrackKind) -> MediaStreamTrack | None:
        """A new subscription of the ``kind`` source for ``peer`` (None: this terminal sends no such track)."""
        track: MediaStreamTrack | None = None
        if kind is TrackKind.AUDIO and self.local.audio is not None:
            gate = GatedAudioTrack(self.local.audio.track())
            gate.muted = self._mic_muted
            self._audio_gates.append(gate)
            track = gate
        elif kind is TrackKind.CAMERA and self.local.camera is not None:
            track = self._camera_track()
        elif kind is TrackKind.DOCUMENT and self.local.document is not None and self.role == "counter":
            track = self.local.document.track()
        if track is not None:
            peer.local_tracks.append(track)
        return track

    def _camera_track(self) -> MediaStreamTrack:
        """A subscription of the local camera for one peer; metered when ``[camera] adapt`` lets the resolution
        follow what the encoders keep up with (:mod:`kiosk.video.adapt`)."""
        camera = self.local.camera
        assert camera is not None
        cfg = getattr(camera, "config", None)
        if not (getattr(cfg, "adapt", False) and hasattr(camera, "set_scale")):
            return camera.track()
        if self._adaptation is None:
            self._adaptation = CameraAdaptation(
                camera,  # type: ignore[arg-type]
                cfg.width,  # type: ignore[union-attr]
                name=f"{self.name} camera",
                start_small=True,
            )
        return self._adaptation.track()

    def release(self, peer: Peer) -> None:
        """Stop what was sent over ``peer`` (it is closing)."""
        for track in peer.local_tracks:
            track.stop()
            if isinstance(track, GatedAudioTrack) and track in self._audio_gates:
                self._audio_gates.remove(track)

    async def close(self) -> None:
        """The call ended: the camera goes back to full size for the next call."""
        if self._adaptation is not None:
            await self._adaptation.close()
            self._adaptation = None
