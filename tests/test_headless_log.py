"""A headless station says what happens: one line per link problem (a refused token and an unreachable relay
told apart), per call that rings, is answered, taken or ends. Real relay on 127.0.0.1, real processes."""

from __future__ import annotations

import asyncio
import socket
import sys
from dataclasses import replace
from pathlib import Path

from helpers import ROOT, make_relay_config, wait_until

from kiosk.config import TerminalConfig, load_terminal_config
from kiosk.headless import HeadlessCounter, HeadlessStation
from kiosk.tools.scenes import small_media
from relay_server.server import RelayServer


def office_config(token: str | None = None) -> TerminalConfig:
    cfg = small_media(load_terminal_config(ROOT / "config" / "office.toml", "office"), (160, 90), None)
    return cfg if token is None else replace(cfg, relay=replace(cfg.relay, token=token))


async def read_line(proc: asyncio.subprocess.Process, text: str, timeout: float = 60) -> str:
    assert proc.stdout is not None

    async def scan() -> str:
        assert proc.stdout is not None
        while line := (await proc.stdout.readline()).decode():
            if text in line:
                return line
        raise AssertionError(f"the station exited without printing {text!r}")

    return await asyncio.wait_for(scan(), timeout)


async def run_station(url: str, config: Path = ROOT / "config" / "office.toml") -> asyncio.subprocess.Process:
    args = [
        sys.executable,
        "-m",
        "kiosk",
        "office",
        "--headless",
        "--config",
        str(config),
        "--url",
        url,
        "--camera",
        "synthetic:camera",
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT
    )
    return proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_headless_process_names_an_unreachable_relay() -> None:
    """`kiosk office --headless` with no relay running prints 'cannot reach the relay at URL'."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{s.getsockname()[1]}"
    proc = await run_station(url)
    try:
        line = await read_line(proc, "relay link")
        assert f"cannot reach the relay at {url}" in line, line
    finally:
        await stop(proc)


async def test_headless_station_names_a_refused_token_and_logs_calls() -> None:
    """A wrong token is 'refused', once (not on every retry); with the right one every ring, answer and end is
    one line."""
    said: list[str] = []
    async with RelayServer(make_relay_config()) as srv:
        bad = HeadlessStation(office_config(token="wrong"), auto_answer=None, url=srv.url, out=said.append)
        async with bad:
            await wait_until(lambda: any("token was refused" in s for s in said), 5)
            await asyncio.sleep(0)  # let a retry happen if it would
        refused = [s for s in said if "refused" in s]
        assert refused and refused[0].startswith("relay link unauthorized: this terminal's token was refused")
        assert not any("cannot reach" in s for s in said)
        said.clear()
        counter_cfg = small_media(
            load_terminal_config(ROOT / "config" / "counter.toml", "counter"), (160, 90), (320, 180)
        )
        async with (
            HeadlessStation(office_config(), auto_answer=None, url=srv.url, out=said.append) as station,
            HeadlessCounter(counter_cfg, url=srv.url) as counter,
        ):
            await station.wait_up()
            call = await counter.place_call("juumin")
            await wait_until(lambda: any(s.startswith(f"ringing: call {call} for juumin") for s in said), 5)
            await counter.end()
            await wait_until(
                lambda: any(f"call {call} ended before it was answered here" in s for s in said), 5
            )
            station.auto_answer = 0.0
            call2 = await counter.place_call("juumin")
            await wait_until(lambda: f"answered call {call2}" in said, 10)
            await wait_until(
                lambda: any(s.startswith("media to counter-sapporo-1: connected") for s in said), 15
            )
            await counter.end()
            await wait_until(lambda: any(s.startswith(f"call {call2} ended:") for s in said), 10)
        assert said[0].startswith("ready: office-tobetsu-1")


async def test_headless_process_prints_a_refused_token(tmp_path: Path) -> None:
    """The process itself (not only the class) prints the refused-token line: it used to print nothing."""
    text = (ROOT / "config" / "office.toml").read_text(encoding="utf-8")
    token = load_terminal_config(ROOT / "config" / "office.toml", "office").relay.token
    config = tmp_path / "office.toml"
    config.write_text(text.replace(token, "not-this-token"), encoding="utf-8")
    async with RelayServer(make_relay_config()) as srv:
        proc = await run_station(srv.url, config)
        try:
            line = await read_line(proc, "relay link")
            assert "this terminal's token was refused by the relay" in line, line
        finally:
            await stop(proc)


def test_office_help_mentions_headless() -> None:
    """`kiosk office --help` lists --headless and --auto-answer."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "kiosk", "office", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    ).stdout
    assert "--headless" in out and "--auto-answer" in out
