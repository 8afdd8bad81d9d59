"""``kiosk call-test`` and ``kiosk office --headless``: real processes, a real relay process, 127.0.0.1 only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from helpers import ROOT, RelayProcess, make_relay_config, write_relay_config
from test_sources import write_stamped_video

from kiosk.call_test import run_call_test
from kiosk.config import load_terminal_config
from relay_server.server import RelayServer

SMALL_MEDIA = {
    "width = 640": "width = 240",
    "height = 360": "height = 136",
    "fps = 15": "fps = 10",
}


def _small_config(tmp_path: Path, name: str, extra: dict[str, str] | None = None) -> Path:
    """A copy of a demo terminal config with small pictures (and a small document camera for the counter)."""
    text = (ROOT / "config" / f"{name}.toml").read_text()
    for old, new in {**SMALL_MEDIA, **(extra or {})}.items():
        assert old in text, f"{name}.toml no longer contains {old!r}"
        text = text.replace(old, new)
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """Read the process's stdout until a line starts with ``prefix``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"process exited ({proc.returncode}) before printing {prefix!r}: {err}")
    raise AssertionError(f"no {prefix!r} line within {timeout} s")


def test_camera_flags_replace_the_configured_sources_on_every_command() -> None:
    """--camera / --document-camera on counter, office (UI and headless) and call-test win over the config file."""
    from kiosk.apps.counter import build_parser as counter_parser
    from kiosk.apps.office_ui import build_parser as office_parser
    from kiosk.call_test import build_parser as call_test_parser
    from kiosk.cli import CameraOverrides
    from kiosk.headless import build_parser as headless_parser

    counter = load_terminal_config(ROOT / "config" / "counter.toml", "counter")
    office = load_terminal_config(ROOT / "config" / "office.toml", "office")
    for parser, cfg, extra in [
        (counter_parser(), counter, ["--document-camera", "file:/srv/page.avi"]),
        (call_test_parser(), counter, ["--department", "juumin", "--document-camera", "file:/srv/page.avi"]),
        (office_parser(), office, []),
        (headless_parser(), office, ["--headless"]),
    ]:
        args = parser.parse_args(["--camera", "/dev/video4", *extra])
        media = CameraOverrides.from_args(args).apply(cfg).media
        assert media is not None and media.camera is not None and media.camera.source == "/dev/video4", (
            parser.prog
        )
        assert media.camera.width == cfg.media.camera.width  # type: ignore[union-attr]  # size stays as configured
        if extra[-2:] == ["--document-camera", "file:/srv/page.avi"]:
            assert media.document_camera is not None and media.document_camera.source == "file:/srv/page.avi"
    args = office_parser().parse_args([])
    assert CameraOverrides.from_args(args).apply(office) == office, "no flag: the config file's sources"


def test_call_test_against_headless_station(tmp_path: Path) -> None:
    """call-test places a real call to a --headless --auto-answer station and reports real timings and media."""
    office_cfg = _small_config(tmp_path, "office")
    counter_cfg = _small_config(
        tmp_path, "counter", {"width = 1920": "width = 320", "height = 1080": "height = 180"}
    )
    with RelayProcess(write_relay_config(tmp_path)) as relay:
        # The station streams a video file given on the command line instead of its synthetic camera.
        clip = tmp_path / "staff.avi"
        write_stamped_video(clip, 30, size=(176, 144))
        station = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiosk",
                "office",
                "--config",
                str(office_cfg),
                "--headless",
                "--auto-answer",
                "0.3",
                "--url",
                relay.url,
                "--camera",
                f"file:{clip}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            ready = _wait_line(station, "ready:", 30)
            assert f"camera file:{clip}" in ready, ready
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "kiosk",
                    "call-test",
                    "--config",
                    str(counter_cfg),
                    "--department",
                    "juumin",
                    "--seconds",
                    "1.5",
                    "--json",
                    "--url",
                    relay.url,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=90,
            )
            assert result.returncode == 0, f"call-test failed:\n{result.stdout}\n{result.stderr}"
            report = json.loads(result.stdout)
            assert report["ok"] and report["answered"] and report["reason"] == "ok"
            assert report["answered_by"] == "office-tobetsu-1"
            assert 0.3 <= report["time_to_answer_s"] < 10
            assert 0 < report["time_to_connected_s"] < 10
            assert report["held_s"] >= 1.5
            tracks = {t["track"]: t for t in report["tracks"]}
            assert set(tracks) == {"camera", "audio"}
            assert tracks["camera"]["frames"] > 5 and tracks["camera"]["fps"] > 2
            assert (tracks["camera"]["width"], tracks["camera"]["height"]) == (240, 136), (
                "a file is scaled as configured"
            )
            assert 0 < tracks["camera"]["first_frame_s"] < 10
            assert tracks["audio"]["audio_level"] > 0.01
            assert abs(tracks["audio"]["audio_frequency_hz"] - 660) < 15  # office.toml's tone
        finally:
            station.terminate()
            try:
                assert station.wait(10) == 0, "the headless station exits cleanly on SIGTERM"
            finally:
                if station.poll() is None:
                    station.kill()
                for s in (station.stdout, station.stderr):
                    if s:
                        s.close()


async def test_call_test_reports_why_a_call_was_not_answered(tmp_path: Path) -> None:
    """With no station online the report says the call was refused as unavailable and is not ok."""
    async with RelayServer(make_relay_config()) as srv:
        cfg = load_terminal_config(
            _small_config(
                tmp_path, "counter", {"width = 1920": "width = 320", "height = 1080": "height = 180"}
            ),
            "counter",
        )
        report = await run_call_test(cfg, "juumin", seconds=1, url=srv.url)
    assert not report.ok and not report.answered
    assert report.reason.startswith("call refused: unavailable")
    assert "FAILED" in report.to_text()
