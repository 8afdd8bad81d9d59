"""A gentle ring tone, generated (no sound file to ship), played in a loop through Kivy's audio.

The tone is a soft two-note chime with long pauses, calm rather than alarming. When the machine has no
audio output (SDL's dummy driver, no provider), :class:`RingTone` still tracks ``playing`` so the UI and
tests see the intent, and logs that nothing is audible.
"""

from __future__ import annotations

import logging
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

from common.logs import event

__all__ = ["RingTone", "chime_samples", "write_wav"]

log = logging.getLogger(__name__)

RATE = 22050


def chime_samples(rate: int = RATE) -> np.ndarray:
    """One ring period (int16 mono): two soft notes (E5, C5) with decay, then silence; 3 s long."""

    def note(freq: float, seconds: float) -> np.ndarray:
        t = np.arange(int(rate * seconds)) / rate
        env = np.exp(-3.0 * t) * np.minimum(1.0, t * 200)  # quick fade-in, slow decay: no clicks
        return 0.25 * env * (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t))

    signal = np.concatenate([note(659.25, 0.6), note(523.25, 0.9), np.zeros(int(rate * 1.5))])
    return (np.clip(signal, -1, 1) * 32767).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Write mono int16 samples to a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


class RingTone:
    """Loops the chime while :meth:`play` is in effect; ``enabled=False`` keeps it silent (config)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.playing = False
        self._sound: Any = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def _load(self) -> Any:
        if self._sound is None and self.enabled:
            try:
                from kivy.core.audio import SoundLoader

                self._dir = tempfile.TemporaryDirectory(prefix="ring-")
                path = write_wav(Path(self._dir.name) / "ring.wav", chime_samples())
                self._sound = SoundLoader.load(str(path))
                if self._sound is not None:
                    self._sound.loop = True
                    self._sound.volume = 0.6
                else:
                    event(log, "ring_tone_silent", logging.WARNING, problem="no audio provider")
            except Exception as err:  # no audio device must never stop a call
                event(log, "ring_tone_silent", logging.WARNING, problem=err)
        return self._sound

    def play(self) -> None:
        self.playing = True
        sound = self._load()
        if sound is not None:
            sound.play()

    def stop(self) -> None:
        self.playing = False
        if self._sound is not None:
            self._sound.stop()

    def close(self) -> None:
        self.stop()
        if self._sound is not None:
            self._sound.unload()
            self._sound = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
