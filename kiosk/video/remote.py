"""Tracks received in a call: one typed :class:`RemoteTrack` per member and kind, and where each one goes.

Each remote track is one small object that says which member sent it, which :class:`TrackKind` it is (``camera``,
``document`` or ``audio`` — what the offer's ``tracks`` map names it, not aiortc's ``video``/``audio``), the
aiortc track (wrapped in a :class:`CountingTrack` that counts frames and notes the first one and the picture
size) and its sink: a :class:`~kiosk.video.sink.FrameSink` the screens read, or an
:class:`~kiosk.devices.audio.AudioSink` that plays and measures the sound.

:class:`RemoteTracks` keeps them for one call session. The video sinks outlive a rebuilt peer connection (the
screens keep the sink they were given and show the new pictures without re-wiring) and are cleared whenever the
media stops, so no screen freezes on a last picture.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from common.logs import event

if TYPE_CHECKING:
    from kiosk.devices.audio import AudioSink
    from kiosk.video.sink import FrameSink

__all__ = ["CountingTrack", "RemoteTrack", "RemoteTracks", "TrackKind"]

log = logging.getLogger(__name__)


class TrackKind(enum.StrEnum):
    """What a call's track carries (the labels of the offer's ``tracks`` map)."""

    CAMERA = "camera"
    DOCUMENT = "document"
    AUDIO = "audio"


class CountingTrack(MediaStreamTrack):
    """Proxy for a remote track that counts frames and notes the first one and the picture size."""

    def __init__(self, source: MediaStreamTrack, on_first: Callable[[], None]) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._on_first: Callable[[], None] | None = on_first
        self.frames = 0
        self.width = 0
        self.height = 0
        self.first_frame_at: float | None = None

    async def recv(self) -> Any:
        frame: Any = await self._source.recv()
        self.frames += 1
        if self.kind == "video":
            self.width, self.height = frame.width, frame.height
        if self._on_first is not None:
            self.first_frame_at = time.monotonic()
            cb, self._on_first = self._on_first, None
            cb()
        return frame


@dataclass
class RemoteTrack:
    """A track received from one member, with where it goes.

    Attributes:
        member: sender's terminal id.
        kind: camera, document or audio.
        track: the received track, counting its frames.
        sink: a ``FrameSink`` (video: the latest decoded RGB frame) or an ``AudioSink`` (the speaker output, with
            ``level()`` and ``dominant_frequency()``).
        added_at: ``time.monotonic()`` when the track was negotiated.
        task: the task pulling the track into its sink, once started.
    """

    member: str
    kind: TrackKind
    track: CountingTrack
    sink: FrameSink | AudioSink
    added_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[Any] | None = None

    @property
    def label(self) -> str:
        """``camera``, ``document`` or ``audio`` as a plain string (reports, keys)."""
        return self.kind.value

    @property
    def frame_sink(self) -> FrameSink | None:
        """The video's sink (None for audio)."""
        return None if self.kind is TrackKind.AUDIO else self.sink  # type: ignore[return-value]

    @property
    def audio_sink(self) -> AudioSink | None:
        """The audio's sink (None for video)."""
        return self.sink if self.kind is TrackKind.AUDIO else None  # type: ignore[return-value]

    @property
    def frames(self) -> int:
        return self.track.frames

    @property
    def first_frame_at(self) -> float | None:
        return self.track.first_frame_at

    @property
    def resolution(self) -> tuple[int, int]:
        return self.track.width, self.track.height

    async def consume(self) -> None:
        """Pull the track into its sink until it ends (errors are logged, never raised)."""
        try:
            if self.kind is TrackKind.AUDIO:
                await self.sink.consume(self.track)  # type: ignore[union-attr]
            else:
                from kiosk.video.sink import consume_track

                await consume_track(self.track, self.sink)  # type: ignore[arg-type]
        except MediaStreamError:
            pass
        except Exception:
            event(
                log,
                "track_receive_failed",
                logging.ERROR,
                exc_info=True,
                track=self.label,
                member=self.member,
            )


class RemoteTracks:
    """The tracks one call session receives, by member and kind.

    Args:
        audio_output: spec for :func:`~kiosk.devices.audio.open_audio_sink`, one sink per remote audio track.
    """

    def __init__(self, audio_output: str = "null") -> None:
        self.audio_output = audio_output
        self._tracks: dict[tuple[str, TrackKind], RemoteTrack] = {}
        self._frame_sinks: dict[tuple[str, TrackKind], FrameSink] = {}  # survive a rebuilt peer connection

    def receive(
        self, member: str, kind: TrackKind, track: MediaStreamTrack, on_first: Callable[[], None]
    ) -> RemoteTrack:
        """A new track from ``member``: wrap it, give it its sink (the member's earlier video sink if there is one)
        and keep it; the caller starts :meth:`RemoteTrack.consume`."""
        counting = CountingTrack(track, on_first)
        sink: FrameSink | AudioSink
        if track.kind == "video":
            from kiosk.video.sink import FrameSink

            key = (member, kind)
            frame_sink = self._frame_sinks.get(key)
            if frame_sink is None:
                frame_sink = self._frame_sinks[key] = FrameSink(f"{member}/{kind.value}")
            sink = frame_sink
        else:
            from kiosk.devices.audio import open_audio_sink

            sink = open_audio_sink(self.audio_output)
        remote = RemoteTrack(member=member, kind=kind, track=counting, sink=sink)
        self._tracks[(member, kind)] = remote
        return remote

    def get(self, member: str, kind: str) -> RemoteTrack | None:
        """The ``kind`` track from ``member``, if any."""
        return self._tracks.get((member, TrackKind(kind))) if kind in _KINDS else None

    def of(self, member: str | None = None) -> list[RemoteTrack]:
        """Tracks received so far (from one member, or from everyone)."""
        return [t for (m, _), t in self._tracks.items() if member is None or m == member]

    def drop(self, member: str, *, keep_sinks: bool) -> None:
        """The peer connection to ``member`` is closing: stop its tracks, close its audio and clear its pictures
        (kept as empty sinks when ``keep_sinks``: the connection is being rebuilt)."""
        for key in [k for k in self._tracks if k[0] == member]:
            remote = self._tracks.pop(key)
            if remote.task is not None:
                remote.task.cancel()
            if remote.frame_sink is not None:
                remote.frame_sink.clear()  # screens show "no picture", never a frozen last frame
                if not keep_sinks:
                    self._frame_sinks.pop(key, None)
            if remote.audio_sink is not None:
                remote.audio_sink.close()

    def clear_pictures(self, member: str) -> None:
        """Media from ``member`` stopped: a calm "reconnecting" instead of a frozen picture."""
        for (m, _), sink in self._frame_sinks.items():
            if m == member:
                sink.clear()

    def forget(self, member: str) -> None:
        """``member`` left the call: clear and drop the sinks kept for it."""
        for key in [k for k in self._frame_sinks if k[0] == member]:
            self._frame_sinks.pop(key).clear()

    def clear(self) -> None:
        """The call ended: clear and drop every kept sink."""
        for sink in self._frame_sinks.values():
            sink.clear()
        self._frame_sinks.clear()


_KINDS = frozenset(k.value for k in TrackKind)
