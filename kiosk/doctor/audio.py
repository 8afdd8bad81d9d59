"""The audio family: the microphone opens and hears something; the speaker opens."""

from __future__ import annotations

import asyncio
import contextlib
import time

from kiosk.config import AudioConfig
from kiosk.doctor.report import CheckResult

__all__ = ["MIC_MIN_LEVEL", "check_audio", "microphone_result"]

MIC_MIN_LEVEL = 0.0003  # RMS of full scale (about -70 dBFS): below this a real microphone hears nothing


def microphone_result(
    name: str, kind: str, level: float, freq: float | None, samples: int, seconds: float
) -> CheckResult:
    """Judge what a microphone delivered in ``seconds``: its level (0..1 of full scale) and strongest frequency."""
    detail = f"{name}: level {level:.4f} of full scale"
    if freq:
        detail += f", strongest {freq:.0f} Hz"
    if kind == "silence":
        return CheckResult("microphone", True, f"{name}: sends silence by design (no microphone)")
    if level >= MIC_MIN_LEVEL or kind == "tone":
        return CheckResult("microphone", True, detail)
    if samples == 0:
        return CheckResult(
            "microphone",
            False,
            f"{name}: no audio arrived in {seconds:g} s",
            "the microphone opened but sends nothing: replug it and check "
            "`arecord -D DEVICE -d 2 /tmp/t.wav`",
        )
    return CheckResult(
        "microphone",
        False,
        detail + " (silent)",
        "the microphone hears nothing: unmute it and raise its capture level (`alsamixer`, F4), "
        "check the cable, and speak while the doctor runs",
    )


async def check_audio(cfg: AudioConfig, *, seconds: float = 0.5) -> list[CheckResult]:
    """The microphone opens and hears something; the speaker opens."""
    from kiosk.devices.audio import AudioError, open_audio_sink, open_audio_source, parse_audio_input

    results: list[CheckResult] = []
    try:
        spec = parse_audio_input(cfg.input)
        source = open_audio_source(cfg)
    except AudioError as err:
        results.append(
            CheckResult(
                "microphone",
                False,
                str(err),
                "fix [audio] input: synthetic:tone, synthetic:silence or an ALSA device such as "
                "alsa:default or plughw:CARD=Device,DEV=0 (`arecord -L` lists them)",
            )
        )
    else:
        if source.status != "ok":
            source.close()
            results.append(
                CheckResult(
                    "microphone",
                    False,
                    source.status,
                    f"the microphone {spec.device!r} cannot be opened: check it is plugged in, pick a name from "
                    "'audio devices' or `arecord -L` for [audio] input, and make sure this user is in group audio",
                )
            )
        else:
            sink = open_audio_sink("null")
            task = asyncio.get_running_loop().create_task(sink.consume(source.track()))
            deadline = time.monotonic() + seconds + 2.0
            try:
                while sink.received_samples < seconds * sink.sample_rate and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                level = sink.level(seconds)
                freq = sink.dominant_frequency(seconds)
            finally:
                sink.close()
                source.close()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            results.append(
                microphone_result(cfg.input, spec.kind, level, freq, sink.received_samples, seconds)
            )
    try:
        sink = open_audio_sink(cfg.output)
    except AudioError as err:
        results.append(
            CheckResult(
                "speaker",
                False,
                str(err),
                "fix [audio] output: null or an ALSA device such as alsa:default (`aplay -L` lists them)",
            )
        )
        return results
    try:
        if sink.status != "ok":
            results.append(
                CheckResult(
                    "speaker",
                    False,
                    sink.status,
                    f"the speaker {cfg.output!r} cannot be opened: check it is plugged in and "
                    "pick a name from 'audio devices' or `aplay -L` for [audio] output",
                )
            )
        elif cfg.output == "null":
            results.append(
                CheckResult("speaker", True, "null: call audio is discarded (no speaker configured)")
            )
        else:
            results.append(CheckResult("speaker", True, f"{cfg.output}: opened"))
    finally:
        sink.close()
    return results
