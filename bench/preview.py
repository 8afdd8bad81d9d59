"""Benchmark: what showing video costs a terminal, frames at display size against frames at full size.

Each case is one stream on one screen: a decoded remote frame (yuv420p, as aiortc's decoder hands it over) is
converted to RGB by the frame sink (``kiosk.video.sink``) and uploaded into a real Kivy texture by a
:class:`~kiosk.ui.video.VideoView` in an offscreen SDL window (Mesa llvmpipe, so the upload is CPU work here as on a
kiosk PC without a GPU driver); for the counter's own previews, the capture thread's shrink
(:class:`~kiosk.video.sink.LocalPreview`) and the upload. *Before*: the view did not tell its size, so every frame
was converted and uploaded at its decoded/captured size; *after*: at the size the view shows it.

CPU is the process's (all threads, ``time.process_time``) per frame, and as % of one core at the stream's rate.
Runs in a child process (a Kivy window of its own): ``python -m bench.preview`` prints the rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.common import ROOT, Row, Stats, ratio_at_most

WINDOW = (1280, 800)


@dataclass(frozen=True)
class PreviewCase:
    name: str
    frame: tuple[int, int]  # decoded or captured size
    view: tuple[int, int]  # the view's size on a 1280×800 screen
    fps: float
    local: bool = (
        False  # the terminal's own camera (capture thread shrinks) instead of a decoded remote frame
    )


CASES = (
    PreviewCase("station: resident's camera 1280×720@30 in the large view", (1280, 720), (1000, 600), 30.0),
    PreviewCase("station: document 1920×1080@5 in the small tile", (1920, 1080), (300, 200), 5.0),
    PreviewCase(
        "station: document 1920×1080@5 full screen (document screen)", (1920, 1080), (1280, 700), 5.0
    ),
    PreviewCase("counter: staff camera 1280×720@30 in the remote view", (1280, 720), (800, 450), 30.0),
    PreviewCase(
        "counter: own camera 1280×720, self-view (polled at 15 fps)", (1280, 720), (280, 160), 15.0, True
    ),
    PreviewCase("counter: own document 1920×1080@5, document preview", (1920, 1080), (480, 360), 5.0, True),
)


def _measure(case: PreviewCase, sized: bool, frames: int) -> tuple[float, float]:
    """CPU ms per frame for conversion (or shrink) + texture upload, and the upload's share (ms, wall clock),
    which runs on the UI thread — the thread of the event loop that also carries the call's packets;
    ``sized``: at the view's size."""
    from av.video.reformatter import VideoReformatter
    from kivy.core.window import Window

    from kiosk.ui.video import VideoView
    from kiosk.video.frames import rgb_to_yuv420p, shrunk_to
    from kiosk.video.sink import _to_rgb
    from kiosk.video.synthetic import SyntheticScene

    scene = SyntheticScene(*case.frame)
    pictures = [scene.render() for _ in range(4)]
    decoded = [rgb_to_yuv420p(p) for p in pictures]
    view = VideoView(size_hint=(None, None), size=case.view, fps=1)
    Window.add_widget(view)
    reformatter = VideoReformatter()
    box = case.view if sized else None
    try:
        for i in range(3):  # warm-up: texture created, converters set up
            view.show_frame(_to_rgb(decoded[i % 4], reformatter, box))
        started = time.process_time()
        upload = 0.0
        for i in range(frames):
            if case.local:
                rgb = shrunk_to(pictures[i % 4], box)
            else:
                rgb = _to_rgb(decoded[i % 4], reformatter, box)
            t0 = time.perf_counter()
            view.show_frame(rgb)
            upload += time.perf_counter() - t0
        spent = time.process_time() - started
    finally:
        view.stop()
        Window.remove_widget(view)
    return spent / frames * 1000.0, upload / frames * 1000.0


def child(frames: int) -> None:
    from kiosk.ui.env import configure_window, prepare_kivy_env

    prepare_kivy_env(headless=True)
    configure_window(*WINDOW)
    out = []
    for case in CASES:
        n = max(10, int(frames * case.fps / 30))
        # alternate, twice each, so a burst of load from elsewhere hits both
        full, sized = [], []
        for _ in range(3):  # alternated, so a burst of load from elsewhere hits both
            full.append(_measure(case, False, n))
            sized.append(_measure(case, True, n))
        out.append(
            {
                "case": case.name,
                "full_ms": [a for a, _ in full],
                "sized_ms": [a for a, _ in sized],
                "full_ui_ms": [b for _, b in full],
                "sized_ui_ms": [b for _, b in sized],
            }
        )
    print(json.dumps(out), flush=True)


def run(quick: bool = False, log: Any = print) -> tuple[list[Row], dict[str, Any]]:
    frames = 60 if quick else 300
    log(f"preview: {len(CASES)} streams, conversion + texture upload, full size vs display size")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.preview", "--child", str(frames)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench.preview child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    results = json.loads(lines[-1])
    rows: list[Row] = []
    for case, res in zip(CASES, results, strict=True):
        full, sized = Stats.of(res["full_ms"], 50).p50, Stats.of(res["sized_ms"], 50).p50
        ui_full, ui_sized = Stats.of(res["full_ui_ms"], 50).p50, Stats.of(res["sized_ui_ms"], 50).p50
        rows.append(
            Row(
                "preview",
                case.name,
                f"convert + upload per frame, view {case.view[0]}×{case.view[1]} (baseline: at {case.frame[0]}×"
                f"{case.frame[1]})",
                "ms CPU",
                Stats.of(res["sized_ms"], 50),
                Stats.of(res["full_ms"], 50),
                "≤ 1.0× full size",
                ratio_at_most(1.0),
                f"{sized * case.fps / 10:.1f} % of a core at {case.fps:g} fps against {full * case.fps / 10:.1f} %; "
                f"upload on the UI/event-loop thread {ui_sized:.2f} ms against {ui_full:.2f} ms",
            )
        )
    return rows, {"preview": results}


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
    else:
        from bench.common import render_rows

        rows, _ = run(quick="--quick" in sys.argv)
        print(render_rows(rows))
