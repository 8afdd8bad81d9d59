"""Audio: frequency/level measurement, synthetic sources, sinks, Opus round trip, missing devices."""

from __future__ import annotations

import asyncio
import logging
import math

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from helpers import wait_until

from kiosk.config import AudioConfig
from kiosk.devices.audio import (
    SAMPLE_RATE,
    AudioSpecError,
    NullSink,
    Recorder,
    dominant_frequency,
    open_audio_sink,
    open_audio_source,
    rms_level,
)


def sine(frequency: float, seconds: float, amplitude: float = 0.5, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * math.pi * frequency * t)


# -- pure measurements -----------------------------------------------------------------------------


@pytest.mark.parametrize("frequency", [60.0, 440.0, 1000.0, 3150.5, 12000.0])
def test_dominant_frequency_is_accurate_to_half_a_hertz(frequency: float) -> None:
    """The FFT helper finds a tone's frequency within 0.5 Hz from half a second of samples, even with noise."""
    rng = np.random.default_rng(1)
    signal = sine(frequency, 0.5) + 0.05 * rng.standard_normal(SAMPLE_RATE // 2)
    assert dominant_frequency(signal, SAMPLE_RATE) == pytest.approx(frequency, abs=0.5)


def test_dominant_frequency_picks_the_strongest_of_two_tones() -> None:
    """With a quieter second tone present, the louder one is reported."""
    signal = sine(440, 0.5, 0.5) + sine(1200, 0.5, 0.1)
    assert dominant_frequency(signal, SAMPLE_RATE) == pytest.approx(440, abs=0.5)


def test_measurements_of_silence_and_bad_input() -> None:
    """Silence measures 0 Hz and level 0; too few samples or a bad rate is a clear error."""
    assert dominant_frequency(np.zeros(4800), SAMPLE_RATE) == 0.0
    assert rms_level(np.zeros(100)) == 0.0 and rms_level([]) == 0.0
    assert rms_level(sine(440, 0.5, 0.5)) == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    with pytest.raises(ValueError, match="at least 4 samples"):
        dominant_frequency([0.1, 0.2], SAMPLE_RATE)
    with pytest.raises(ValueError, match="sample rate"):
        dominant_frequency(np.ones(10), 0)


@pytest.mark.parametrize("spec", ["synthetic:noise", "pulse:echocancel_source", "alsa:"])
def test_bad_input_spec_is_rejected_with_the_config_key(spec: str) -> None:
    """A malformed [audio] input is a configuration error that names the key and the spec."""
    with pytest.raises(AudioSpecError, match=r"\[audio\] input") as exc:
        open_audio_source(AudioConfig(input=spec))
    assert repr(spec) in str(exc.value)


def test_bad_output_spec_is_rejected() -> None:
    """A malformed [audio] output is a configuration error that lists the accepted forms."""
    with pytest.raises(AudioSpecError, match="null, recorder or an ALSA device"):
        open_audio_sink("synthetic:tone")


# -- sources and sinks -----------------------------------------------------------------------------


@pytest.mark.parametrize("tone_hz", [440.0, 1000.0])
async def test_recorder_measures_the_synthetic_tone(tone_hz: float) -> None:
    """The tone source plays tone_hz at a quarter of full scale, and the recorder measures both."""
    with open_audio_source(AudioConfig("synthetic:tone", "null", tone_hz)) as source:
        recorder = open_audio_sink("recorder")
        assert isinstance(recorder, Recorder)
        task = asyncio.create_task(recorder.consume(source.track()))
        await wait_until(lambda: recorder.received_samples >= SAMPLE_RATE // 2)
        assert recorder.dominant_frequency(0.5) == pytest.approx(tone_hz, abs=1.0)
        assert recorder.level() == pytest.approx(0.25 / math.sqrt(2), rel=0.02)
        assert recorder.duration >= 0.5
    await asyncio.wait_for(task, 5)  # closing the source ends the consumer


async def test_tone_survives_an_opus_round_trip() -> None:
    """After aiortc's Opus encoder and decoder (stereo, as received in a call) the tone is still measured right."""
    with open_audio_source(AudioConfig("synthetic:tone", "null", 697.0)) as source:
        encoder, decoder = OpusEncoder(), OpusDecoder()
        upstream = source.track()

        class OpusLoopTrack(MediaStreamTrack):
            kind = "audio"

            async def recv(self) -> av.AudioFrame:
                while True:
                    upstream_frame = await upstream.recv()
                    assert isinstance(upstream_frame, av.AudioFrame)
                    payloads, timestamp = encoder.encode(upstream_frame)
                    frames = [f for p in payloads for f in decoder.decode(JitterFrame(p, timestamp))]
                    if frames:
                        frame = frames[0]
                        assert isinstance(frame, av.AudioFrame)
                        return frame

        recorder = Recorder()
        task = asyncio.create_task(recorder.consume(OpusLoopTrack()))
        await wait_until(lambda: recorder.received_samples >= SAMPLE_RATE // 2)
        assert recorder.dominant_frequency(0.4) == pytest.approx(697.0, abs=2.0)
        # aiortc sends mono as stereo with each channel at -3 dB (FFmpeg's pan law): 0.177 becomes 0.125.
        assert recorder.level(0.4) == pytest.approx(0.25 / math.sqrt(2) / math.sqrt(2), rel=0.1)
    await asyncio.wait_for(task, 5)


async def test_silence_source_and_null_sink() -> None:
    """synthetic:silence sends zeros in real time; the null sink discards them but still reports a 0 level."""
    with open_audio_source(AudioConfig("synthetic:silence")) as source:
        sink = open_audio_sink("null")
        assert isinstance(sink, NullSink) and sink.status == "ok"
        task = asyncio.create_task(sink.consume(source.track()))
        await wait_until(lambda: sink.received_samples >= 4800)
        assert sink.level() == 0.0
        assert sink.dominant_frequency() == 0.0
        assert sink.samples().size <= SAMPLE_RATE + 960  # keeps about a second, not everything
    await asyncio.wait_for(task, 5)


async def test_audio_relay_feeds_two_subscribers_without_gaps() -> None:
    """Two peers subscribed to one microphone each receive every frame, in order, from the start."""
    with open_audio_source(AudioConfig("synthetic:tone", "null", 440.0)) as source:
        first, second = source.track(), source.track()

        async def collect(track: MediaStreamTrack) -> list[int]:
            pts = []
            for _ in range(10):
                frame = await asyncio.wait_for(track.recv(), 2)
                assert isinstance(frame, av.AudioFrame) and frame.pts is not None
                pts.append(frame.pts)
            return pts

        a, b = await asyncio.gather(collect(first), collect(second))
        assert a == b
        assert np.all(np.diff(a) == 960)


async def test_missing_microphone_sends_silence_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    """An ALSA input that cannot be opened logs one line, reports unavailable and the track sends silence."""
    caplog.set_level(logging.WARNING, logger="kiosk")
    with open_audio_source(AudioConfig(input="alsa:hw:7,0")) as source:
        assert source.status.startswith("unavailable: cannot open ALSA capture device 'hw:7,0'")
        assert "[audio] input" in source.status
        frame = await asyncio.wait_for(source.track().recv(), 2)
        assert isinstance(frame, av.AudioFrame)
        assert not np.any(frame.to_ndarray())
    assert sum("event=microphone_unavailable" in r.getMessage() for r in caplog.records) == 1


def test_missing_speaker_falls_back_to_a_null_sink() -> None:
    """An ALSA output that cannot be opened becomes a null sink whose status names the device and the key."""
    sink = open_audio_sink("alsa:hw:7,0")
    assert isinstance(sink, NullSink)
    assert sink.status.startswith("unavailable: cannot open ALSA playback device 'hw:7,0'")
    assert "[audio] output" in sink.status


async def test_closed_source_ends_consumers() -> None:
    """Closing the audio source ends every subscriber with MediaStreamError."""
    source = open_audio_source(AudioConfig("synthetic:tone"))
    track = source.track()
    await asyncio.wait_for(track.recv(), 2)
    source.close()

    async def drain() -> None:
        while True:
            await track.recv()

    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(drain(), 2)
