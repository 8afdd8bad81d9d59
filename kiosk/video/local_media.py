"""The local media of one terminal: camera, document camera and microphone, opened from configuration.

A :class:`LocalMedia` is owned by the app (it runs before, during and after calls: the kiosk shows a
self-preview); a :class:`~kiosk.video.session.CallSession` borrows it and asks each source for a new
``MediaRelay`` subscriber per peer connection. Closing the session never closes the sources.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any, Protocol

import av
import numpy as np
from aiortc import MediaStreamTrack

from kiosk.config import MediaConfig

__all__ = ["AudioSourceLike", "GatedAudioTrack", "LocalMedia", "VideoSourceLike", "open_local_media"]


class VideoSourceLike(Protocol):
    """What the session needs from a video source (``kiosk.video.sources.VideoSource``)."""

    def track(self) -> MediaStreamTrack: ...

    def latest_frame(self) -> Any: ...

    def preview(self) -> Any: ...

    def set_rotation(self, degrees: int) -> None: ...

    def close(self) -> Any: ...


class AudioSourceLike(Protocol):
    """What the session needs from an audio source (``kiosk.devices.audio.AudioSource``)."""

    def track(self) -> MediaStreamTrack: ...

    def close(self) -> Any: ...


@dataclass
class LocalMedia:
    """This terminal's sources; any of them may be ``None`` (disabled in the config)."""

    camera: VideoSourceLike | None = None
    document: VideoSourceLike | None = None
    audio: AudioSourceLike | None = None

    def close(self) -> None:
        """Stop every source (their capture threads end)."""
        for src in (self.camera, self.document, self.audio):
            if src is not None:
                src.close()

    def __enter__(self) -> LocalMedia:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_local_media(media: MediaConfig, *, document: bool = True) -> LocalMedia:
    """Open the camera, document camera (counter only) and audio input named in ``[camera]`` etc.

    Args:
        media: the terminal's media configuration.
        document: open the document camera if configured (counter terminals).
    """
    from kiosk.devices.audio import open_audio_source
    from kiosk.video.sources import open_video_source

    opened = LocalMedia()
    try:
        if media.camera is not None:
            opened.camera = open_video_source(media.camera, name="camera")
        if document and media.document_camera is not None:
            opened.document = open_video_source(media.document_camera, name="document")
        opened.audio = open_audio_source(media.audio)
    except BaseException:
        opened.close()
        raise
    return opened


class GatedAudioTrack(MediaStreamTrack):
    """Passes audio frames through, or silence of the same shape while muted (microphone mute).

    The source frames may be shared with other ``MediaRelay`` subscribers, so muting builds new
    silent frames instead of zeroing the originals.
    """

    kind = "audio"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source
        self.muted = False

    async def recv(self) -> av.AudioFrame:
        frame = await self._source.recv()
        if not isinstance(frame, av.AudioFrame):
            raise TypeError(
                f"GatedAudioTrack: the microphone track produced {type(frame).__name__}, not audio"
            )
        if not self.muted:
            return frame
        silent = av.AudioFrame.from_ndarray(
            np.zeros_like(frame.to_ndarray()), format=frame.format.name, layout=frame.layout.name
        )
        silent.sample_rate = frame.sample_rate
        silent.pts = frame.pts
        silent.time_base = frame.time_base or fractions.Fraction(1, frame.sample_rate)
        return silent

    def stop(self) -> None:
        super().stop()
        self._source.stop()
