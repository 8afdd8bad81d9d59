"""Audio edge: microphone in, speaker out, synthetic sources and measuring sinks.

Spec strings (``[audio] input`` / ``[audio] output`` in the terminal config):

=======================  ===============================================================================
input
``synthetic:tone``       a sine at ``tone_hz`` (tests, demo, "can you hear me" checks)
``synthetic:silence``    digital silence
``alsa:NAME`` or ``NAME``  an ALSA capture PCM: ``default``, ``pulse``, ``hw:1,0``, ``plughw:CARD=Speaker``
output
``null``                 discard (still measures the level)
``recorder``             keep the received samples in memory (tests, call-test, benchmarks)
``alsa:NAME`` or ``NAME``  an ALSA playback PCM, as above
=======================  ===============================================================================

Real devices go through FFmpeg's ALSA support bundled in PyAV (no extra system library; PyAV's
FFmpeg has no PulseAudio module, but ALSA's ``default``/``pulse`` PCMs reach PulseAudio/PipeWire,
including an echo-cancelled source: see docs/devices.md). This path is kept thin because no sound
card exists where the tests run: a device that cannot be opened logs one line, reports
``status = "unavailable: ..."`` and is replaced by silence (input) or a null sink (output), so a
call still goes ahead with pictures.

Everything here is 48 kHz: what Opus and aiortc use.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt
from aiortc.contrib.media import MediaPlayer, MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from common.logs import event
from kiosk.config import AudioConfig

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "AudioSink",
    "AudioSource",
    "AudioSpec",
    "AudioSpecError",
    "DeviceSink",
    "NullSink",
    "Recorder",
    "SilenceTrack",
    "ToneTrack",
    "dominant_frequency",
    "open_audio_sink",
    "open_audio_source",
    "parse_audio_input",
    "parse_audio_output",
    "rms_level",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, Opus's frame
TONE_AMPLITUDE = 0.25  # of full scale: a clear tone, far from clipping
Samples = npt.NDArray[np.float32]


class AudioError(Exception):
    """An audio device could not be opened or used; the message names the spec and the config key."""


class AudioSpecError(AudioError, ValueError):
    """An audio spec string is malformed (a configuration error)."""


# ---------------------------------------------------------------------------------------------------
# Pure measurements


def rms_level(samples: npt.ArrayLike) -> float:
    """Root-mean-square level of samples in full-scale units (a full-scale sine is 0.707); 0.0 if empty."""
    data = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(data * data))) if data.size else 0.0


def dominant_frequency(samples: npt.ArrayLike, sample_rate: float) -> float:
    """Frequency in Hz of the strongest component of a signal, 0.0 for silence.

    Hann-windowed FFT; the peak bin is refined by a parabola through the log magnitudes of the bin
    and its neighbours, which gets within a fraction of a bin (half a second at 48 kHz: ±0.5 Hz).

    Raises:
        ValueError: fewer than 4 samples, or a sample rate that is not positive.
    """
    data = np.asarray(samples, dtype=np.float64).reshape(-1)
    if data.size < 4:
        raise ValueError(f"dominant_frequency: need at least 4 samples, got {data.size}")
    if sample_rate <= 0:
        raise ValueError(f"dominant_frequency: sample rate must be positive, got {sample_rate}")
    data = data - data.mean()
    spectrum = np.abs(np.fft.rfft(data * np.hanning(data.size)))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    if spectrum[peak] <= 1e-12:
        return 0.0
    offset = 0.0
    if 0 < peak < spectrum.size - 1:
        a, b, c = np.log(spectrum[peak - 1 : peak + 2] + 1e-20)
        denominator = a - 2 * b + c
        offset = 0.5 * (a - c) / denominator if denominator != 0 else 0.0
    return float((peak + offset) * sample_rate / data.size)


# ---------------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class AudioSpec:
    """A parsed audio spec: ``kind`` is tone/silence/alsa (inputs) or null/recorder/alsa (outputs)."""

    kind: Literal["tone", "silence", "alsa", "null", "recorder"]
    device: str
    text: str


def _alsa_name(text: str) -> str:
    return text.removeprefix("alsa:")


def parse_audio_input(spec: str) -> AudioSpec:
    """Parse ``[audio] input``. Raises AudioSpecError."""
    text = spec.strip()
    if text in ("synthetic:tone", "synthetic:silence"):
        return AudioSpec("tone" if text.endswith("tone") else "silence", "", text)
    if text.startswith("synthetic:"):
        raise AudioSpecError(f"[audio] input {spec!r}: expected synthetic:tone or synthetic:silence")
    if text.startswith("pulse:"):
        raise AudioSpecError(
            f"[audio] input {spec!r}: this build has no direct PulseAudio input; use alsa:pulse "
            "or alsa:default (routed to PulseAudio/PipeWire), see docs/devices.md"
        )
    if not _alsa_name(text):
        raise AudioSpecError(
            f"[audio] input {spec!r}: expected synthetic:tone, synthetic:silence or an "
            "ALSA device (alsa:default, hw:1,0)"
        )
    return AudioSpec("alsa", _alsa_name(text), text)


def parse_audio_output(spec: str) -> AudioSpec:
    """Parse ``[audio] output`` (or a sink spec). Raises AudioSpecError."""
    text = spec.strip()
    if text in ("null", "recorder"):
        return AudioSpec("null" if text == "null" else "recorder", "", text)
    if text.startswith(("synthetic:", "pulse:")) or not _alsa_name(text):
        raise AudioSpecError(
            f"[audio] output {spec!r}: expected null, recorder or an ALSA device "
            "(alsa:default, alsa:pulse, hw:1,0)"
        )
    return AudioSpec("alsa", _alsa_name(text), text)


# ---------------------------------------------------------------------------------------------------
# Synthetic source tracks


class _PacedAudioTrack(MediaStreamTrack):
    """48 kHz mono s16 frames of 20 ms, released in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._samples_sent = 0

    def _next_samples(self, count: int) -> npt.NDArray[np.int16]:
        raise NotImplementedError

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            # Real-time pacing of a generated stream: release each frame when its time has come.
            wait = self._start + self._samples_sent / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        data = self._next_samples(FRAME_SAMPLES)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._samples_sent
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._samples_sent += FRAME_SAMPLES
        return frame


class ToneTrack(_PacedAudioTrack):
    """A continuous sine at ``frequency`` Hz, ``amplitude`` of full scale."""

    def __init__(self, frequency: float, amplitude: float = TONE_AMPLITUDE) -> None:
        super().__init__()
        if not 0 < frequency < SAMPLE_RATE / 2:
            raise ValueError(f"tone frequency must be between 0 and {SAMPLE_RATE // 2} Hz, got {frequency}")
        self.frequency = frequency
        self.amplitude = amplitude

    def _next_samples(self, count: int) -> npt.NDArray[np.int16]:
        n = np.arange(self._samples_sent, self._samples_sent + count, dtype=np.float64)
        wave = self.amplitude * np.sin(2 * math.pi * self.frequency * n / SAMPLE_RATE)
        return np.round(wave * 32767).astype(np.int16)


class SilenceTrack(_PacedAudioTrack):
    """Digital silence."""

    def _next_samples(self, count: int) -> npt.NDArray[np.int16]:
        return np.zeros(count, dtype=np.int16)


# ---------------------------------------------------------------------------------------------------
# Real devices

_SYSTEM_ALSA_DIR = "/usr/share/alsa"


def _use_system_alsa_config() -> None:
    """Point PyAV's bundled alsa-lib at the system's ALSA configuration.

    The alsa-lib inside the PyAV wheel looks for its configuration under its build prefix
    (``/tmp/vendor/share/alsa``), so without this even ``default`` is an "Unknown PCM". An explicit
    ALSA_CONFIG_DIR/ALSA_CONFIG_PATH in the environment wins.
    """
    if os.path.exists(os.path.join(_SYSTEM_ALSA_DIR, "alsa.conf")):
        os.environ.setdefault("ALSA_CONFIG_DIR", _SYSTEM_ALSA_DIR)
        os.environ.setdefault("ALSA_CONFIG_PATH", os.path.join(_SYSTEM_ALSA_DIR, "alsa.conf"))


# ---------------------------------------------------------------------------------------------------
# AudioSource


class AudioSource:
    """The microphone (or a synthetic source), shared through a MediaRelay.

    Use :func:`open_audio_source`. Subscribers are buffered (audio must not drop samples); each
    peer connection takes its own :meth:`track`.
    """

    def __init__(
        self,
        spec: AudioSpec,
        track: MediaStreamTrack,
        *,
        status: str = "ok",
        player: MediaPlayer | None = None,
    ) -> None:
        self.spec = spec
        self.status = status
        self._source_track = track
        self._player = player
        self._relay = MediaRelay()
        self._closed = False

    def track(self) -> MediaStreamTrack:
        """A new subscriber track (one per peer connection)."""
        if self._closed:
            raise AudioError(f"audio input {self.spec.text!r}: track() after close()")
        return self._relay.subscribe(self._source_track, buffered=True)

    def close(self) -> None:
        """End every subscriber track and release the device."""
        if not self._closed:
            self._closed = True
            self._source_track.stop()

    def __enter__(self) -> AudioSource:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_audio_source(cfg: AudioConfig) -> AudioSource:
    """Open ``cfg.input``: a synthetic source or an ALSA capture device.

    A device that cannot be opened does not raise: the source reports ``unavailable: <reason>`` and
    sends silence.

    Raises:
        AudioSpecError: ``cfg.input`` is not a valid spec.
    """
    spec = parse_audio_input(cfg.input)
    if spec.kind == "tone":
        return AudioSource(spec, ToneTrack(cfg.tone_hz))
    if spec.kind == "silence":
        return AudioSource(spec, SilenceTrack())
    _use_system_alsa_config()
    try:
        player = MediaPlayer(
            spec.device, format="alsa", options={"sample_rate": str(SAMPLE_RATE), "channels": "1"}
        )
    except (av.FFmpegError, OSError) as err:
        reason = f"cannot open ALSA capture device {spec.device!r} ([audio] input = {cfg.input!r}): {err}"
        event(log, "microphone_unavailable", level=logging.WARNING, reason=reason, action="sending silence")
        return AudioSource(spec, SilenceTrack(), status=f"unavailable: {reason}")
    if player.audio is None:
        reason = f"ALSA device {spec.device!r} ([audio] input) delivers no audio stream"
        event(log, "microphone_unavailable", level=logging.WARNING, reason=reason, action="sending silence")
        return AudioSource(spec, SilenceTrack(), status=f"unavailable: {reason}")
    event(log, "microphone_open", device=spec.device)
    return AudioSource(spec, player.audio, player=player)


# ---------------------------------------------------------------------------------------------------
# Sinks


class AudioSink:
    """Consumes an audio track and keeps the last ``keep_seconds`` of it (mono, 48 kHz) for measuring.

    Subclasses decide what else happens to the sound (:class:`NullSink`, :class:`Recorder`,
    :class:`DeviceSink`). ``level()`` and ``dominant_frequency()`` measure the most recent audio.
    """

    def __init__(self, spec: AudioSpec, *, keep_seconds: float = 1.0, status: str = "ok") -> None:
        self.spec = spec
        self.status = status
        self.sample_rate = SAMPLE_RATE
        self._keep = max(1, int(keep_seconds * SAMPLE_RATE))
        self._chunks: deque[Samples] = deque()
        self._held = 0
        self._received = 0
        self._lock = threading.Lock()
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._closed = False

    async def consume(self, track: MediaStreamTrack) -> None:
        """Pull frames from ``track`` until it ends (or the sink is closed)."""
        while not self._closed:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                raise AudioError(
                    f"audio sink {self.spec.text!r}: expected audio frames, got {type(frame).__name__}"
                )
            await self._write(frame)

    async def _write(self, frame: av.AudioFrame) -> None:
        self._keep_samples(self._to_mono(frame))

    def _to_mono(self, frame: av.AudioFrame) -> Samples:
        chunks = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(np.float32)

    def _keep_samples(self, samples: Samples) -> None:
        with self._lock:
            self._chunks.append(samples)
            self._held += samples.size
            self._received += samples.size
            while self._chunks and self._held - self._chunks[0].size >= self._keep:
                self._held -= self._chunks.popleft().size

    @property
    def received_samples(self) -> int:
        """How many samples (per channel, 48 kHz) have arrived since the sink was opened."""
        with self._lock:
            return self._received

    def samples(self, seconds: float | None = None) -> Samples:
        """The kept samples (all, or the last ``seconds``), mono float32 in -1..1."""
        with self._lock:
            data = np.concatenate(list(self._chunks)) if self._chunks else np.zeros(0, dtype=np.float32)
        if seconds is not None:
            data = data[-max(1, int(seconds * self.sample_rate)) :]
        return data

    def level(self, seconds: float = 0.5) -> float:
        """RMS level of the last ``seconds`` in full-scale units (0.0 when nothing arrived)."""
        return rms_level(self.samples(seconds))

    def dominant_frequency(self, seconds: float = 1.0) -> float | None:
        """Strongest frequency in Hz over the last ``seconds``; None before enough audio arrived."""
        data = self.samples(seconds)
        return dominant_frequency(data, self.sample_rate) if data.size >= 4 else None

    def close(self) -> None:
        """Stop consuming (the running :meth:`consume` returns after its current frame)."""
        self._closed = True

    def __enter__(self) -> AudioSink:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class NullSink(AudioSink):
    """Discards audio; keeps the last second for the level meter."""


class Recorder(AudioSink):
    """Keeps what it receives (up to ``max_seconds``) for checks and benchmarks."""

    def __init__(self, spec: AudioSpec | None = None, *, max_seconds: float = 120.0) -> None:
        super().__init__(spec or AudioSpec("recorder", "", "recorder"), keep_seconds=max_seconds)

    @property
    def duration(self) -> float:
        """Seconds of audio kept."""
        with self._lock:
            return self._held / self.sample_rate


class DeviceSink(AudioSink):
    """Plays audio on an ALSA playback device; writes happen in a worker thread, never on the loop."""

    def __init__(self, spec: AudioSpec) -> None:
        super().__init__(spec)
        _use_system_alsa_config()
        try:
            self._container: Any = av.open(spec.device, mode="w", format="alsa")
            self._stream: Any = self._container.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
            self._container.start_encoding()  # opens the PCM now, so a missing device shows at once
        except (av.FFmpegError, OSError, ValueError) as err:
            raise AudioError(
                f"cannot open ALSA playback device {spec.device!r} ([audio] output = {spec.text!r}): {err}"
            ) from err
        self._write_lock = threading.Lock()

    async def _write(self, frame: av.AudioFrame) -> None:
        samples = self._to_mono(frame)
        self._keep_samples(samples)
        if samples.size:
            await asyncio.to_thread(self._play, samples)

    def _play(self, samples: Samples) -> None:
        pcm = np.round(samples * 32767).astype(np.int16).reshape(1, -1)
        out = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        out.sample_rate = SAMPLE_RATE
        with self._write_lock:
            if self._container is None:
                return
            for packet in self._stream.encode(out):
                self._container.mux(packet)

    def close(self) -> None:
        super().close()
        with self._write_lock:
            if self._container is not None:
                try:
                    self._container.close()
                finally:
                    self._container = None


def open_audio_sink(spec: str) -> AudioSink:
    """Open a sink: ``null``, ``recorder`` or an ALSA playback device (see the module docstring).

    A device that cannot be opened does not raise: it is replaced by a :class:`NullSink` whose
    ``status`` is ``unavailable: <reason>``.

    Raises:
        AudioSpecError: the spec is not valid.
    """
    parsed = parse_audio_output(spec)
    if parsed.kind == "null":
        return NullSink(parsed)
    if parsed.kind == "recorder":
        return Recorder(parsed)
    try:
        sink = DeviceSink(parsed)
    except AudioError as err:
        event(log, "speaker_unavailable", level=logging.WARNING, reason=str(err), action="discarding audio")
        return NullSink(parsed, status=f"unavailable: {err}")
    event(log, "speaker_open", device=parsed.device)
    return sink
