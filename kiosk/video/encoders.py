"""Each video track encoded for what it shows: a camera pointed at a person, a document camera at a still page.

aiortc encodes every VP8 track with one recipe (``aiortc.codecs.vpx.Vp8Encoder``: fixed speed ``cpu-used -6``,
denoiser on, ``static-thresh 1``, CBR 0.25–1.5 Mbps, a new encoder — and so a key frame — whenever the bitrate
estimate moves by 10 %). This module gives each track its own :class:`EncoderProfile`, as browsers do for camera
and screen-share tracks (WebRTC's ``LibvpxVp8Encoder``: static threshold 100 and screen-content mode for
screen-share, denoiser only for cameras, a cap on key frame size):

* **camera** (:data:`CAMERA`): libvpx picks its own speed from the time each frame takes against the frame
  interval (VP8 real-time mode with a *positive* ``cpu-used`` N: ``vp8_auto_select_speed`` aims at (16 − N)/16 of
  the interval; N = 14: an eighth, 4 ms at 30 fps), which is libvpx's counterpart of the browser's CPU-overuse
  detection: on a busy PC frames take longer and it searches less instead of falling behind; on an idle one it
  never takes more than that share. Measured at 960×540@30 on the project machine: 3.3 ms of CPU per frame
  against 3.7 ms with aiortc's fixed ``-6`` (N = 8 took 5.3 ms: it fills a larger budget). A light denoiser;
  0.25–1.5 Mbps.
* **document** (:data:`DOCUMENT`): no denoiser (it smears small print), a static threshold that skips blocks
  that did not change (a still page costs almost nothing after its first frame), screen-content tuning, key
  frames capped at 3× an average frame so the first picture arrives fast, 0.3–2.5 Mbps so small print stays
  sharp. One encoder thread per track: on a busy 2-core PC a second libvpx thread made 1080p frames wait for the
  slower of the two (keyframe 150–550 ms instead of 60 ms).

How a profile reaches the encoder: :class:`~kiosk.video.sources.VideoSource` tags every frame it sends with its
profile (``frame.opaque``, PyAV's per-frame user data: aiortc's ``MediaRelay`` hands the same frame object to
every subscriber), and :func:`use_track_encoders` makes aiortc's senders create a :class:`TrackVp8Encoder` (a
small subclass of aiortc's ``Vp8Encoder``: its packetisation, RTP timestamps and bitrate feedback stay aiortc's)
for VP8 tracks, which reads the profile from the frame. Like :func:`kiosk.video.jitter.use_frame_end_jitter_buffer`
it replaces one name in aiortc for the whole process; H264 and audio keep aiortc's encoders.

Hardware encoding: where the PC has a VAAPI device and the FFmpeg inside PyAV has ``vp8_vaapi``,
:func:`choose_vp8_backend` picks it at run time; anything missing or failing to open falls back to libvpx, once
per process, with a log line saying why. PyAV's wheels ship without VAAPI, so on most installs (and on the project
machines, which have no GPU) the software path is what runs.
"""

from __future__ import annotations

import fractions
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiortc.rtcrtpsender
import av
from aiortc.codecs import get_encoder as aiortc_get_encoder
from aiortc.codecs.base import Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import VIDEO_TIME_BASE, convert_timebase
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av import VideoFrame
from av.frame import Frame
from av.video.reformatter import Interpolation, VideoReformatter

from common.logs import event

__all__ = [
    "CAMERA",
    "DOCUMENT",
    "PROFILES",
    "EncoderBackend",
    "EncoderProfile",
    "TrackVp8Encoder",
    "choose_vp8_backend",
    "frame_profile",
    "profile_for",
    "tag_frame",
    "use_track_encoders",
]

log = logging.getLogger(__name__)

VIDEO_TIME_BASE_90K = fractions.Fraction(1, 90000)
MIN_FIRST_FRAME_WIDTH = 640  # a smaller first frame is worth it only for large pictures


@dataclass(frozen=True)
class EncoderProfile:
    """libvpx settings for one kind of track (FFmpeg ``libvpx`` option names in :meth:`options`).

    Attributes:
        name: ``camera`` or ``document`` (log lines, tests).
        min_bitrate, start_bitrate, max_bitrate: bits per second; the receiver's estimate (REMB) moves the target
            inside this range.
        cpu_used: libvpx speed. Negative: that fixed speed (aiortc uses -6); positive N: libvpx chooses the speed
            per frame so that encoding takes about (16 − N)/16 of the frame interval (CPU-aware).
        noise_sensitivity: temporal denoiser strength, 0 = off.
        static_thresh: blocks whose prediction error stays below this are coded as "unchanged".
        screen_content: libvpx screen-content mode (0 off, 1 on, 2 on with more aggressive rate control).
        max_intra_rate: a key frame may take at most this % of an average frame's bits (0 = no cap).
        threads: encoder threads (capped at the number of CPUs).
        fps_hint: the frame rate libvpx starts from; it follows the frames' timestamps after that.
        gop: frames between forced key frames (key frames also come on request: PLI/FIR).
        retarget_down, retarget_up: a new bitrate estimate recreates the encoder (a key frame) only when it is below
            ``retarget_down`` × or above ``retarget_up`` × the current target (aiortc: ±10 %).
        first_frame_scale: the first frame of a stream is sent at this share of its size (a small first key frame
            that is encoded and decoded several times faster); the next frame comes at full size. Only for
            pictures at least :data:`MIN_FIRST_FRAME_WIDTH` wide once scaled.
    """

    name: str
    min_bitrate: int
    start_bitrate: int
    max_bitrate: int
    cpu_used: int
    noise_sensitivity: int
    static_thresh: int
    screen_content: int
    max_intra_rate: int
    threads: int = 1
    fps_hint: int = 30
    gop: int = 3000
    qmin: int = 2
    qmax: int = 56
    retarget_down: float = 0.75
    retarget_up: float = 1.5
    first_frame_scale: float = 1.0

    def options(self, bitrate: int) -> dict[str, str]:
        """FFmpeg ``libvpx`` encoder options for a CBR target of ``bitrate``."""
        opts = {
            "deadline": "realtime",
            "cpu-used": str(self.cpu_used),
            "lag-in-frames": "0",
            "bufsize": str(bitrate),  # rc_buf_sz = 1000 ms, like aiortc and WebRTC
            "minrate": str(bitrate),  # minrate = maxrate = bit_rate: CBR
            "maxrate": str(bitrate),
            "noise-sensitivity": str(self.noise_sensitivity),
            "static-thresh": str(self.static_thresh),
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "error-resilient": "1",  # "default": packets lost from one frame do not corrupt the next ones
        }
        if self.max_intra_rate:
            opts["max-intra-rate"] = str(self.max_intra_rate)
        if self.screen_content:
            opts["screen-content-mode"] = str(self.screen_content)
        return opts


#: The resident's / staff member's camera: CPU-aware speed, light denoiser.
CAMERA = EncoderProfile(
    name="camera",
    min_bitrate=250_000,
    start_bitrate=500_000,
    max_bitrate=1_500_000,
    cpu_used=14,
    noise_sensitivity=1,
    static_thresh=1,
    screen_content=0,
    max_intra_rate=900,
)
#: The document camera: still paper with small print.
DOCUMENT = EncoderProfile(
    name="document",
    min_bitrate=300_000,
    start_bitrate=800_000,
    max_bitrate=2_500_000,
    cpu_used=-8,
    noise_sensitivity=0,
    static_thresh=100,
    screen_content=1,
    max_intra_rate=300,
    fps_hint=5,
    retarget_down=0.6,
    retarget_up=2.0,
    first_frame_scale=0.5,
)
PROFILES: Mapping[str, EncoderProfile] = {"camera": CAMERA, "document": DOCUMENT}


def profile_for(camera_name: str) -> EncoderProfile:
    """The profile for a camera role (``document_camera`` → :data:`DOCUMENT`, anything else → :data:`CAMERA`)."""
    return DOCUMENT if camera_name.startswith("document") else CAMERA


class _Tag:
    """A frame's tag. One new object per frame: PyAV keys ``frame.opaque`` by the object's id and drops the entry
    when the first frame holding it is freed, so one object shared by many frames vanishes from all of them."""

    __slots__ = ("profile",)

    def __init__(self, profile: EncoderProfile) -> None:
        self.profile = profile


def tag_frame(frame: VideoFrame, profile: EncoderProfile) -> VideoFrame:
    """Mark ``frame`` for encoding with ``profile`` (returns the frame)."""
    frame.opaque = _Tag(profile)
    return frame


def frame_profile(frame: VideoFrame) -> EncoderProfile | None:
    """The profile ``frame`` was tagged with, if any."""
    tag = frame.opaque
    return tag.profile if isinstance(tag, _Tag) else None


# ---------------------------------------------------------------------------------------------------
# Backend choice: VAAPI where it is there, libvpx otherwise


@dataclass(frozen=True)
class EncoderBackend:
    """Which VP8 encoder this process uses: ``codec`` is the FFmpeg encoder name, ``device`` the VAAPI render node."""

    codec: str
    device: str | None = None
    why: str = ""

    @property
    def hardware(self) -> bool:
        return self.device is not None


SOFTWARE = EncoderBackend("libvpx", None, "software")
_backend_lock = threading.Lock()
_backend: EncoderBackend | None = None


def _vaapi_probe(render_nodes: list[Path] | None = None) -> tuple[str | None, str]:
    """The VAAPI render node to use and, if none, why not."""
    if "vp8_vaapi" not in av.codecs_available:
        return None, "the FFmpeg inside PyAV has no vp8_vaapi encoder"
    try:
        from av.codec.hwaccel import hwdevices_available

        if "vaapi" not in hwdevices_available():
            return None, "the FFmpeg inside PyAV was built without VAAPI"
    except ImportError:
        return None, "this PyAV has no hardware acceleration API"
    nodes = render_nodes if render_nodes is not None else sorted(Path("/dev/dri").glob("renderD*"))
    if not nodes:
        return None, "no GPU render node (/dev/dri/renderD*)"
    return str(nodes[0]), ""


def _open_vaapi(device: str, width: int, height: int, bitrate: int = CAMERA.start_bitrate) -> Any:
    """A ``vp8_vaapi`` encoder context on ``device`` (raises whatever PyAV or the driver raises)."""
    from av.codec.hwaccel import HWAccel

    ctx = av.CodecContext.create("vp8_vaapi", "w", hwaccel=HWAccel(device_type="vaapi", device=device))
    ctx.width, ctx.height = width, height
    ctx.bit_rate = bitrate
    ctx.pix_fmt = "vaapi"
    ctx.time_base = VIDEO_TIME_BASE_90K
    ctx.open()
    return ctx


def choose_vp8_backend(
    *,
    probe: Callable[[], tuple[str | None, str]] = _vaapi_probe,
    try_open: Callable[[str, int, int], Any] = _open_vaapi,
    refresh: bool = False,
) -> EncoderBackend:
    """The VP8 encoder for this process, chosen once: VAAPI if present and it opens, else libvpx.

    Args:
        probe: finds the VAAPI device (tests pass their own to simulate a PC that has one).
        try_open: opens a small test encoder on it; any exception means "use software".
        refresh: choose again (tests).
    """
    global _backend
    with _backend_lock:
        if _backend is not None and not refresh:
            return _backend
        device, why = probe()
        chosen = SOFTWARE if device is None else None
        if device is not None:
            try:
                try_open(device, 640, 360)
                chosen = EncoderBackend("vp8_vaapi", device, "VAAPI")
            except Exception as err:  # noqa: BLE001 - any driver or library failure means software
                why = f"VAAPI on {device} failed to open: {type(err).__name__}: {err}"
        if chosen is None or not chosen.hardware:
            chosen = EncoderBackend("libvpx", None, f"software (libvpx): {why}")
        event(log, "video_encoder", codec=chosen.codec, device=chosen.device or "-", why=chosen.why)
        _backend = chosen
        return chosen


# ---------------------------------------------------------------------------------------------------
# The encoder


@dataclass
class EncoderStats:
    """What one encoder did (tests, diagnostics): frames, key frames, re-creations and time spent."""

    frames: int = 0
    keyframes: int = 0
    recreated: int = 0
    bytes: int = 0
    encode_s: float = 0.0
    last_keyframe_bytes: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)


class TrackVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder with the settings of the track's :class:`EncoderProfile`.

    The profile comes from each frame (:func:`tag_frame`; untagged frames use ``default``). Packetisation,
    picture ids, RTP timestamps and the ``target_bitrate`` fed by the receiver's estimate are aiortc's.
    """

    def __init__(self, default: EncoderProfile = CAMERA, backend: EncoderBackend | None = None) -> None:
        super().__init__()
        self.profile = default
        self.backend = backend or SOFTWARE
        self.stats = EncoderStats()
        self.options: dict[str, str] = {}
        self._target = default.start_bitrate
        self._reformatter = VideoReformatter()  # never the frame's own: other peers' encoders share the frame

    @property
    def target_bitrate(self) -> int:
        return self._target

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._target = max(self.profile.min_bitrate, min(int(bitrate), self.profile.max_bitrate))

    def _needs_new_codec(self, frame: VideoFrame, profile: EncoderProfile) -> bool:
        codec = self.codec
        if codec is None or profile is not self.profile:
            return True
        if frame.width != codec.width or frame.height != codec.height:
            return True
        current = codec.bit_rate or 1
        return not profile.retarget_down * current <= self._target <= profile.retarget_up * current

    def _open(self, frame: VideoFrame, profile: EncoderProfile, fastest: bool = False) -> None:
        """A new libvpx context for this frame's size and the current target; ``fastest``: libvpx's fastest
        speed (the small first frame: one key frame, replaced by the full-size one 1/fps later)."""
        if profile is not self.profile:
            self.profile = profile
            # aiortc builds the encoder before it sees a frame: the first frame says which track this is.
            first = self.stats.frames == 0 and self.codec is None
            self._target = (
                profile.start_bitrate
                if first
                else max(profile.min_bitrate, min(self._target, profile.max_bitrate))
            )
        if self.codec is not None:
            self.stats.recreated += 1
        bitrate = self._target
        if self.backend.hardware:
            try:
                self.codec = _open_vaapi(str(self.backend.device), frame.width, frame.height, bitrate)
                self.options = {}
                self.stats.sizes.append((frame.width, frame.height))
                return
            except Exception as err:  # noqa: BLE001 - fall back to software for this encoder
                self._hardware_failed(err)
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = frame.width, frame.height
        codec.bit_rate = bitrate
        codec.pix_fmt = "yuv420p"
        # The frames' clock (kiosk.video.sources: 90 kHz): libvpx's rate control and its CPU-aware speed both
        # work from the frame times (aiortc leaves PyAV's default of 1/1000000 against 90 kHz timestamps).
        codec.time_base = frame.time_base or VIDEO_TIME_BASE_90K
        codec.framerate = fractions.Fraction(
            profile.fps_hint, 1
        )  # libvpx then measures it from the frame times
        codec.gop_size = profile.gop
        codec.qmin, codec.qmax = profile.qmin, profile.qmax
        codec.thread_count = max(1, min(profile.threads, os.cpu_count() or 1))
        self.options = profile.options(bitrate)
        if fastest:
            self.options["cpu-used"] = "-16"
        codec.options = dict(self.options)
        self.codec = codec
        self.stats.sizes.append((frame.width, frame.height))

    def _smaller(self, frame: VideoFrame, scale: float) -> VideoFrame:
        width, height = (max(16, round(side * scale / 2) * 2) for side in (frame.width, frame.height))
        small = self._reformatter.reformat(
            frame, width=width, height=height, format="yuv420p", interpolation=Interpolation.AREA
        )
        small.pts, small.time_base = frame.pts, frame.time_base
        return small

    def _hardware_failed(self, err: BaseException) -> None:
        event(
            log,
            "video_encoder_fallback",
            level=logging.WARNING,
            codec=self.backend.codec,
            device=self.backend.device or "-",
            error=f"{type(err).__name__}: {err}",
            using="libvpx",
        )
        self.backend = EncoderBackend("libvpx", None, f"software (libvpx): VAAPI failed: {err}")
        self.codec = None

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        assert isinstance(frame, VideoFrame)
        profile = frame_profile(frame) or self.profile
        if frame.format.name != "yuv420p":
            frame = self._reformatter.reformat(frame, format="yuv420p")
        first_small = (
            self.stats.frames == 0
            and profile.first_frame_scale < 1.0
            and frame.width * profile.first_frame_scale >= MIN_FIRST_FRAME_WIDTH
        )
        if first_small:
            frame = self._smaller(frame, profile.first_frame_scale)
        if self._needs_new_codec(frame, profile):
            self._open(frame, profile, fastest=first_small)
        assert self.codec is not None
        if force_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        assert frame.pts is not None and frame.time_base is not None
        timestamp = convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)
        started = time.perf_counter()
        try:
            packets = self.codec.encode(frame)
        except Exception as err:
            if not self.backend.hardware:
                raise
            self._hardware_failed(err)
            self._open(frame, profile)
            packets = self.codec.encode(frame)
        self.stats.encode_s += time.perf_counter() - started
        data = b"".join(bytes(p) for p in packets)
        self.stats.frames += 1
        self.stats.bytes += len(data)
        if any(p.is_keyframe for p in packets):
            self.stats.keyframes += 1
            self.stats.last_keyframe_bytes = len(data)
        payloads = self._packetize(data, self.picture_id)
        self.picture_id = (self.picture_id + 1) % (1 << 15)
        return payloads, timestamp


def _get_encoder(codec: RTCRtpCodecParameters) -> Encoder:
    if codec.mimeType.lower() == "video/vp8":
        return TrackVp8Encoder(CAMERA, choose_vp8_backend())
    return aiortc_get_encoder(codec)


def use_track_encoders() -> None:
    """Make every aiortc sender created from now on in this process encode VP8 with :class:`TrackVp8Encoder`."""
    if aiortc.rtcrtpsender.get_encoder is not _get_encoder:
        aiortc.rtcrtpsender.get_encoder = _get_encoder
        event(log, "vp8_track_encoders", logging.DEBUG, installed=True)
