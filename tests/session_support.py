"""Helpers for the call-session tests: small media configs, terminals on an in-process relay, stamp checks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from helpers import TOKENS

from kiosk.config import AudioConfig, CameraConfig, MediaConfig, NetworkConfig, RelayLink, TerminalConfig
from kiosk.devices.audio import AudioSink
from kiosk.headless import HeadlessCounter, HeadlessStation
from kiosk.video.events import SentStill
from kiosk.video.session import CallSession, RemoteTrack
from kiosk.video.sink import FrameSink
from kiosk.video.stamp import read_frame_stamp

# Small pictures keep the suite cheap; the stamp needs ≥ 8 px blocks to survive VP8 (width ≥ 192).
CAMERA = (240, 136)
SMALL_DOCUMENT = (320, 180)
FULL_DOCUMENT = (1920, 1080)


def media_config(
    *,
    document: tuple[int, int] | None = SMALL_DOCUMENT,
    document_fps: float = 5.0,
    tone_hz: float = 440.0,
    codec: str = "vp8",
    camera_fps: float = 15.0,
) -> MediaConfig:
    """Synthetic camera (+ document camera) and tone, ICE on 127.0.0.1 only."""
    camera = CameraConfig("synthetic:camera", CAMERA[0], CAMERA[1], camera_fps)
    doc = (
        None
        if document is None
        else CameraConfig("synthetic:document", document[0], document[1], document_fps)
    )
    return MediaConfig(
        camera,
        doc,
        AudioConfig(input="synthetic:tone", output="null", tone_hz=tone_hz),
        NetworkConfig(ice_addresses=("127.0.0.1",), codec=codec),
    )


def terminal_config(terminal: str, url: str, media: MediaConfig) -> TerminalConfig:
    """A terminal config for one of the demo terminals (its demo token), pointing at ``url``."""
    return TerminalConfig(Path(f"<test {terminal}>"), RelayLink(url, TOKENS[terminal]), media=media)


def picture(track: RemoteTrack) -> FrameSink:
    """The frame sink of a video track (fails the test for an audio track)."""
    assert track.frame_sink is not None, f"{track.member}/{track.label} is not a video track"
    return track.frame_sink


def sound(track: RemoteTrack) -> AudioSink:
    """The audio sink of an audio track (fails the test for a video track)."""
    assert track.audio_sink is not None, f"{track.member}/{track.label} is not an audio track"
    return track.audio_sink


class SentStills:
    """A ``still_sent`` observer attached from a test: keeps its own copy of every still the session sent, and the
    session's array itself to check that the session zeroed it."""

    def __init__(self, session: CallSession) -> None:
        self.copies: list[SentStill] = []
        self.originals: list[np.ndarray] = []
        self.unsubscribe = session.hooks.still_sent.subscribe(self._seen)

    def _seen(self, sent: SentStill) -> None:
        self.originals.append(sent.frame)
        self.copies.append(replace(sent, frame=sent.frame.copy()))

    async def wait(self, timeout: float = 15.0) -> SentStill:
        """The first still sent (waiting for it if need be)."""
        deadline = time.monotonic() + timeout
        while not self.copies:
            if time.monotonic() > deadline:
                raise AssertionError(f"no still sent within {timeout} s")
            await asyncio.sleep(0.02)
        return self.copies[0]


async def wait_stamps(track: RemoteTrack, count: int = 3, timeout: float = 15.0) -> list[int]:
    """Wait until ``count`` distinct decodable frame stamps arrived on a video track; return their counters."""
    sink = track.frame_sink
    assert sink is not None, f"{track.member}/{track.label} is not a video track"
    seen: dict[int, int] = {}
    last_seq = -1
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{track.member}/{track.label}: only {len(seen)} stamped frames decoded "
                f"in {timeout} s ({track.frames} frames received)"
            )
        latest = sink.latest()
        if latest is not None and latest[0] != last_seq:
            last_seq = latest[0]
            stamp = read_frame_stamp(latest[1])
            if stamp is not None:
                seen.setdefault(stamp[0], latest[0])
        await asyncio.sleep(0.02)
    return sorted(seen)


async def wait_track(session: CallSession, member: str, label: str, timeout: float = 15.0) -> RemoteTrack:
    """Wait until ``label`` from ``member`` has delivered its first frame; return it."""
    deadline = time.monotonic() + timeout
    while True:
        t = session.remote_track(member, label)
        if t is not None and t.first_frame_at is not None:
            return t
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{session.terminal_id}: no {label} frames from {member} within {timeout} s; "
                f"tracks {[(x.member, x.label, x.frames) for x in session.remote_tracks()]}, "
                f"session {session.state.value}"
            )
        await asyncio.sleep(0.02)


async def wait_audio_tone(
    track: RemoteTrack, hz: float, timeout: float = 15.0, tolerance: float = 15.0
) -> float:
    """Wait until the received audio's dominant frequency is ``hz`` (± tolerance); return it."""
    sink = track.audio_sink
    assert sink is not None
    deadline = time.monotonic() + timeout
    found: float | None = None
    while time.monotonic() < deadline:
        if sink.received_samples >= sink.sample_rate // 2:
            found = sink.dominant_frequency(0.5)
            if found is not None and abs(found - hz) <= tolerance and sink.level() > 0.01:
                return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"audio from {track.member}: dominant frequency {found}, expected {hz} Hz")


class VideoCall(NamedTuple):
    """A call from a headless counter, answered by a headless station, with camera frames flowing both ways."""

    session: CallSession  # the counter's
    station: CallSession  # the answering station's
    from_staff: RemoteTrack  # the station's camera, at the counter
    to_staff: RemoteTrack  # the counter's camera, at the station


async def call_with_video(counter: HeadlessCounter, office: HeadlessStation, department: str) -> VideoCall:
    """Call ``department`` from ``counter`` once ``office`` (answering by itself) is up; return when each side
    has received the other's first camera frame."""
    staff = (await office.wait_up())["terminal"]
    session = await counter.call(department)
    from_staff = await wait_track(session, staff, "camera")
    assert office.session is not None
    station = office.session
    to_staff = await wait_track(station, counter.terminal, "camera")
    return VideoCall(session, station, from_staff, to_staff)
