"""Benchmark 6: document legibility through the live document track and through the still path.

The counter's synthetic document camera shows the A4 form of :mod:`kiosk.video.synthetic` (1920×1080). After
the call has run a while (so the sender's bitrate has ramped up), the staff station's decoded document frame
and a still (``CallSession.request_still``, lossless over the data channel) are compared with the source page:

- character accuracy: Tesseract (``jpn+eng``, Debian's packages) on the frame upscaled 2× (the staff zoom in);
  each known line (``DOCUMENT_LINES``) is aligned with the best matching stretch of the OCR output (order
  free, whitespace ignored); accuracy = 1 − edits / characters over all lines. The same OCR of the source page
  itself is the ceiling, reported as its own row: the goals compare against it;
- SSIM (grey, 11×11 Gaussian window) of the received frame against the source page.

Settings: the document camera's frame rate and the codec (aiortc has no bitrate control; it moves between its
module constants, see PLATFORM.md). Baseline: Chromium sending the same page with ``contentHint = "text"``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Row, at_least, both, not_worse_than_base
from bench.media import MediaCase, terminal_toml
from bench.relay_rig import ServerProcess, token_of, write_config

DOC_SIZE = (1920, 1080)


# ---------------------------------------------------------------------------------------------------
# Measures


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two RGB images (grey levels, Gaussian 11×11, σ 1.5; Wang et al. 2004)."""
    import cv2

    if a.shape != b.shape:
        a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_CUBIC)
    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def ocr(rgb: np.ndarray, folder: Path, name: str) -> str:
    """Tesseract's text for an RGB frame, upscaled 2× first."""
    import cv2

    big = cv2.resize(rgb, (rgb.shape[1] * 2, rgb.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    out = subprocess.run(
        ["tesseract", str(path), "-", "-l", "jpn+eng", "--psm", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    )
    return out.stdout


def _squash(text: str) -> str:
    return "".join(text.split())


def best_substring_distance(needle: str, hay: str) -> int:
    """Edit distance between ``needle`` and the best matching substring of ``hay`` (semi-global alignment)."""
    if not needle:
        return 0
    prev = [0] * (len(hay) + 1)
    for i, ch in enumerate(needle, 1):
        cur = [i] + [0] * len(hay)
        for j, hj in enumerate(hay, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ch != hj))
        prev = cur
    return min(prev)


def character_accuracy(ocr_text: str) -> float:
    """1 − edits/characters over every known line of the form, each aligned with its best OCR stretch."""
    from kiosk.video.synthetic import DOCUMENT_TEXT

    hay = _squash(ocr_text)
    total = errors = 0
    for line in DOCUMENT_TEXT:
        needle = _squash(line)
        total += len(needle)
        errors += min(len(needle), best_substring_distance(needle, hay))
    return 100.0 * (1 - errors / total) if total else float("nan")


def score(rgb: np.ndarray, source: np.ndarray, folder: Path, name: str) -> dict[str, float]:
    return {"ocr": character_accuracy(ocr(rgb, folder, name)), "ssim": ssim(rgb, source)}


# ---------------------------------------------------------------------------------------------------
# Our side: a real call between the headless terminals, in this process


SAMPLES = 3  # decoded frames scored per case, SAMPLE_GAP s apart, ending at the hold time: one frame is noisy
SAMPLE_GAP = 1.0


async def sample_frames(grab: Any, hold: float) -> list[np.ndarray]:
    """:data:`SAMPLES` frames from ``await grab()`` (None = no frame yet), SAMPLE_GAP s apart, the last at ``hold``."""
    await asyncio.sleep(hold - SAMPLE_GAP * (SAMPLES - 1))
    frames: list[np.ndarray] = []
    for i in range(SAMPLES):
        if i:
            await asyncio.sleep(SAMPLE_GAP)
        frame = await grab()
        if frame is not None:
            frames.append(frame)
    return frames


async def through_call(case: MediaCase, hold: float, folder: Path, log: Any) -> dict[str, Any]:
    """Decoded document frames (:data:`SAMPLES` of them, the last after ``hold`` s) and a still, at the station."""
    from kiosk.config import load_terminal_config
    from kiosk.headless import HeadlessCounter, HeadlessStation

    cfg = write_config(folder, 0, 1)
    counter_id, station_id, dept = cfg.pairs[0]
    server = ServerProcess("relay", cfg.path, folder / "relay.log").start()
    try:
        (folder / "office.toml").write_text(terminal_toml("office", server.url, token_of(station_id), case))
        (folder / "counter.toml").write_text(terminal_toml("counter", server.url, token_of(counter_id), case))
        office_cfg = load_terminal_config(folder / "office.toml", "office")
        counter_cfg = load_terminal_config(folder / "counter.toml", "counter")
        async with (
            HeadlessStation(office_cfg, auto_answer=0.0) as station,
            HeadlessCounter(counter_cfg) as counter,
        ):
            await station.wait_up(30)
            await counter.wait_up(30)
            await counter.call(dept)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                s = station.session
                rt = s.remote_track(counter_id, "document") if s is not None else None
                if rt is not None and rt.first_frame_at is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError("legibility: no document frame at the station within 30 s")
            session = station.session
            assert session is not None

            async def grab() -> np.ndarray | None:
                latest = session.frame_sink(counter_id, "document").latest()
                return None if latest is None else np.array(latest[1])

            frames = await sample_frames(grab, hold)
            still = await session.request_still(counter_id, timeout=60)
            return {"frames": frames, "still": np.array(still.rgb)}
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------
# Chromium baseline


async def through_chromium(hold: float, fps: float, folder: Path, codec: str = "vp8") -> list[np.ndarray]:
    from bench.chromium import ChromiumPeers, png_to_rgb, render_assets, serve_page

    render_assets(folder, (640, 360), 1, DOC_SIZE)
    cfg = write_config(folder, 0, 1)
    counter_id, station_id, dept = cfg.pairs[0]
    server = ServerProcess("relay", cfg.path, folder / "relay.log").start()
    try:
        with serve_page(folder) as base:
            async with ChromiumPeers(
                server.url,
                base,
                token_of(counter_id),
                token_of(station_id),
                (640, 360, 15.0),
                (*DOC_SIZE, fps),
                codec,
                camera_frames=1,
                doc_hint="text",
            ) as peers:
                await peers.call(dept)

                async def grab() -> np.ndarray:
                    return png_to_rgb(await peers.pages["office"].evaluate("window.grab('document')"))

                frames = await sample_frames(grab, hold)
                await peers.hangup()
                return frames
    finally:
        server.stop()


def score_frames(frames: list[np.ndarray], source: np.ndarray, folder: Path, name: str) -> dict[str, Any]:
    """Median OCR accuracy and SSIM over ``frames``, with the spread of the OCR scores."""
    scores = [score(f, source, folder, f"{name}{i}") for i, f in enumerate(frames)]
    ocrs = sorted(s["ocr"] for s in scores)
    return {
        "ocr": float(np.median(ocrs)),
        "ssim": float(np.median([s["ssim"] for s in scores])),
        "ocr_each": ocrs,
        "size": f"{frames[0].shape[1]}×{frames[0].shape[0]}",
    }


def run(quick: bool = False, log: Any = print, chromium: bool = True) -> tuple[list[Row], dict[str, Any]]:
    from kiosk.video.synthetic import render_document_page

    hold = 6.0 if quick else 15.0
    source = np.array(render_document_page(*DOC_SIZE))
    rows: list[Row] = []
    detail: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-legibility-") as tmp:
        folder = Path(tmp)
        ceiling = score(source, source, folder, "source")
        detail["source"] = ceiling
        log(f"legibility: OCR of the source page itself: {ceiling['ocr']:.1f} %")
        rows.append(
            Row(
                "legibility",
                "source page, no transmission (OCR ceiling)",
                "OCR character accuracy",
                "%",
                ceiling["ocr"],
                None,
                "",
                None,
                "Tesseract jpn+eng, 2× upscale",
            )
        )
        base: dict[str, Any] | None = None
        if chromium:
            try:
                sub = folder / "chromium"
                sub.mkdir()
                base = score_frames(asyncio.run(through_chromium(hold, 5.0, sub)), source, sub, "chromium")
                detail["chromium"] = base
                log(
                    f"legibility: Chromium contentHint=text: OCR {base['ocr']:.1f} % (median of "
                    f"{', '.join(f'{o:.1f}' for o in base['ocr_each'])}), SSIM {base['ssim']:.3f} ({base['size']})"
                )
            except Exception as err:  # noqa: BLE001 - our numbers are still worth having
                log(f"legibility: Chromium baseline failed: {type(err).__name__}: {err}")
        cases = [
            MediaCase("VP8, document 1920×1080@5", camera=(640, 360, 15.0)),
            MediaCase("H264, document 1920×1080@5", camera=(640, 360, 15.0), codec="h264"),
        ]
        if not quick:
            cases += [
                MediaCase("VP8, document 1920×1080@2", camera=(640, 360, 15.0), document=(1920, 1080, 2.0)),
                MediaCase("VP8, document 1920×1080@15", camera=(640, 360, 15.0), document=(1920, 1080, 15.0)),
            ]
        still_done = False
        for i, case in enumerate(cases):
            sub = folder / f"case{i}"
            sub.mkdir()
            got = asyncio.run(through_call(case, hold, sub, log))
            if not got["frames"]:
                log(f"legibility: {case.name}: no frame")
                continue
            s = score_frames(got["frames"], source, sub, "video")
            detail[case.name] = s
            each = ", ".join(f"{o:.1f}" for o in s["ocr_each"])
            log(f"legibility: {case.name}: OCR {s['ocr']:.1f} % (median of {each}), SSIM {s['ssim']:.3f}")
            b_ocr = base["ocr"] if base else None
            rows.append(
                Row(
                    "legibility",
                    f"live track, {case.name}, after {hold:.0f} s",
                    "OCR character accuracy",
                    "%",
                    s["ocr"],
                    b_ocr,
                    "≥ 98 % (absolute; see the relative row)",
                    both(at_least(98.0), not_worse_than_base(higher_is_better=True)),
                    f"median of {len(got['frames'])} frames ({each}); source page: {ceiling['ocr']:.1f} %",
                )
            )
            rel = 100.0 * s["ocr"] / ceiling["ocr"] if ceiling["ocr"] else float("nan")
            b_rel = 100.0 * base["ocr"] / ceiling["ocr"] if base and ceiling["ocr"] else None
            rows.append(
                Row(
                    "legibility",
                    f"live track, {case.name}, after {hold:.0f} s",
                    "OCR accuracy relative to the source page",
                    "%",
                    rel,
                    b_rel,
                    "≥ 98 %, ≥ Chromium",
                    both(at_least(98.0), not_worse_than_base(higher_is_better=True)),
                    "what the OCR reads on the page itself = 100 %",
                )
            )
            rows.append(
                Row(
                    "legibility",
                    f"live track, {case.name}, after {hold:.0f} s",
                    "SSIM vs source",
                    "",
                    s["ssim"],
                    base["ssim"] if base else None,
                    "",
                    None,
                    "",
                )
            )
            if not still_done:
                st = score(got["still"], source, sub, "still")
                detail["still"] = st
                still_done = True
                exact = bool(np.array_equal(got["still"][200:, :], source[200:, :]))
                log(f"legibility: still: OCR {st['ocr']:.1f} %, SSIM {st['ssim']:.4f}")
                rows.append(
                    Row(
                        "legibility",
                        "still over the data channel (lossless PNG)",
                        "OCR character accuracy",
                        "%",
                        st["ocr"],
                        ceiling["ocr"],
                        "100 % (= source page)",
                        lambda o, b: (
                            o >= b if isinstance(o, float | int) and isinstance(b, float | int) else None
                        ),
                        "baseline column: the source page itself",
                    )
                )
                rows.append(
                    Row(
                        "legibility",
                        "still over the data channel (lossless PNG)",
                        "SSIM vs source",
                        "",
                        st["ssim"],
                        None,
                        "",
                        None,
                        "pixels identical to the source below the stamp" if exact else "pixels differ",
                    )
                )
    return rows, detail


if __name__ == "__main__":
    import sys

    from bench.common import render_rows

    r, _ = run(quick="--quick" in sys.argv, chromium="--no-chromium" not in sys.argv)
    print(render_rows(r))
