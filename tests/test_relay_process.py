"""The real ``relay-server`` process: signals, command line, config errors and tokens."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import websockets
from helpers import (
    COUNTER,
    DEMO_RELAY_CONFIG,
    LAMP,
    OFFICE1,
    OFFICE2,
    ROOT,
    TOKENS,
    RelayProcess,
    WsClient,
    write_relay_config,
)


def relay_server_command() -> list[str]:
    """The installed ``relay-server`` entry point (next to this interpreter), else ``python -m relay_server``."""
    script = Path(sys.executable).with_name("relay-server")
    exe = str(script) if script.exists() else shutil.which("relay-server")
    return [exe] if exe else [sys.executable, "-m", "relay_server"]


def run_relay_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*relay_server_command(), *args], capture_output=True, text=True, timeout=30)


async def test_sigterm_ends_calls_with_shutdown_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM tells every call member and the lamp 'ended' with reason 'shutdown', then the process exits 0."""
    with RelayProcess(write_relay_config(tmp_path)) as relay:
        assert relay.proc is not None
        o1 = await WsClient.open(relay.url, OFFICE1)
        lamp = await WsClient.open(relay.url, LAMP)
        counter = await WsClient.open(relay.url, COUNTER)
        await counter.send({"type": "call", "department": "juumin"})
        call = (await counter.expect("ringing"))["call"]
        await o1.expect("incoming", call=call)
        await o1.send({"type": "answer", "call": call})
        await counter.expect("answered", call=call, by=OFFICE1)

        relay.proc.send_signal(signal.SIGTERM)
        for c in (counter, o1, lamp):
            ended = await c.expect("ended", call=call, timeout=10)
            assert ended["reason"] == "shutdown"
            # The connection is then closed as "going away".
            try:
                await asyncio.wait_for(c.ws.wait_closed(), 10)
            finally:
                await c.close()
            assert c.ws.close_code == 1001
        assert await asyncio.to_thread(relay.proc.wait, 10) == 0
        assert relay.stop() == 0


def test_broken_config_exits_nonzero_with_location(tmp_path: Path) -> None:
    """A wrong value in relay.toml stops `relay-server --config` with exit code != 0, naming file:line and key."""
    text = DEMO_RELAY_CONFIG.read_text().replace("grace_period = 20 ", "grace_period = -5 ")
    bad = tmp_path / "relay.toml"
    bad.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("grace_period = -5"))
    result = run_relay_server("--config", str(bad), "--port", "0")
    assert result.returncode != 0
    assert f"{bad}:{line}:" in result.stderr
    assert "grace_period" in result.stderr and "greater than 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_nonzero(tmp_path: Path) -> None:
    """A config path that does not exist is reported by name, not with a traceback."""
    missing = tmp_path / "nope.toml"
    result = run_relay_server("--config", str(missing))
    assert result.returncode != 0
    assert str(missing) in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr


async def test_token_command_hash_line_works(tmp_path: Path) -> None:
    """`relay-server token ID` prints a token and a hash line that, put in relay.toml, lets that terminal in."""
    result = run_relay_server("token", OFFICE2)
    assert result.returncode == 0, result.stderr
    token = re.search(r'^token = "([^"]+)"$', result.stdout, re.M)
    hash_line = re.search(r'^(token_hash = "sha256:[0-9a-f]{64}")$', result.stdout, re.M)
    assert token and hash_line, result.stdout
    assert len(token.group(1)) >= 32
    assert OFFICE2 in result.stdout

    text = DEMO_RELAY_CONFIG.read_text()
    old_line = re.search(rf'id = "{OFFICE2}"(?:\n.*?)*?\n(token_hash = "[^"]+")', text)
    assert old_line
    config = write_relay_config(tmp_path, {old_line.group(1): hash_line.group(1)})
    with RelayProcess(config) as relay:
        c = await WsClient.open(relay.url, token=token.group(1), expect_welcome=False)
        welcome = await c.expect("welcome")
        assert welcome["terminal"] == OFFICE2 and welcome["role"] == "office"
        await c.close()
        # The old (demo) token of that terminal no longer works.
        old = await WsClient.open(relay.url, token=TOKENS[OFFICE2], expect_welcome=False)
        err = await old.expect("error")
        assert err["code"] == "unauthorized"
        try:
            await asyncio.wait_for(old.ws.wait_closed(), 5)
        except websockets.ConnectionClosed:
            pass
        assert old.ws.close_code == 4401
        assert relay.stop() == 0


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    """relay-server on a port that is taken exits 1 with one line naming the port, and no traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "relay_server",
                "--config",
                str(write_relay_config(tmp_path)),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    problem = [line for line in result.stderr.splitlines() if line.startswith("relay-server:")]
    assert len(problem) == 1 and f"127.0.0.1:{port}" in problem[0] and "already in use" in problem[0], (
        result.stderr
    )
