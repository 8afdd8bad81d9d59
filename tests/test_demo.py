"""The all-in-one demo, headless: a scripted call through the real relay, lamp and media, end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from kiosk.config import load_terminal_config
from kiosk.demo import with_cameras

ROOT = Path(__file__).resolve().parent.parent


def test_headless_demo_completes_a_call_with_frames_both_ways() -> None:
    """`kiosk demo --headless` runs the whole scene (lamp, answer, invite, still, hang-up) and says it completed."""
    proc = subprocess.run(
        [sys.executable, "-m", "kiosk", "demo", "--headless", "--small", "--hold", "0.5", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    steps = {s["what"]: s for s in summary["steps"]}
    assert summary["ok"] and all(s["ok"] for s in summary["steps"])
    both = steps["frames both ways"]["detail"]
    got = [int(w) for w in re.findall(r"got (\d+)", both)]
    assert len(got) == 2 and min(got) > 0, both
    assert any(w.startswith("lamp channel 1 lit") for w in steps)
    assert "sha256 verified" in steps["station 1 received a full-resolution still"]["detail"]
    assert "demo completed" in proc.stdout


def test_demo_uses_the_users_cameras_when_given() -> None:
    """--camera and --document-camera replace the synthetic sources of the counter."""
    cfg = load_terminal_config(ROOT / "config" / "counter.toml", "counter")
    swapped = with_cameras(cfg, "/dev/video0", "/dev/v4l/by-id/usb-doc-cam-video-index0")
    assert swapped.media is not None and swapped.media.camera is not None
    assert swapped.media.camera.source == "/dev/video0"
    assert swapped.media.document_camera is not None
    assert swapped.media.document_camera.source == "/dev/v4l/by-id/usb-doc-cam-video-index0"
    assert swapped.media.document_camera.width == 1920
