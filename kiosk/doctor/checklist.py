"""The whole checklist: which families run for which role, in which order, and the ``kiosk doctor`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from kiosk.config import TerminalConfig
from kiosk.doctor.audio import check_audio
from kiosk.doctor.cameras import check_camera
from kiosk.doctor.field import field_results
from kiosk.doctor.ice import check_ice_servers
from kiosk.doctor.inventory import (
    ROLES,
    audio_devices_result,
    check_config,
    check_ice_addresses,
    list_serial_ports,
    list_video_devices,
    serial_ports_result,
    video_devices_result,
)
from kiosk.doctor.lamp import check_lamp, lamp_departments_result
from kiosk.doctor.relay import (
    probe_relay,
)
from kiosk.doctor.relay_judges import (
    calllog_result,
    clock_result,
    reachable_result,
    role_result,
    rtt_result,
    tls_result,
    token_result,
)
from kiosk.doctor.report import CheckResult, format_report, skip

__all__ = ["CHECK_NAMES", "DoctorOptions", "main", "run_doctor"]

CHECK_NAMES = ("config", "devices", "field", "camera", "audio", "lamp", "relay", "ice")


@dataclass(frozen=True)
class DoctorOptions:
    """What ``kiosk doctor`` was asked to do (its command line)."""

    config: str
    role: str | None = None
    url: str | None = None
    snapshot_dir: str | None = None
    lamp_port: str | None = None
    camera_seconds: float = 2.0
    lamp_dwell: float = 0.5
    timeout: float = 5.0
    skip: tuple[str, ...] = ()


async def _media_checks(cfg: TerminalConfig, opts: DoctorOptions) -> list[CheckResult]:
    """The cameras, the audio devices and the ICE addresses of a counter or station (none for a lamp agent)."""
    if cfg.media is None:
        return []
    jobs: list[Awaitable[CheckResult | list[CheckResult]]] = []
    if "camera" not in opts.skip:
        for label, key, cam in (
            ("camera", "camera", cfg.media.camera),
            ("document camera", "document_camera", cfg.media.document_camera),
        ):
            if cam is not None:
                jobs.append(
                    check_camera(cam, label, key, seconds=opts.camera_seconds, snapshot_dir=opts.snapshot_dir)
                )
    if "audio" not in opts.skip:
        jobs.append(check_audio(cfg.media.audio))
    out = [check_ice_addresses(cfg.media.network.ice_addresses)]
    for r in await asyncio.gather(*jobs):
        out += r if isinstance(r, list) else [r]
    return out


async def run_doctor(opts: DoctorOptions) -> tuple[list[CheckResult], str]:
    """Run every check that applies; return the results in checklist order and the role used."""
    config_result, cfg, role = check_config(opts.config, opts.role)
    results = [config_result]
    if "devices" not in opts.skip:
        results += [
            video_devices_result(list_video_devices()),
            serial_ports_result(list_serial_ports()),
            audio_devices_result(),
        ]
    if cfg is None:
        return results, role
    if "field" not in opts.skip:
        results += field_results(cfg, url=opts.url, role=role)
    if opts.url:
        cfg = replace(cfg, relay=replace(cfg.relay, url=opts.url))
    lamp = cfg.lamp
    if lamp is not None and opts.lamp_port:
        lamp = replace(lamp, port=opts.lamp_port)

    async def lamp_check() -> list[CheckResult]:
        if lamp is None or "lamp" in opts.skip:
            return []
        if lamp.driver == "none":
            return [skip("lamp", '[lamp] driver = "none": there is no lamp to light')]
        return [await check_lamp(lamp, dwell=opts.lamp_dwell)]

    async def relay() -> list[CheckResult]:
        if "relay" in opts.skip:
            return []
        probe = await probe_relay(
            cfg.relay.url, cfg.relay.token, ca_file=cfg.relay.ca_file, timeout=opts.timeout
        )
        out = [
            reachable_result(probe),
            tls_result(probe),
            token_result(probe, opts.config, role),
            role_result(probe, role),
            rtt_result(probe),
            clock_result(probe),
            calllog_result(probe),
        ]
        if probe.welcome is not None and lamp is not None:
            out.append(lamp_departments_result(lamp, probe.welcome, role))
        if probe.welcome is not None and cfg.media is not None and "ice" not in opts.skip:
            out += await check_ice_servers(
                probe.welcome.get("ice_servers") or [],
                timeout=min(opts.timeout, 1.5),
                ca_file=cfg.relay.ca_file,
            )
        return out

    for group in await asyncio.gather(_media_checks(cfg, opts), lamp_check(), relay()):
        results += group
    return results, role


def main(argv: list[str]) -> int:
    """``kiosk doctor``: run the checklist, print it (or JSON), exit 1 if anything failed."""
    ap = argparse.ArgumentParser(
        prog="kiosk doctor",
        description="Check a terminal on site: config, cameras, audio, lamp, serial ports, relay, network. "
        "Prints ✓/!/✗ per check with advice (! = works, but not ready for the field); exit status 1 "
        "if anything failed, or with --strict if anything warned.",
    )
    ap.add_argument(
        "--config", required=True, help="the terminal's config (TOML), e.g. /etc/kiosk/counter.toml"
    )
    ap.add_argument("--role", choices=ROLES, help="counter, office or lamp (default: guessed from the file)")
    ap.add_argument("--url", help="relay URL overriding [relay] url, e.g. wss://relay.example.jp:8765")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument(
        "--snapshot-dir",
        metavar="DIR",
        help="where to save camera snapshots (default: kiosk-doctor in the temp folder)",
    )
    ap.add_argument("--lamp-port", metavar="URL", help="serial port or pyserial URL overriding [lamp] port")
    ap.add_argument(
        "--camera-seconds",
        type=float,
        default=2.0,
        metavar="S",
        help="how long to measure each camera's frame rate (default 2)",
    )
    ap.add_argument(
        "--lamp-dwell",
        type=float,
        default=0.5,
        metavar="S",
        help="how long the lamp test lights each channel (default 0.5)",
    )
    ap.add_argument("--timeout", type=float, default=5.0, metavar="S", help="network timeout (default 5)")
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=CHECK_NAMES[1:],
        help="leave out a group of checks (repeatable), e.g. --skip lamp during office hours",
    )
    ap.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 on warnings too (demo token, synthetic sources, null speaker, …): for install scripts",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    opts = DoctorOptions(
        config=args.config,
        role=args.role,
        url=args.url,
        snapshot_dir=args.snapshot_dir or str(Path(tempfile.gettempdir()) / "kiosk-doctor"),
        lamp_port=args.lamp_port,
        camera_seconds=args.camera_seconds,
        lamp_dwell=args.lamp_dwell,
        timeout=args.timeout,
        skip=tuple(args.skip),
    )
    results, role = asyncio.run(run_doctor(opts))
    failed = any(r.failed for r in results)
    warned = [r.name for r in results if r.warned]
    if args.json:
        print(
            json.dumps(
                {
                    "config": args.config,
                    "role": role,
                    "ok": not failed and not (args.strict and warned),
                    "warnings": warned,
                    "strict": args.strict,
                    "checks": [asdict(r) for r in results],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        sys.stdout.write(format_report(results, f"kiosk doctor: {args.config} ({role})"))
    sys.stdout.flush()
    return 1 if failed or (args.strict and warned) else 0
