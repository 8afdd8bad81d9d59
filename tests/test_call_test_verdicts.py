"""``kiosk call-test`` gives no false "ok": missing devices, a refused token, an unreachable relay and an unknown
department are each named in the report, quickly. Real relay (in-process, 127.0.0.1:0), real headless station."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

from helpers import ROOT, make_relay_config

from kiosk.call_test import run_call_test
from kiosk.config import TerminalConfig, load_terminal_config
from kiosk.headless import HeadlessStation
from kiosk.tools.scenes import small_media
from relay_server.server import RelayServer


def counter_config(**relay: str) -> TerminalConfig:
    cfg = small_media(
        load_terminal_config(ROOT / "config" / "counter.toml", "counter"), (160, 90), (320, 180)
    )
    return cfg if not relay else replace(cfg, relay=replace(cfg.relay, **relay))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_missing_cameras_fail_the_call_test() -> None:
    """A call that works but whose counter has no cameras is not ok, and the report names both cameras."""
    cfg = counter_config()
    assert cfg.media is not None and cfg.media.camera is not None and cfg.media.document_camera is not None
    cfg = cfg.with_overrides(
        media=replace(
            cfg.media,
            camera=replace(cfg.media.camera, source="/dev/video97"),
            document_camera=replace(cfg.media.document_camera, source="/dev/video98"),
        )
    )
    office = small_media(load_terminal_config(ROOT / "config" / "office.toml", "office"), (160, 90), None)
    async with RelayServer(make_relay_config()) as srv:
        async with HeadlessStation(office, auto_answer=0.0, url=srv.url) as station:
            await station.wait_up()
            report = await run_call_test(cfg, "juumin", seconds=0.5, url=srv.url)
    assert report.answered, report.to_text()
    assert not report.ok and report.reason != "ok"
    assert any(p.startswith("camera /dev/video97") and "no such device" in p for p in report.problems)
    assert any(p.startswith("document camera /dev/video98") for p in report.problems), report.problems


async def test_refused_token_is_named_within_two_seconds() -> None:
    """A wrong token is reported as a refused token (not 'not reachable'), within 2 s."""
    async with RelayServer(make_relay_config()) as srv:
        started = time.monotonic()
        report = await run_call_test(
            counter_config(token="not-the-token"), "juumin", seconds=0.5, url=srv.url
        )
        took = time.monotonic() - started
    assert not report.ok and took < 2.0, (took, report.reason)
    assert "token was refused by the relay" in report.reason and "reach" not in report.reason
    assert report.problems == [report.reason]


async def test_unreachable_relay_is_named_within_two_seconds() -> None:
    """A relay that is not running is reported as 'cannot reach the relay at URL', within 2 s."""
    url = f"ws://127.0.0.1:{free_port()}"
    started = time.monotonic()
    report = await run_call_test(counter_config(), "juumin", seconds=0.5, url=url)
    assert time.monotonic() - started < 2.0, report.reason
    assert not report.ok and report.reason.startswith(f"cannot reach the relay at {url}")


async def test_unknown_department_lists_the_valid_ids() -> None:
    """An unknown --department is answered with the ids this counter may call."""
    async with RelayServer(make_relay_config()) as srv:
        report = await run_call_test(counter_config(), "jumin", seconds=0.5, url=srv.url)
    assert not report.ok
    assert "no department 'jumin'" in report.reason and "juumin" in report.reason and "zeimu" in report.reason
    assert "did you mean 'juumin'" in report.reason
