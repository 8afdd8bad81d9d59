"""``kiosk call-test``: place a real call as a counter terminal, without a UI, and report what happened.

For installation and troubleshooting: it uses the counter's own config (relay, token, cameras,
audio, ICE addresses), calls a department, waits for a station to answer, holds the call, hangs up
and prints how long each step took and what media arrived::

    kiosk call-test --config config/counter.toml --department juumin --seconds 5 [--json] [--url URL]

Exit status: 0 when the call was answered, connected, media arrived from the station and every source this
counter is configured with (camera, document camera, microphone) delivered; 1 when not (the report says why,
and ``problems`` names each missing thing); 2 for a bad config or command line.

A relay link problem ends the test within moments of the link saying so: a refused token and an unreachable
relay are reported apart (:func:`kiosk.cli.link_problem`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from common.messages import ServerMessage
from kiosk.cli import CameraOverrides, add_camera_arguments, link_problem, unknown_id
from kiosk.client import LINK_UP, RelayClient
from kiosk.config import ConfigError, TerminalConfig, load_terminal_config
from kiosk.video.ice import IceConfigError, restrict_ice_addresses
from kiosk.video.local_media import LocalMedia, open_local_media
from kiosk.video.session import CallSession, EventKind, SessionState
from kiosk.video.turnprobe import IcePathBook

__all__ = ["CallTestReport", "TrackReport", "main", "run_call_test"]

log = logging.getLogger(__name__)


@dataclass
class TrackReport:
    """What arrived on one remote track while the call was held."""

    member: str
    track: str
    first_frame_s: float | None  # seconds from 'answered' to the first decoded frame
    frames: int
    fps: float
    width: int = 0
    height: int = 0
    audio_level: float | None = None  # RMS of the last 0.5 s, 0..1 (audio only)
    audio_frequency_hz: float | None = None  # strongest frequency (audio only)


@dataclass
class CallTestReport:
    """The outcome of one test call (``--json`` prints it as is)."""

    terminal: str
    department: str
    url: str
    ok: bool = False
    answered: bool = False
    reason: str = ""  # why not ok, or "ok"
    answered_by: str | None = None
    call: str | None = None
    time_to_answer_s: float | None = None  # 'call' sent → 'answered'
    time_to_connected_s: float | None = None  # 'answered' → peer connection connected
    held_s: float = 0.0
    tracks: list[TrackReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The candidate pair that carried the media: {"local": host|srflx|relay, "transport": udp|tcp|tls,
    # "remote": ..., "turn": "host:port" | null, "summary": "relay/tls ↔ relay", "url": the TURN URL used}.
    path: dict[str, Any] | None = None
    turn_probes: list[dict[str, Any]] = field(
        default_factory=list
    )  # each TURN URL: ok, seconds, failure, detail
    path_failures: list[dict[str, str]] = field(default_factory=list)  # attempts that failed: url, why

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    def to_text(self) -> str:
        def s(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f} s"

        lines = [
            f"call-test {self.terminal} → {self.department} via {self.url}: {'OK' if self.ok else 'FAILED'}"
            f" ({self.reason})",
            f"  answered: {'yes by ' + str(self.answered_by) if self.answered else 'no'}"
            f"   time to answer: {s(self.time_to_answer_s)}   time to connected: {s(self.time_to_connected_s)}",
        ]
        for p in self.turn_probes:
            lines.append(
                f"  TURN {p['url']}: "
                + (f"ok in {p['seconds']:.3f} s" if p["ok"] else f"FAILED ({p['failure']}: {p['detail']})")
            )
        for f in self.path_failures:
            lines.append(f"  path tried: {f['url']}: {f['why']}")
        if self.path is not None:
            lines.append(
                f"  media path: {self.path.get('summary')}"
                + (f" via {self.path['url']}" if self.path.get("url") else "")
            )
        for t in self.tracks:
            line = f"  {t.member} {t.track:<8} first frame {s(t.first_frame_s)}  frames {t.frames}  {t.fps:.1f}/s"
            if t.width:
                line += f"  {t.width}×{t.height}"
            if t.audio_level is not None:
                hz = "-" if t.audio_frequency_hz is None else f"{t.audio_frequency_hz:.0f} Hz"
                line += f"  level {t.audio_level:.3f}  tone {hz}"
            lines.append(line)
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


async def _wait_first_frames(session: CallSession, member: str, timeout: float) -> None:
    """Until every track from ``member`` has shown a first frame, the call ends or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and session.state is SessionState.ACTIVE:
        tracks = session.remote_tracks(member)
        if tracks and all(t.first_frame_at is not None for t in tracks):
            return
        await asyncio.sleep(0.05)


def _track_reports(
    session: CallSession, start_frames: dict[tuple[str, str], int], t_answer: float, held_s: float
) -> list[TrackReport]:
    """A report per remote track: first frame after the answer, frames and rate over the hold, size or level."""
    out = []
    for rt in session.remote_tracks():
        frames = rt.frames - start_frames.get((rt.member, rt.label), 0)
        tr = TrackReport(
            member=rt.member,
            track=rt.label,
            first_frame_s=None if rt.first_frame_at is None else round(rt.first_frame_at - t_answer, 3),
            frames=rt.frames,
            fps=round(frames / held_s, 2) if held_s else 0.0,
        )
        if rt.label == "audio" and rt.audio_sink is not None:
            tr.audio_level = round(float(rt.audio_sink.level()), 4)
            hz = rt.audio_sink.dominant_frequency()
            tr.audio_frequency_hz = None if hz is None else round(float(hz), 1)
        else:
            tr.width, tr.height = rt.resolution
        out.append(tr)
    return out


def media_problems(tracks: list[TrackReport], by: str) -> list[str]:
    """What the received tracks say is wrong: nothing from the answering member, no frames, silence."""
    problems = []
    labels = {t.track for t in tracks if t.member == by}
    if "camera" not in labels and "audio" not in labels:
        problems.append(f"no media track arrived from {by}")
    for t in tracks:
        if t.frames == 0:
            problems.append(f"{t.track} from {t.member}: no frames")
        elif t.track == "audio" and not t.audio_level:
            problems.append(f"audio from {t.member}: silence (level 0)")
    return problems


async def run_call_test(
    config: TerminalConfig,
    department: str,
    *,
    seconds: float = 5.0,
    url: str | None = None,
    answer_timeout: float = 90.0,
    media_timeout: float = 15.0,
    local: LocalMedia | None = None,
) -> CallTestReport:
    """Place one call and measure it. Never raises for call problems: they go into the report.

    Args:
        config: a counter terminal config.
        department: department id to call.
        seconds: how long to hold the call once media flows.
        url: relay URL overriding ``[relay] url``.
        answer_timeout: cancel the call if nobody answers within this time.
        media_timeout: how long to wait for connection and first frames after the answer.
        local: already opened sources (default: opened from the config and closed at the end).
    """
    assert config.media is not None, "a counter config has media sections"
    relay_url = url or config.relay.url
    report = CallTestReport(terminal="?", department=department, url=relay_url)
    restrict_ice_addresses(config.media.network.ice_addresses)
    own_local = local is None
    local = local or open_local_media(config.media)
    inbox: asyncio.Queue[ServerMessage] = asyncio.Queue()
    session: CallSession | None = None

    async def on_message(msg: ServerMessage) -> None:
        if session is not None:
            await session.on_message(msg)
        inbox.put_nowait(msg)

    async def next_of(kinds: tuple[str, ...], timeout: float) -> ServerMessage | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await asyncio.wait_for(inbox.get(), left)
            except TimeoutError:
                return None
            if msg["type"] in kinds:
                return msg
        return None

    link_changed = asyncio.Event()

    def on_link(state: str, detail: str) -> None:
        link_changed.set()

    client = RelayClient.for_link(
        config.relay, url=relay_url, on_message=on_message, on_link=on_link, client_name="kiosk-call-test"
    )
    client.start()
    try:
        problem = await _wait_link(client, link_changed, relay_url, 10.0)
        if problem is not None:
            report.reason = problem
            report.problems.append(problem)
            return report
        welcome = client.welcome
        report.terminal = welcome["terminal"] if welcome else "?"
        departments = [d["id"] for d in welcome["departments"]] if welcome else []
        if department not in departments:
            report.reason = unknown_id("department", department, departments)
            report.problems.append(report.reason)
            return report
        # Every TURN URL is probed first (allocation over UDP/TCP/TLS): the report says which work and why not.
        ice_servers = welcome["ice_servers"] if welcome else []
        paths = IcePathBook(ice_servers, ca_file=config.relay.ca_file or None)
        for r in await paths.probe():
            report.turn_probes.append(
                {
                    "url": r.path.url,
                    "kind": r.path.kind,
                    "ok": r.ok,
                    "seconds": r.seconds,
                    "failure": r.failure,
                    "detail": r.detail,
                }
            )
        session = CallSession(
            report.terminal,
            "counter",
            local,
            client.send,
            ice_servers=ice_servers,
            codec=config.media.network.codec,
            audio_output=config.media.audio.output,
            paths=paths,
            reconnect_window=config.media.network.reconnect_window,
        )
        t_call = time.monotonic()
        await client.send({"type": "call", "department": department})
        msg = await next_of(("ringing", "error"), 10.0)
        if msg is None or msg["type"] != "ringing":
            report.reason = (
                f"call refused: {msg['code']}: {msg['message']}"
                if msg is not None and msg["type"] == "error"
                else "no reply to 'call' within 10 s"
            )
            return report
        report.call = msg["call"]
        msg = await next_of(("answered", "ended"), answer_timeout)
        if msg is None:
            await client.send({"type": "cancel", "call": report.call})
            report.reason = f"not answered within {answer_timeout:.0f} s (cancelled)"
            return report
        if msg["type"] != "answered":
            report.reason = f"call ended before an answer: {msg['reason'] if msg['type'] == 'ended' else '?'}"
            return report
        t_answer = time.monotonic()
        report.answered, report.answered_by = True, msg["by"]
        report.time_to_answer_s = round(t_answer - t_call, 3)
        by = msg["by"]
        try:
            await _wait_connected(session, by, media_timeout)
        except TimeoutError:
            report.path_failures = session.path_failures(by)
            report.reason = (
                f"media to {by} did not connect within {media_timeout:.0f} s "
                f"(state {session.connection_state(by)}): {_no_path_reason(report)}"
            )
            return report
        report.path = session.media_path(by)
        report.path_failures = session.path_failures(by)
        connected_at = session.connected_at(by)
        assert connected_at is not None
        report.time_to_connected_s = round(connected_at - t_answer, 3)
        await _wait_first_frames(session, by, media_timeout)
        start_frames = {(t.member, t.label): t.frames for t in session.remote_tracks()}
        t_hold = time.monotonic()
        try:
            await asyncio.wait_for(session.ended.wait(), seconds)
        except TimeoutError:
            pass
        report.held_s = round(time.monotonic() - t_hold, 3)
        report.tracks = _track_reports(session, start_frames, t_answer, report.held_s)
        if session.state is SessionState.ENDED:
            report.problems.append(f"call ended during the hold: {session.end_reason}")
        report.problems += media_problems(report.tracks, by) + local_problems(config, local)
        report.ok = not report.problems
        report.reason = "ok" if report.ok else report.problems[0]
        return report
    finally:
        if session is not None:
            if session.state is not SessionState.ENDED and report.answered:
                await session.hangup()
            await session.close()
        await client.close()
        if own_local:
            local.close()


def _no_path_reason(report: CallTestReport) -> str:
    """Why no candidate pair worked, in the technician's terms."""
    if not report.turn_probes:
        return (
            "no TURN server is configured (relay.toml [ice] turn_secret and turn_urls), and the two networks "
            "cannot reach each other directly"
        )
    working = [p["url"] for p in report.turn_probes if p["ok"]]
    if not working:
        return "no TURN URL works from here: " + "; ".join(
            f"{p['url']}: {p['failure']} ({p['detail']})" for p in report.turn_probes
        )
    return (
        f"TURN works from here ({', '.join(working)}) but no path to the station connected: check the "
        "station's network with kiosk doctor there"
    )


async def _wait_link(client: RelayClient, changed: asyncio.Event, url: str, timeout: float) -> str | None:
    """Wait until the relay welcomes us (None) or the link names a problem (its one-line description)."""
    deadline = time.monotonic() + timeout
    while client.link_state != LINK_UP or client.welcome is None:
        problem = link_problem(client.link_state, client.link_detail, url)
        if problem is not None:
            return problem
        left = deadline - time.monotonic()
        if left <= 0:
            return f"cannot reach the relay at {url}: no welcome within {timeout:g} s ({client.link_state})"
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(left, 0.5))
    return None


def local_problems(config: TerminalConfig, local: LocalMedia) -> list[str]:
    """Each configured source of this counter that is not delivering: the station got a placeholder or silence.

    A camera that never delivered (missing, busy, unplugged) would otherwise leave a report that only looks at
    what arrived from the station, and a technician would sign off a kiosk without cameras.
    """
    media = config.media
    assert media is not None
    problems = []
    for label, cfg, src in (
        ("camera", media.camera, local.camera),
        ("document camera", media.document_camera, local.document),
    ):
        if cfg is None:
            continue
        if src is None:
            problems.append(f"{label} {cfg.source}: not opened")
            continue
        status = str(getattr(src, "status", "ok"))
        if status != "ok":
            problems.append(f"{label} {cfg.source}: {status} (the station saw a placeholder)")
        elif getattr(src, "frames_captured", 1) == 0:
            problems.append(f"{label} {cfg.source}: delivered no frames")
    audio_status = str(getattr(local.audio, "status", "ok")) if local.audio is not None else "not opened"
    if audio_status != "ok":
        problems.append(f"microphone {media.audio.input}: {audio_status} (the station heard silence)")
    return problems


async def _wait_connected(session: CallSession, member: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while session.connected_at(member) is None:
        if session.state is SessionState.ENDED:
            raise TimeoutError(f"call ended ({session.end_reason}) before media connected")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no connection to {member}")
        try:
            await session.wait_event(EventKind.CONNECTION_STATE, member=member, timeout=left, past=False)
        except TimeoutError:
            continue


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kiosk call-test", description="Place a real call as this counter terminal and report on it."
    )
    p.add_argument("--config", default="config/counter.toml", help="counter terminal config (TOML)")
    p.add_argument("--department", required=True, help="department id to call, e.g. juumin")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to hold the call (default 5)")
    p.add_argument("--answer-timeout", type=float, default=90.0, help="cancel if unanswered after this (s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--url", default=None, help="relay URL, overriding [relay] url from the config")
    add_camera_arguments(p, document=True)
    p.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING)")
    return p


def main(argv: list[str]) -> int:
    """``kiosk call-test ...``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = CameraOverrides.from_args(args).apply(load_terminal_config(args.config, "counter"))
        report = asyncio.run(
            run_call_test(
                config,
                args.department,
                seconds=args.seconds,
                url=args.url,
                answer_timeout=args.answer_timeout,
            )
        )
    except (ConfigError, IceConfigError) as err:
        print(f"kiosk call-test: {err}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.to_text(), flush=True)
    return 0 if report.ok else 1
