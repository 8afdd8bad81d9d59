"""Per-track VP8 encoders: the settings each track gets really reach libvpx, the VAAPI fallback, the wiring."""

from __future__ import annotations

import asyncio
import gc
from fractions import Fraction
from pathlib import Path

import aiortc.rtcrtpsender
import av
import numpy as np
import pytest
from aiortc.codecs import get_encoder as aiortc_get_encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av import VideoFrame

from kiosk.config import CameraConfig
from kiosk.video import encoders
from kiosk.video.encoders import (
    CAMERA,
    DOCUMENT,
    EncoderBackend,
    TrackVp8Encoder,
    choose_vp8_backend,
    frame_profile,
    profile_for,
    tag_frame,
    use_track_encoders,
)
from kiosk.video.sources import open_video_source, rgb_to_yuv420p
from kiosk.video.stamp import read_frame_stamp
from kiosk.video.synthetic import SyntheticScene, render_document_page

OUR_OPTIONS = (
    "noise-sensitivity",
    "static-thresh",
    "cpu-used",
    "max-intra-rate",
    "deadline",
    "error-resilient",
)


def page_frames(
    count: int,
    size: tuple[int, int] = (1920, 1080),
    profile: encoders.EncoderProfile = DOCUMENT,
    fps: int = 5,
) -> list[VideoFrame]:
    page = rgb_to_yuv420p(np.ascontiguousarray(render_document_page(*size)))
    planes = page.to_ndarray()
    frames = []
    for i in range(count):
        frame = VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts, frame.time_base = i * 90000 // fps, Fraction(1, 90000)
        frames.append(tag_frame(frame, profile))
    return frames


def decode_all(payloads: list[list[bytes]]) -> list[VideoFrame]:
    decoder = Vp8Decoder()
    out: list[VideoFrame] = []
    for i, frame_payloads in enumerate(payloads):
        data = b"".join(vp8_depayload(p) for p in frame_payloads)
        out.extend(decoder.decode(JitterFrame(data=data, timestamp=i * 18000)))  # type: ignore[arg-type]
    return out


def test_document_settings_reach_libvpx() -> None:
    """A document frame opens libvpx with the document profile: no denoiser, static threshold, screen content,
    capped key frames, the RTP clock as time base; libvpx accepts every option (none is left over)."""
    encoder = TrackVp8Encoder(CAMERA)
    encoder.encode(page_frames(1)[0])
    codec = encoder.codec
    assert codec is not None and encoder.profile is DOCUMENT
    assert encoder.options["noise-sensitivity"] == "0"
    assert encoder.options["static-thresh"] == "100"
    assert encoder.options["screen-content-mode"] == "1"
    assert encoder.options["max-intra-rate"] == "300"
    assert codec.time_base == Fraction(1, 90000)
    assert codec.bit_rate == DOCUMENT.start_bitrate and codec.thread_count == 1
    leftovers = dict(codec.options)  # what avcodec_open2 did not recognise
    assert not set(leftovers) & set(encoder.options), f"libvpx ignored {leftovers}"


def test_camera_settings_let_libvpx_choose_its_speed() -> None:
    """Untagged (camera) frames get a positive cpu-used, libvpx's CPU-aware speed, and the light denoiser."""
    encoder = TrackVp8Encoder(CAMERA)
    frame = rgb_to_yuv420p(SyntheticScene(640, 360).render(1.0))
    frame.pts, frame.time_base = 0, Fraction(1, 90000)
    encoder.encode(frame)
    assert encoder.profile is CAMERA and int(encoder.options["cpu-used"]) > 0
    assert encoder.options["noise-sensitivity"] == "1"
    assert encoder.codec is not None and not set(encoder.codec.options) & set(encoder.options)


def test_document_sends_a_small_first_key_frame_then_full_size() -> None:
    """The first document frame goes at half size (a quick first picture), the next one at full size; both
    decode, and the small one is a fraction of the full key frame."""
    encoder = TrackVp8Encoder(DOCUMENT)
    sent = [encoder.encode(f)[0] for f in page_frames(1)]
    assert encoder.options["cpu-used"] == "-16", "the small first frame at libvpx's fastest speed"
    sent += [encoder.encode(f)[0] for f in page_frames(3)[1:]]
    assert encoder.options["cpu-used"] == str(DOCUMENT.cpu_used)
    decoded = decode_all(sent)
    assert [(f.width, f.height) for f in decoded] == [(960, 540), (1920, 1080), (1920, 1080)]
    assert encoder.stats.keyframes == 2 and encoder.stats.recreated == 1
    first, second = (sum(len(p) for p in s) for s in sent[:2])
    assert first < second


def test_small_first_frame_only_for_large_pictures() -> None:
    """A small document picture is sent at its size from the first frame (halving it would make it unreadable)."""
    encoder = TrackVp8Encoder(DOCUMENT)
    sent = [encoder.encode(f)[0] for f in page_frames(2, size=(640, 360))]
    assert [(f.width, f.height) for f in decode_all(sent)] == [(640, 360), (640, 360)]


def test_static_page_is_sharper_than_with_the_stock_recipe() -> None:
    """A still page through the document settings decodes closer to the source than through aiortc's recipe."""
    frames = page_frames(10, size=(1280, 720))
    source = frames[0].to_ndarray(format="rgb24").astype(np.float64)

    def psnr(encoder: Vp8Encoder) -> float:
        last = decode_all([encoder.encode(f)[0] for f in frames])[-1].to_ndarray(format="rgb24")
        mse = float(((last.astype(np.float64) - source) ** 2).mean())
        return 10 * np.log10(255**2 / max(mse, 1e-9))

    ours, stock = psnr(TrackVp8Encoder(DOCUMENT)), psnr(Vp8Encoder())
    assert ours >= stock, (ours, stock)


def test_bitrate_follows_the_profile_range_without_a_key_frame_per_step() -> None:
    """Receiver estimates are clamped to the profile's range; small steps keep the encoder (no new key frame),
    a large one recreates it at the new rate."""
    encoder = TrackVp8Encoder(DOCUMENT)
    frames = page_frames(4, size=(640, 360))  # small: no half-size first frame
    encoder.encode(frames[0])
    encoder.target_bitrate = 10_000_000
    assert encoder.target_bitrate == DOCUMENT.max_bitrate
    encoder.target_bitrate = 10_000
    assert encoder.target_bitrate == DOCUMENT.min_bitrate
    encoder.target_bitrate = int(DOCUMENT.start_bitrate * 1.3)  # +30 %: aiortc would start a new encoder
    encoder.encode(frames[1])
    assert encoder.stats.recreated == 0
    encoder.target_bitrate = DOCUMENT.start_bitrate * 3
    encoder.encode(frames[2])
    assert encoder.stats.recreated == 1 and encoder.codec is not None
    assert encoder.codec.bit_rate == DOCUMENT.start_bitrate * 3


def test_frame_tags_survive_other_frames_being_freed() -> None:
    """Each frame keeps its profile when frames tagged before it are freed (PyAV drops a shared opaque object)."""
    a, b = page_frames(2, size=(320, 180))
    del a
    gc.collect()
    assert frame_profile(b) is DOCUMENT
    assert profile_for("document_camera") is DOCUMENT and profile_for("camera") is CAMERA


async def test_sources_tag_their_frames_with_their_role() -> None:
    """A document camera's frames carry the document profile, a camera's the camera profile."""
    for name, source_spec, profile in (
        ("document_camera", "synthetic:document", DOCUMENT),
        ("camera", "synthetic:camera", CAMERA),
    ):
        async with open_video_source(CameraConfig(source_spec, 320, 180, 15), name=name) as source:
            frame = await asyncio.wait_for(source.track().recv(), 5)
            assert isinstance(frame, VideoFrame) and frame_profile(frame) is profile


def test_no_vaapi_here_means_libvpx_with_the_reason() -> None:
    """On this machine (no GPU, PyAV wheels without VAAPI) the run-time choice is libvpx, and it says why."""
    backend = choose_vp8_backend(refresh=True)
    assert backend.codec == "libvpx" and not backend.hardware
    assert "vaapi" in backend.why.lower() or "render node" in backend.why


def test_vaapi_that_fails_to_open_falls_back_to_libvpx() -> None:
    """A PC that seems to have VAAPI but whose encoder does not open (here: the real open, which fails) gets libvpx."""
    backend = choose_vp8_backend(probe=lambda: ("/dev/dri/renderD128", ""), refresh=True)
    assert backend.codec == "libvpx" and "failed to open" in backend.why
    choose_vp8_backend(refresh=True)


def test_encoder_falls_back_when_the_hardware_encoder_fails_mid_call() -> None:
    """An encoder handed a VAAPI backend that cannot open encodes with libvpx instead, and the frames decode."""
    encoder = TrackVp8Encoder(CAMERA, EncoderBackend("vp8_vaapi", "/dev/dri/renderD128", "VAAPI"))
    frames = page_frames(2, size=(640, 360), profile=CAMERA)
    sent = [encoder.encode(f)[0] for f in frames]
    assert encoder.backend.codec == "libvpx" and not encoder.backend.hardware
    assert [(f.width, f.height) for f in decode_all(sent)] == [(640, 360), (640, 360)]


def test_vaapi_probe_reports_what_is_missing(tmp_path: Path) -> None:
    """The probe names the missing piece (no encoder in PyAV's FFmpeg here; no render node on a PC without GPU)."""
    device, why = encoders._vaapi_probe(render_nodes=[])
    assert device is None and why
    if "vp8_vaapi" in av.codecs_available:  # a PyAV built with VAAPI: then the node is what is missing
        assert "render node" in why


def test_senders_get_track_encoders_for_vp8_only() -> None:
    """After use_track_encoders aiortc's senders build TrackVp8Encoder for VP8 and aiortc's own for the rest."""
    use_track_encoders()
    use_track_encoders()  # idempotent
    get = aiortc.rtcrtpsender.get_encoder
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=99)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)
    assert isinstance(get(vp8), TrackVp8Encoder)
    assert isinstance(get(h264), H264Encoder)
    assert type(get(opus)) is type(aiortc_get_encoder(opus))


@pytest.mark.parametrize("size", [(1920, 1080)])
def test_half_size_first_document_frame_keeps_a_readable_stamp(size: tuple[int, int]) -> None:
    """The stamp of the small first document frame still reads (glass-to-glass counts it)."""
    from kiosk.video.stamp import draw_frame_stamp

    rgb = np.array(render_document_page(*size))
    draw_frame_stamp(rgb, 41, 1_700_000_000_123)
    frame = tag_frame(rgb_to_yuv420p(rgb), DOCUMENT)
    frame.pts, frame.time_base = 0, Fraction(1, 90000)
    decoded = decode_all([TrackVp8Encoder(DOCUMENT).encode(frame)[0]])[0]
    assert decoded.width == size[0] // 2
    assert read_frame_stamp(np.asarray(decoded.to_ndarray(format="rgb24"), dtype=np.uint8)) == (
        41,
        1_700_000_000_123,
    )
