"""Where the kiosks' CPU goes during a call: py-spy on the counter and the station, a table and flame graphs.

Runs the media benchmark's set-up (relay, headless station and headless counter as three processes, synthetic
cameras at the default sizes, VP8) for one call, and while the call is up samples both terminal processes with
``py-spy record --native`` (Python and native frames: libvpx, OpenCV, libswscale, libsrtp show by name). Each
sample is sorted into one category (encode, decode, colour conversion, capture, packetisation, SRTP, network,
event loop…) by the innermost frame that names one; the table gives each category's share of the process's
busy samples (threads waiting on a lock, a queue or epoll are dropped) and, with the process CPU measured just
before on the same call without the profiler, its cost in % of one core. The flame graphs
(SVG, one per process) are written next to the table::

    python -m bench.media_profile                       # 60 s call, writes var/bench/profile/
    python -m bench.media_profile --hold 30 --out docs/media-profile --rate 50

py-spy is in the ``bench`` extra (``scripts/setup-bench``); it needs ptrace (root, or ``kernel.yama.ptrace_scope``
0). ``--native`` pauses the process at each sample, which slows it down: that is why the CPU is measured in a window
of its own, and why the shares, not the sample counts, are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, ProcSampler
from bench.media import DEFAULT, MediaCase, start_counter, start_station
from bench.relay_rig import ServerProcess, write_config

#: (category, pattern on one frame): the innermost frame of a sample that matches decides its category.
#: Order matters only between patterns that can match the same frame.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("stamp read (benchmark only)", r"read_frame_stamp|StampReader|_plausible"),
    (
        "VP8/H264 encode (libvpx, libx264)",
        r"vp8cx|vpx_codec_encode|x264|"
        r"encode \(aiortc/codecs|encode \(kiosk/video/encoders",
    ),
    ("VP8/H264 decode", r"vp8dx|vpx_codec_decode|vp8_decode|decode \(aiortc/codecs|h264_decode|ff_h264"),
    (
        "colour conversion and scaling",
        r"cvtColor|cv::hal|sws_|swscale|reformat|rgb_to_yuv420p|_to_rgb|"
        r"to_ndarray|from_ndarray|scaled \(kiosk|resize|yuv2rgb|rgb2yuv",
    ),
    (
        "capture: synthetic scene / MJPG decode",
        r"kiosk/video/synthetic|SyntheticScene|draw_frame_stamp|"
        r"Synthetic\w*Grabber|imdecode|jpeg|_pump|_publish",
    ),
    (
        "RTP packetisation, jitter buffer",
        r"_packetize|rtp\.py|jitterbuffer|jitter\.py|rtcrtpsender|"
        r"rtcrtpreceiver|depayload",
    ),
    ("SRTP / DTLS", r"srtp|rtcdtlstransport|_ssl|ssl\.py|openssl|EVP_|aes"),
    ("ICE / UDP sockets", r"aioice|sendto|recvfrom|selector_events|_SelectorDatagram"),
    ("asyncio event loop, tasks", r"asyncio|base_events|events\.py|_run_once|epoll"),
    ("threads (executor, queue hand-off)", r"threading|concurrent|thread\.py|queue\.py"),
)


@dataclass
class Profile:
    """The categorised samples of one process."""

    side: str
    samples: int
    by_category: Counter[str]
    cpu_percent: float
    stacks: Counter[str]


#: A sample whose innermost frames wait (a lock, a condition, epoll, sleep) is an idle thread, not CPU: with
#: ``--native`` py-spy reports idle threads too, so they are dropped here.
IDLE = re.compile(
    r"PyThread_acquire_lock|pthread_cond_|epoll_wait|select \(|poll \(|nanosleep|clock_nanosleep|"
    r"futex|sem_wait|Event\.wait|Condition\.wait|SimpleQueue_get|Queue\.get \(|sleep \("
)


def is_idle(stack: str) -> bool:
    """Does this collapsed stack show a waiting thread (its innermost four frames name a wait, or it is blocked
    in ``read``: the benchmark peer waiting on its stdin)?"""
    frames = stack.split(";")
    return frames[-1].startswith("read (libc") or any(IDLE.search(frame) for frame in frames[-4:])


def categorise(stack: str) -> str:
    """The category of one collapsed stack (``outer;…;inner``): the innermost frame that matches one."""
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if re.search(pattern, frame, re.IGNORECASE):
                return name
    return "other Python / native"


def read_collapsed(path: Path) -> Counter[str]:
    """py-spy's ``raw`` output: one ``stack count`` per line."""
    stacks: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            if not is_idle(stack):
                stacks[stack] += int(count)
    return stacks


def summarise(side: str, stacks: Counter[str], cpu_percent: float) -> Profile:
    by_category: Counter[str] = Counter()
    for stack, count in stacks.items():
        by_category[categorise(stack)] += count
    return Profile(side, sum(stacks.values()), by_category, cpu_percent, stacks)


def table(profiles: Iterable[Profile]) -> str:
    profiles = list(profiles)
    names = [n for n, _ in CATEGORIES] + ["other Python / native"]
    head = "| category | " + " | ".join(
        f"{p.side}: share of samples | {p.side}: % of one core" for p in profiles
    )
    lines = [head + " |", "| --- |" + " --- | --- |" * len(profiles)]
    for name in names:
        cells = []
        for p in profiles:
            share = 100.0 * p.by_category.get(name, 0) / max(1, p.samples)
            cells.append(f"{share:.1f} % | {share * p.cpu_percent / 100:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| **process CPU (whole call)** | "
        + " | ".join(f"{p.samples} samples | **{p.cpu_percent:.0f}**" for p in profiles)
        + " |"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# A flame graph as SVG (icicle layout: callers on top), from collapsed stacks, with no extra dependency


def flame_svg(stacks: Counter[str], title: str, width: int = 1200, row: int = 16, min_px: float = 0.6) -> str:
    tree: dict[str, object] = {}
    total = sum(stacks.values())

    for stack, count in stacks.items():
        node = tree
        for frame in stack.split(";"):
            child = node.setdefault(frame, {"#": 0, "children": {}})
            assert isinstance(child, dict)
            child["#"] = int(child["#"]) + count
            node = child["children"]

    rects: list[str] = []
    depth_max = 0

    def walk(node: dict[str, object], x: float, depth: int) -> None:
        nonlocal depth_max
        for frame, child in sorted(node.items(), key=lambda kv: -int(kv[1]["#"])):  # type: ignore[index]
            assert isinstance(child, dict)
            w = width * int(child["#"]) / max(1, total)
            if w < min_px:
                continue
            depth_max = max(depth_max, depth)
            y = 24 + depth * row
            hue = 20 + (hash(frame.split(" ")[0]) % 40)
            share = 100.0 * int(child["#"]) / max(1, total)
            label = html.escape(frame)
            text = html.escape(frame[: max(0, int(w / 6.5) - 1)]) if w > 30 else ""
            rects.append(
                f'<g><title>{label} ({share:.1f} %)</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
                f'height="{row - 1}" fill="hsl({hue},85%,60%)"/>'
                f'<text x="{x + 2:.1f}" y="{y + row - 4}">{text}</text></g>'
            )
            walk(child["children"], x, depth + 1)
            x += w

    walk(tree, 0.0, 0)
    height = 24 + (depth_max + 1) * row + 8
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<rect width="100%" height="100%" fill="#fff"/>'
        f'<text x="4" y="16" font-size="13">{html.escape(title)} — {total} samples; hover for names</text>'
        + "".join(rects)
        + "</svg>\n"
    )


# ---------------------------------------------------------------------------------------------------


async def profile_call(
    case: MediaCase,
    hold: float,
    rate: int,
    out: Path,
    cpu_window: float = 20.0,
) -> list[Profile]:
    out.mkdir(parents=True, exist_ok=True)
    pyspy = Path(sys.executable).with_name("py-spy")
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        folder = Path(tmp)
        cfg = write_config(folder, 0, 1)
        counter_id, station_id, dept = cfg.pairs[0]
        server = ServerProcess("relay", cfg.path, folder / "relay.log").start()
        office = counter = None
        try:
            office = await start_station(folder, server.url, station_id, case)
            counter = await start_counter(
                folder, server.url, counter_id, dept, case, 1, hold + cpu_window + 10
            )
            await counter.expect("ready", 60)
            await counter.expect("media_up", 60)
            await asyncio.sleep(3)  # past the first seconds, where the camera grows to its size
            # CPU first, without the profiler (py-spy --native pauses the process at every sample).
            samplers = [ProcSampler(counter.proc.pid).start(), ProcSampler(office.proc.pid).start()]
            await asyncio.sleep(cpu_window)
            for sampler in samplers:
                sampler.stop()
            spies = []
            for side, proc in (("counter", counter.proc), ("station", office.proc)):
                raw = folder / f"{side}.raw"
                spies.append(
                    (
                        side,
                        raw,
                        subprocess.Popen(
                            [
                                str(pyspy),
                                "record",
                                "--native",
                                "--nolineno",
                                "--rate",
                                str(rate),
                                "--duration",
                                str(int(hold)),
                                "--format",
                                "raw",
                                "--output",
                                str(raw),
                                "--pid",
                                str(proc.pid),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                            text=True,
                        ),
                    )
                )
            profiles = []
            for (side, raw, spy), sampler in zip(spies, samplers, strict=True):
                _, err = await asyncio.to_thread(spy.communicate)
                if spy.returncode != 0 or not raw.exists():
                    raise RuntimeError(f"py-spy on the {side} failed: {err.strip()[-500:]}")
                stacks = read_collapsed(raw)
                profiles.append(summarise(side, stacks, sampler.cpu_percent))
                (out / f"{side}.svg").write_text(
                    flame_svg(stacks, f"{side} process, {case.name}, {hold:.0f} s, py-spy --native")
                )
                (out / f"{side}.collapsed").write_text(raw.read_text())
            await counter.expect("done", hold + 90)
            return profiles
        finally:
            for p in (counter, office):
                if p is not None:
                    await p.stop()
            server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.media_profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--hold", type=float, default=60.0, help="seconds of the call that py-spy samples")
    p.add_argument(
        "--cpu-window",
        type=float,
        default=20.0,
        help="seconds of the call, before py-spy starts, over which process CPU is measured",
    )
    p.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    p.add_argument("--out", default=str(ROOT / "var" / "bench" / "profile"), help="folder for SVG and stacks")
    args = p.parse_args(argv)
    out = Path(args.out)
    profiles = asyncio.run(profile_call(DEFAULT, args.hold, args.rate, out, args.cpu_window))
    text = f"{DEFAULT.name}, {args.hold:.0f} s sampled at {args.rate} Hz\n\n" + table(profiles)
    (out / "profile.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
