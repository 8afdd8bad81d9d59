"""``kiosk demo``: the whole counter on one machine.

With a display: the relay, a counter kiosk, two staff stations and an emulated lamp, each in its own
window side by side (one process each, as in the field). Without a display (or with ``--headless``):
the same scene as a scripted call in one process — a resident calls 住民課, the lamp lights, station 1
answers, video flows both ways, station 1 invites station 2, who joins and sees the document, station 1
takes a full-resolution still, leaves, and the resident hangs up — then a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kiosk.cli import CameraOverrides, add_camera_arguments
from kiosk.config import load_terminal_config
from relay_server.config import load_relay_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
FLEET_LOGIN = (
    "demo / demo-fleet"  # the [[admin]] demo account of config/relay.toml: accepted from loopback only
)

log = logging.getLogger("demo")


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# -- the scripted scene ------------------------------------------------------------------------------------------
@dataclass
class Step:
    what: str
    ok: bool
    detail: str = ""
    at: float = 0.0


@dataclass
class Summary:
    steps: list[Step] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def add(self, what: str, ok: bool, detail: str = "") -> None:
        step = Step(what, ok, detail, time.monotonic() - self.t0)
        self.steps.append(step)
        mark = "✓" if ok else "✗"
        print(f"  {step.at:6.2f} s  {mark} {what}" + (f" — {detail}" if detail else ""), flush=True)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def run_headless(args: argparse.Namespace) -> int:
    """The scripted call, everything in this process on 127.0.0.1; prints a summary; 0 when all went well."""
    from kiosk.client import RelayClient
    from kiosk.devices.emulated import EmulatedLcusBoard
    from kiosk.devices.lamp import ChannelState
    from kiosk.headless import HeadlessCounter, HeadlessStation
    from kiosk.lamp_agent import LampController, channel_labels
    from kiosk.video.session import EventKind
    from relay_server.server import RelayServer

    relay_cfg = replace(load_relay_config(CONFIG / "relay.toml"), database="", host="127.0.0.1", port=0)
    counter_cfg = CameraOverrides.from_args(args).apply(
        load_terminal_config(CONFIG / "counter.toml", "counter")
    )
    if args.small:
        assert counter_cfg.media is not None and counter_cfg.media.document_camera is not None
        counter_cfg = replace(
            counter_cfg,
            media=replace(
                counter_cfg.media,
                camera=replace(counter_cfg.media.camera, width=320, height=180)
                if counter_cfg.media.camera
                else None,
                document_camera=replace(counter_cfg.media.document_camera, width=960, height=540),
            ),
        )
    office1_cfg = load_terminal_config(CONFIG / "office.toml", "office")
    office2_cfg = load_terminal_config(CONFIG / "office-2.toml", "office")
    lamp_cfg = load_terminal_config(CONFIG / "lamp.toml", "lamp")
    assert lamp_cfg.lamp is not None
    dept = args.department
    names = {d.id: d.name["ja"] for d in relay_cfg.departments.values()}
    if dept not in names:
        print(f"kiosk demo: no department '{dept}' (known: {', '.join(names)})", file=sys.stderr)
        return 2

    summary = Summary()
    print(f"demo: a resident calls {names[dept]} ({dept}); everything runs on 127.0.0.1", flush=True)
    labels = {ch: names.get(dept_id, dept_id) for ch, dept_id in channel_labels(lamp_cfg.lamp).items()}
    board = EmulatedLcusBoard(max(4, max(lamp_cfg.lamp.channels.values())), labels=labels)
    lamp_channel = lamp_cfg.lamp.channels.get(dept, 0)

    def lamp_lit() -> bool:
        return board.snapshot().get(lamp_channel) is ChannelState.ON

    async with RelayServer(relay_cfg) as relay:
        summary.add("relay listening", True, relay.url)
        if relay.fleet is not None:
            print(
                f"demo: fleet page {relay.fleet.url} (log in as {FLEET_LOGIN}, from this computer only)",
                flush=True,
            )
        with board:
            controller = LampController(lamp_cfg.lamp, port=board.url)
            lamp_client = RelayClient(
                relay.url,
                lamp_cfg.relay.token,
                on_message=controller.on_message,
                on_link=controller.on_link,
                client_name="demo-lamp",
            )
            controller.start()
            lamp_client.start()
            station1 = HeadlessStation(office1_cfg, auto_answer=1.0, url=relay.url)
            # Station 2 answers later than station 1, so station 1 takes the call and station 2 the invite.
            station2 = HeadlessStation(office2_cfg, auto_answer=3.0, url=relay.url)
            counter = HeadlessCounter(counter_cfg, url=relay.url)
            try:
                await lamp_client.wait_up(10)
                for s in (station1, station2):
                    await s.start()
                    await s.wait_up(10)
                await counter.start()
                await counter.wait_up(10)
                summary.add("counter, two stations and the lamp agent connected", True)

                session = await counter.call(dept)
                summary.add(f"resident touched {names[dept]}: ringing", True, f"call {session.call_id}")
                lit = await _until(lamp_lit, 5)
                summary.add(f"lamp channel {lamp_channel} lit at the office", lit, board.render())

                ok = await _until(lambda: station1.in_call, 15)
                summary.add("station 1 answered", ok)
                off = await _until(lambda: not lamp_lit(), 5)
                summary.add("lamp off once answered", off)
                s1 = station1.session
                assert s1 is not None
                welcome = counter.client.welcome if counter.client else None
                counter_id = welcome["terminal"] if welcome else ""
                station1_id = station1.terminal_id or ""
                for label in ("camera", "document"):
                    ev = await s1.wait_event(
                        EventKind.FIRST_FRAME, member=counter_id, track=label, timeout=20
                    )
                    track = s1.remote_track(counter_id, label)
                    res = f"{track.resolution[0]}×{track.resolution[1]}" if track else "?"
                    summary.add(f"station 1 sees the resident's {label}", ev is not None, res)
                await session.wait_event(
                    EventKind.FIRST_FRAME, member=station1_id, track="camera", timeout=20
                )
                summary.add("resident sees station 1's camera", True)

                await station1.invite(terminal=station2.terminal_id)
                ok = await _until(lambda: station2.in_call, 15)
                summary.add("station 1 invited station 2, who joined", ok)
                s2 = station2.session
                assert s2 is not None
                ev = await s2.wait_event(
                    EventKind.FIRST_FRAME, member=counter_id, track="document", timeout=20
                )
                summary.add("station 2 sees the document", ev is not None)

                still = await s1.request_still(counter_id, timeout=30)
                summary.add(
                    "station 1 received a full-resolution still",
                    True,
                    f"{still.rgb.shape[1]}×{still.rgb.shape[0]}, {len(still.png) // 1024} KiB PNG, sha256 verified",
                )

                await asyncio.sleep(args.hold)  # the consultation itself
                t1 = s1.remote_track(counter_id, "camera")
                t2 = session.remote_track(station1_id, "camera")
                summary.add(
                    "frames both ways",
                    bool(t1 and t2 and t1.frames > 0 and t2.frames > 0),
                    f"station 1 got {t1.frames if t1 else 0}, resident got {t2.frames if t2 else 0}",
                )

                await s1.leave()
                ok = await _until(lambda: station2.in_call and counter_id in s2.members, 5)
                summary.add("station 1 left; station 2 stays with the resident", ok)
                await session.hangup()
                ok = await _until(lambda: not station2.in_call, 10)
                summary.add("resident hung up; the call ended everywhere", ok)
                summary.add("lamp off", not lamp_lit())
            except (TimeoutError, RuntimeError, AssertionError) as err:
                summary.add("scene interrupted", False, str(err))
            finally:
                await counter.close()
                for s in (station1, station2):
                    await s.close()
                await lamp_client.close()
                await controller.close()
    result = "completed" if summary.ok else "FAILED"
    print(f"demo {result}: {sum(s.ok for s in summary.steps)}/{len(summary.steps)} steps ok", flush=True)
    if args.json:
        print(
            json.dumps({"ok": summary.ok, "steps": [s.__dict__ for s in summary.steps]}, ensure_ascii=False)
        )
    return 0 if summary.ok else 1


# -- the windowed demo ------------------------------------------------------------------------------------------
def _kivy_window_env(x: int, y: int, w: int, h: int) -> dict[str, str]:
    """Place a Kivy window through Kivy's KCFG_<section>_<key> environment overrides."""
    return {
        **os.environ,
        "KCFG_GRAPHICS_POSITION": "custom",
        "KCFG_GRAPHICS_LEFT": str(x),
        "KCFG_GRAPHICS_TOP": str(y),
        "KCFG_GRAPHICS_WIDTH": str(w),
        "KCFG_GRAPHICS_HEIGHT": str(h),
        "KCFG_GRAPHICS_FULLSCREEN": "0",
    }


def run_windows(args: argparse.Namespace) -> int:
    """Relay, lamp window, counter and two stations as separate processes, windows side by side.

    The window configs live in a temp directory that is removed on every way out (a failed start, Ctrl-C,
    SIGTERM, a window closed)."""
    with tempfile.TemporaryDirectory(prefix="kiosk-demo-") as tmp:
        return _run_windows(args, Path(tmp))


def _run_windows(args: argparse.Namespace, tmp: Path) -> int:
    py = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    relay_toml = "relay-two-towns.toml" if args.two_towns else "relay.toml"
    relay = subprocess.Popen(
        [
            py,
            "-m",
            "relay_server",
            "--config",
            str(CONFIG / relay_toml),
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
            "--fleet-port",
            str(args.port + 1 if args.port else 0),
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    procs.append(relay)
    assert relay.stdout is not None
    line = relay.stdout.readline().decode()
    if not line.startswith("listening on "):
        relay.kill()
        relay.wait()
        print(
            "kiosk demo: the relay did not start (the line above says why); --port picks another port",
            file=sys.stderr,
        )
        return 1
    url = line.split()[-1]
    print(f"demo: relay {url}", flush=True)
    fleet = relay.stdout.readline().decode() if load_relay_config(CONFIG / relay_toml).fleet.enabled else ""
    if fleet.startswith("fleet page on "):
        print(
            f"demo: fleet page {fleet.split()[-1]} (log in as {FLEET_LOGIN}, from this computer only)",
            flush=True,
        )

    def window_config(name: str, w: int, h: int) -> str:
        """A copy of config/NAME sized for its place on screen."""
        text = (
            (CONFIG / name).read_text().replace("[terminal]\n", f"[terminal]\nwidth = {w}\nheight = {h}\n", 1)
        )
        path = tmp / name
        path.write_text(text)
        return str(path)

    k = [py, "-m", "kiosk"]
    cams = [
        arg
        for flag, spec in (("--camera", args.camera), ("--document-camera", args.document_camera))
        if spec
        for arg in (flag, spec)
    ]
    layout = [
        (
            k + ["counter", "--config", window_config("counter.toml", 960, 620), "--url", url, *cams],
            (0, 0, 960, 620),
        ),
        (
            k + ["office", "--config", window_config("office.toml", 960, 620), "--url", url],
            (960, 0, 960, 620),
        ),
        (
            k + ["office", "--config", window_config("office-2.toml", 960, 440), "--url", url],
            (960, 640, 960, 440),
        ),
        (
            [py, "-m", "kiosk.tools.demo_lamp", "--config", str(CONFIG / "lamp.toml"), "--url", url],
            (0, 640, 960, 300),
        ),
    ]
    for cmd, (x, y, w, h) in layout:
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=_kivy_window_env(x, y, w, h)))
    if args.two_towns:  # the second town's station answers by itself (no room for a fourth window)
        procs.append(
            subprocess.Popen(
                k
                + [
                    "office",
                    "--config",
                    str(CONFIG / "office-3.toml"),
                    "--url",
                    url,
                    "--headless",
                    "--auto-answer",
                    "3",
                ],
                cwd=ROOT,
            )
        )
    print(
        "demo: running; press Ctrl-C here, or close a staff station or the lamp window, to stop everything "
        "(the counter window, like a kiosk, does not close)",
        flush=True,
    )
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        # The terminals first, the relay last: a station that loses its relay while it closes has nothing to say.
        terminals, relay_proc = procs[1:], procs[0]
        for p in terminals:
            if p.poll() is None:
                p.terminate()
        for p in [*terminals, relay_proc]:
            if p is relay_proc and p.poll() is None:
                p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
            if p.poll() is None:
                p.kill()
                p.wait()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiosk demo", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--headless", action="store_true", help="no windows: run a scripted call and print a summary"
    )
    add_camera_arguments(p, document=True)
    p.add_argument("--department", default="juumin", help="department the scripted resident calls")
    p.add_argument("--hold", type=float, default=2.0, help="seconds the scripted consultation lasts")
    p.add_argument("--small", action="store_true", help="smaller pictures (for slow machines and CI)")
    p.add_argument("--port", type=int, default=8765, help="relay port for the windowed demo (default 8765)")
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")
    p.add_argument(
        "--two-towns",
        action="store_true",
        help="windowed demo with config/relay-two-towns.toml: the counter serves two towns",
    )
    p.add_argument("--log-level", default="WARNING")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.headless and not has_display():
        print(
            "demo: no display found (DISPLAY/WAYLAND_DISPLAY unset): running the scripted call instead "
            "(--headless)",
            flush=True,
        )
        args.headless = True
    if args.headless:
        return asyncio.run(run_headless(args))
    return run_windows(args)
