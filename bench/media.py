"""Benchmarks 3–5: call set-up, glass-to-glass latency and kiosk CPU/memory, against Chromium↔Chromium.

Our side: the relay process, a staff station process and a counter process (:mod:`bench.media_peer`, which runs
the project's headless terminals with synthetic cameras), media over aiortc on 127.0.0.1.

3. answer → first decoded remote frame, each direction: from the moment the station sends ``answer`` to the
   first decoded frame of the station's camera at the counter, and of the counter's camera (and document
   camera) at the station; p50/p95 over 20+ calls. The clock is ``CLOCK_MONOTONIC``, shared by all processes.
4. glass-to-glass: every decoded frame that reaches a frame sink is read back (the capture time drawn into
   the synthetic frame); p50/p95 per track over the long call.
5. CPU (% of one core) and RSS of the counter and the station processes while the long call runs, for the
   default cameras (1280×720@30 camera, 1920×1080@5 document camera, VP8) and alternatives.

The baseline (:mod:`bench.chromium`) is two Chromium pages calling each other through the same relay with a
small JavaScript client of ``docs/protocol.md``, sending the same synthetic frames (camera with the same frame
stamp) through a canvas.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    ProcSampler,
    Row,
    Stats,
    both,
    not_worse_than_base,
    ratio_at_most,
    tail_at_most,
    tail_below,
)
from bench.relay_rig import ServerProcess, token_of, write_config


@dataclass(frozen=True)
class MediaCase:
    name: str
    camera: tuple[int, int, float] = (1280, 720, 30.0)
    document: tuple[int, int, float] = (1920, 1080, 5.0)
    codec: str = "vp8"
    camera_source: str = "synthetic:camera"


DEFAULT = MediaCase("default: camera 1280×720@30 + document 1920×1080@5, VP8")
ALTERNATIVES = (
    MediaCase(
        "default sizes, camera MJPG-decoded per frame like a USB camera's (synthetic:camera-mjpg)",
        camera_source="synthetic:camera-mjpg",
    ),
    MediaCase("H264 (camera 1280×720@30 + document 1920×1080@5)", codec="h264"),
    MediaCase("VP8, camera 640×360@15 + document 1920×1080@5", camera=(640, 360, 15.0)),
)
FULL_ALTERNATIVES = (
    MediaCase(
        "VP8, camera 1280×720@15 + document 1920×1080@2", camera=(1280, 720, 15.0), document=(1920, 1080, 2.0)
    ),
    MediaCase("H264, camera 640×360@15 + document 1920×1080@5", camera=(640, 360, 15.0), codec="h264"),
)


def terminal_toml(role: str, url: str, token: str, case: MediaCase) -> str:
    w, h, fps = case.camera
    text = (
        f'[relay]\nurl = "{url}"\ntoken = "{token}"\n\n[terminal]\nlanguage = "ja"\n\n'
        f'[camera]\nsource = "{case.camera_source}"\nwidth = {w}\nheight = {h}\nfps = {fps}\n\n'
    )
    if role == "counter":
        dw, dh, dfps = case.document
        text += (
            f'[document_camera]\nsource = "synthetic:document"\nwidth = {dw}\nheight = {dh}\nfps = {dfps}\n\n'
        )
    text += (
        '[audio]\ninput = "synthetic:tone"\noutput = "null"\n\n'
        f'[network]\nice_addresses = ["127.0.0.1"]\ncodec = "{case.codec}"\n'
    )
    return text


@dataclass
class PeerProc:
    proc: asyncio.subprocess.Process
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    all: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, *args: str, prefix: Sequence[str] = ()) -> PeerProc:
        """``python -m bench.media_peer ARGS``; ``prefix``: what runs it (``ip netns exec NAME``: the loss
        profile's namespace; ``ip netns exec`` execs the command, so the pid is the terminal's own)."""
        proc = await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            "-m",
            "bench.media_peer",
            *args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            limit=1 << 26,
        )
        peer = cls(proc)
        peer.reader = asyncio.get_running_loop().create_task(peer._read())
        return peer

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            self.all.append(ev)
            self.events.put_nowait(ev)

    async def expect(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"media peer: no '{name}' within {timeout:.0f} s")
            ev = await asyncio.wait_for(self.events.get(), left)
            if ev.get("event") == name:
                return ev

    async def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self.reader is not None:
            await asyncio.wait([self.reader], timeout=5)


@dataclass
class MediaResult:
    case: MediaCase
    setup_ms: dict[str, list[float]] = field(default_factory=dict)  # direction → samples
    g2g_ms: dict[str, list[float]] = field(default_factory=dict)  # receiver:track → samples
    frames: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # side → % of one core
    rss_mb: dict[str, float] = field(default_factory=dict)
    calls_ok: int = 0
    calls: int = 0
    ocr: dict[str, Any] = field(default_factory=dict)  # score_snapshots(): OCR of the live document track


async def start_station(
    folder: Path,
    url: str,
    station_id: str,
    case: MediaCase,
    prefix: Sequence[str] = (),
    snapshots: Path | None = None,
) -> PeerProc:
    """A headless station process of the benchmark (config written into ``folder``), once it is ready;
    ``snapshots``: it saves its newest document frames there (OCR of the live track)."""
    (folder / "office.toml").write_text(terminal_toml("office", url, token_of(station_id), case))
    extra = ["--snapshots", str(snapshots)] if snapshots is not None else []
    office = await PeerProc.start(
        "--role", "office", "--config", str(folder / "office.toml"), "--url", url, *extra, prefix=prefix
    )
    await office.expect("ready", 60)
    return office


async def start_counter(
    folder: Path,
    url: str,
    counter_id: str,
    dept: str,
    case: MediaCase,
    calls: int,
    hold: float,
    prefix: Sequence[str] = (),
) -> PeerProc:
    """A counter process that places ``calls`` calls to ``dept``, each held ``hold`` s."""
    (folder / "counter.toml").write_text(terminal_toml("counter", url, token_of(counter_id), case))
    config = str(folder / "counter.toml")
    return await PeerProc.start(
        "--role",
        "counter",
        "--config",
        config,
        "--url",
        url,
        "--department",
        dept,
        "--calls",
        str(calls),
        "--hold",
        str(hold),
        prefix=prefix,
    )


async def run_calls(
    case: MediaCase,
    calls: int,
    hold: float,
    measure_cpu: bool,
    log: Any,
    prefix: Sequence[str] = (),
    ocr: bool = False,
) -> MediaResult:
    """One relay, one station, one counter; ``calls`` calls held ``hold`` s each. ``prefix``: run the three
    processes through it (the loss profile's ``ip netns exec NAME``); ``ocr``: score the station's last document
    frames with the legibility benchmark's OCR (``res.ocr``)."""
    res = MediaResult(case, calls=calls)
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        folder = Path(tmp)
        cfg = write_config(folder, 0, 1)
        counter_id, station_id, dept = cfg.pairs[0]
        server = ServerProcess("relay", cfg.path, folder / "relay.log")
        server.cmd = [*prefix, *server.cmd]
        server.start()
        office = counter = None
        snapshots = folder / "snapshots" if ocr else None
        try:
            office = await start_station(folder, server.url, station_id, case, prefix, snapshots)
            counter = await start_counter(folder, server.url, counter_id, dept, case, calls, hold, prefix)
            await counter.expect("ready", 60)
            answers: dict[str, float] = {}
            for _ in range(calls):
                up = await counter.expect("media_up", 60)
                samplers: list[tuple[str, ProcSampler]] = []
                if measure_cpu:
                    samplers = [
                        ("counter", ProcSampler(counter.proc.pid).start()),
                        ("station", ProcSampler(office.proc.pid).start()),
                    ]
                done = await counter.expect("call", hold + 60)
                for side, s in samplers:
                    s.stop()
                    res.cpu[side] = s.cpu_percent
                    res.rss_mb[side] = s.rss_median_mb
                for ev in office.all:
                    if ev.get("event") == "answer":
                        answers[ev["call"]] = ev["at"]
                t_answer = answers.get(done["call"])
                if t_answer is None:
                    log(f"  media: no answer time for call {done['call']}")
                    continue
                res.calls_ok += 1
                for key, t in done["first_frame_at"].items():
                    res.setup_ms.setdefault(f"at counter: {key.split('/')[1]} from station", []).append(
                        (t - t_answer) * 1000
                    )
                for key, tr in done["tracks"].items():
                    res.g2g_ms.setdefault(f"at counter: {key.split('/')[1]}", []).extend(tr["g2g_ms"])
                    res.frames[f"at counter: {key.split('/')[1]}"] = {
                        k: tr.get(k, 0)
                        for k in ("frames", "unreadable", "skipped", "sizes", "decoded", "dropped_by_sink")
                    }
                del up
            # The station reports its side when each call has ended.
            deadline = time.monotonic() + 10
            while (
                sum(1 for e in office.all if e.get("event") == "station_call") < res.calls_ok
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
            for ev in office.all:
                if ev.get("event") != "station_call" or ev["call"] not in answers:
                    continue
                t_answer = answers[ev["call"]]
                for key, t in ev["first_frame_at"].items():
                    if t is not None:
                        res.setup_ms.setdefault(f"at station: {key.split('/')[1]} from counter", []).append(
                            (t - t_answer) * 1000
                        )
                for key, tr in ev["tracks"].items():
                    res.g2g_ms.setdefault(f"at station: {key.split('/')[1]}", []).extend(tr["g2g_ms"])
                    res.frames[f"at station: {key.split('/')[1]}"] = {
                        k: tr.get(k, 0)
                        for k in ("frames", "unreadable", "skipped", "sizes", "decoded", "dropped_by_sink")
                    }
            await counter.expect("done", 30)
            if snapshots is not None:
                res.ocr = score_snapshots(snapshots, folder)
        finally:
            for p in (counter, office):
                if p is not None:
                    await p.stop()
            server.stop()
    return res


def score_snapshots(snapshots: Path, folder: Path) -> dict[str, Any]:
    """OCR and SSIM of the station's saved document frames against the source page (bench.legibility's measures:
    the median of the frames)."""
    import numpy as np

    from bench.legibility import DOC_SIZE, score_frames
    from kiosk.video.synthetic import render_document_page

    frames = [np.load(p) for p in sorted(snapshots.glob("doc-*.npy"))]
    if not frames:
        return {}
    work = folder / "ocr"
    work.mkdir(exist_ok=True)
    source = np.array(render_document_page(*DOC_SIZE))
    return score_frames(frames, source, work, "video")


def received_sizes(sizes: dict[str, int]) -> str:
    """ ", received at 960×540 (70 %), 1280×720 (30 %)" — the camera track adapts its size to the encoders."""
    total = sum(sizes.values())
    if not total:
        return ""
    parts = sorted(sizes.items(), key=lambda kv: -kv[1])
    return ", received at " + ", ".join(f"{size} ({100 * n / total:.0f} %)" for size, n in parts)


LOSS_PERCENT = 3


def setup_rows(
    case_name: str, setup: MediaResult, calls: int, base_setup: dict[str, list[float]], base_name: str
) -> list[Row]:
    """answer → first frame per direction; ``base_setup``: the baseline's samples (Chromium, or our clean run)."""
    rows = []
    for direction, samples in sorted(setup.setup_ms.items()):
        b = base_setup.get(direction) or base_setup.get(direction.replace(": document", ": camera"))
        rows.append(
            Row(
                "call set-up",
                case_name,
                f"answer → first frame, {direction}",
                "ms",
                Stats.of(samples, 95),
                Stats.of(b, 95) if b else None,
                "p95 < 300 ms, ≤ 1.2× Chromium" if base_name == "Chromium" else "p95 < 300 ms",
                both(tail_below(300.0), ratio_at_most(1.2)) if base_name == "Chromium" else tail_below(300.0),
                f"{setup.calls_ok}/{calls} calls; baseline: {base_name}"
                + (" camera" if direction not in base_setup and "document" in direction else ""),
            )
        )
    return rows


def call_rows(
    case_name: str, r: MediaResult, base: dict[str, Any], base_name: str, ceiling: float | None = None
) -> list[Row]:
    """Glass-to-glass per track, CPU per side and (when scored) OCR of the live document track of one long call;
    ``base``: the same quantities of the baseline (``g2g_ms``, ``cpu``, ``rss_mb``, ``ocr``), or empty."""
    rows: list[Row] = []
    base_g2g = base.get("g2g_ms", {})
    for track, samples in sorted(r.g2g_ms.items()):
        b = base_g2g.get(track)
        fr = r.frames.get(track, {})
        rows.append(
            Row(
                "glass-to-glass",
                case_name,
                f"capture → decoded, {track}",
                "ms",
                Stats.of(samples, 95),
                Stats.of(b, 95) if b else None,
                "p95 < 120 ms, ≤ Chromium" if base_name == "Chromium" else "p95 < 120 ms",
                both(tail_below(120.0), not_worse_than_base())
                if base_name == "Chromium"
                else tail_below(120.0),
                f"{fr.get('frames', 0)} frames shown of {fr.get('decoded', 0)} decoded "
                f"({fr.get('dropped_by_sink', 0)} replaced before conversion), {fr.get('unreadable', 0)} unreadable "
                f"stamps, {fr.get('skipped', 0)} skipped{received_sizes(fr.get('sizes') or {})}"
                + (f"; baseline: {base_name}" if b else ""),
            )
        )
    for side in ("counter", "station"):
        bcpu = base.get("cpu", {}).get(side)
        rows.append(
            Row(
                "kiosk CPU",
                case_name,
                f"{side} process CPU",
                "% of one core",
                r.cpu.get(side),
                bcpu,
                "≤ 70 %",
                tail_at_most(70.0),
                f"RSS {r.rss_mb.get(side, float('nan')):.0f} MiB"
                + (
                    f"; {base_name} RSS {base.get('rss_mb', {}).get(side, float('nan')):.0f} MiB"
                    if bcpu is not None
                    else ""
                ),
            )
        )
    if r.ocr:
        b_ocr = base.get("ocr", {}).get("ocr")
        rows.append(
            Row(
                "legibility",
                case_name,
                "OCR character accuracy, live document track at the end of the call",
                "%",
                r.ocr["ocr"],
                b_ocr,
                "unchanged or better",
                not_worse_than_base(higher_is_better=True) if b_ocr is not None else None,
                f"median of {len(r.ocr['ocr_each'])} frames ({', '.join(f'{o:.1f}' for o in r.ocr['ocr_each'])}),"
                f" {r.ocr['size']}, SSIM {r.ocr['ssim']:.3f}"
                + (f"; source page itself: {ceiling:.1f} %" if ceiling is not None else "")
                + (f"; baseline: {base_name}" if b_ocr is not None else ""),
            )
        )
    return rows


def as_base(r: MediaResult) -> dict[str, Any]:
    return {"g2g_ms": r.g2g_ms, "cpu": r.cpu, "rss_mb": r.rss_mb, "ocr": r.ocr, "setup_ms": r.setup_ms}


def run(
    quick: bool = False, log: Any = print, chromium: bool = True, full: bool = False, loss: bool = True
) -> tuple[list[Row], dict[str, Any]]:
    calls = 5 if quick else 20
    long_hold = 10.0 if quick else 60.0
    alt_hold = 8.0 if quick else 30.0
    rows: list[Row] = []
    detail: dict[str, Any] = {}

    base: dict[str, Any] = {}
    if chromium:
        try:
            from bench import chromium as chromium_bench

            base = chromium_bench.run_media(calls=calls, hold=min(long_hold, 30.0), log=log)
            detail["chromium"] = base
        except Exception as err:  # noqa: BLE001 - the aiortc numbers are still worth having
            log(f"media: Chromium baseline failed: {type(err).__name__}: {err}")
            detail["chromium_error"] = f"{type(err).__name__}: {err}"

    log(f"media: {calls} calls for answer→first frame ({DEFAULT.name})")
    setup = asyncio.run(run_calls(DEFAULT, calls, 1.0, False, log))
    detail["setup"] = {"setup_ms": setup.setup_ms, "calls_ok": setup.calls_ok}
    rows += setup_rows(DEFAULT.name, setup, calls, base.get("setup_ms", {}), "Chromium")

    ceiling: float | None = None
    cases = [DEFAULT, *ALTERNATIVES, *(FULL_ALTERNATIVES if full else ())]
    clean: MediaResult | None = None
    for i, case in enumerate(cases):
        hold = long_hold if i == 0 else alt_hold
        log(f"media: one {hold:.0f} s call: {case.name}")
        r = asyncio.run(run_calls(case, 1, hold, True, log, ocr=i == 0))
        detail.setdefault("calls", {})[case.name] = {
            "g2g_ms": {k: Stats.of(v, 95).__dict__ for k, v in r.g2g_ms.items()},
            "frames": r.frames,
            "cpu": r.cpu,
            "rss_mb": r.rss_mb,
            "ocr": r.ocr,
        }
        if i == 0:
            clean = r
            ceiling = source_ocr()
            detail["ocr_source_page"] = ceiling
        rows += call_rows(case.name, r, base if i == 0 else {}, "Chromium", ceiling if i == 0 else None)

    if loss and clean is not None:
        rows += loss_rows(calls, long_hold, setup, clean, ceiling, detail, log)
    return rows, detail


def source_ocr() -> float | None:
    """OCR of the source page itself (the ceiling of the OCR rows)."""
    import numpy as np

    from bench.legibility import DOC_SIZE, score
    from kiosk.video.synthetic import render_document_page

    with tempfile.TemporaryDirectory(prefix="bench-media-ocr-") as tmp:
        source = np.array(render_document_page(*DOC_SIZE))
        return float(score(source, source, Path(tmp), "source")["ocr"])


def loss_rows(
    calls: int,
    hold: float,
    setup: MediaResult,
    clean: MediaResult,
    ceiling: float | None,
    detail: dict[str, Any],
    log: Any,
) -> list[Row]:
    """The default case again with {LOSS_PERCENT} % of the UDP packets dropped (nftables, bench/netloss.py): call
    set-up, the long call (glass-to-glass, CPU, OCR); the baseline column is the clean run of the same benchmark."""
    from bench.netloss import LossUnavailable, dropped_packets, lossy_namespace

    name = f"default sizes, {LOSS_PERCENT} % UDP loss each way (nftables in a network namespace)"
    rows: list[Row] = []
    try:
        with lossy_namespace(LOSS_PERCENT) as (netns, prefix):
            log(f"media: {calls} calls for answer→first frame under {LOSS_PERCENT} % loss (netns {netns})")
            lossy_setup = asyncio.run(run_calls(DEFAULT, calls, 1.0, False, log, prefix=prefix))
            log(f"media: one {hold:.0f} s call under {LOSS_PERCENT} % loss")
            r = asyncio.run(run_calls(DEFAULT, 1, hold, True, log, prefix=prefix, ocr=True))
            dropped = dropped_packets(netns)
    except LossUnavailable as err:
        log(f"media: loss profile skipped: {err}")
        detail["loss_error"] = str(err)
        return rows
    detail["loss"] = {
        "setup_ms": lossy_setup.setup_ms,
        "calls_ok": lossy_setup.calls_ok,
        "g2g_ms": {k: Stats.of(v, 95).__dict__ for k, v in r.g2g_ms.items()},
        "frames": r.frames,
        "cpu": r.cpu,
        "ocr": r.ocr,
        "udp_packets_dropped": dropped,
    }
    log(f"media: loss profile: {dropped} UDP packets dropped by the rule")
    rows += setup_rows(name, lossy_setup, calls, setup.setup_ms, "our clean run")
    rows += call_rows(name, r, as_base(clean), "our clean run", ceiling)
    return rows


if __name__ == "__main__":
    from bench.common import render_rows

    rows, detail = run(
        quick="--quick" in sys.argv, chromium="--no-chromium" not in sys.argv, full="--full" in sys.argv
    )
    print(render_rows(rows))
