"""One command line: the same flags mean the same on every program, every flag is in --help, config typos are
reported even when a required key is missing. Real processes against a real relay on 127.0.0.1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, make_relay_config, wait_until

from common.tomlconf import MissingKeyError, UnknownKeyError
from kiosk.config import load_terminal_config
from kiosk.devices.emulated import EmulatedLcusBoard
from relay_server.config import load_relay_config
from relay_server.server import RelayServer

COMMANDS = ["counter", "office", "lamp", "call-test", "doctor"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_terminal_command_takes_config_and_url(command: str) -> None:
    """--config and --url are accepted (and documented in --help) by every terminal program."""
    out = subprocess.run(
        [sys.executable, "-m", "kiosk", command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout and "--url" in out.stdout, out.stdout


async def test_lamp_agent_takes_url() -> None:
    """`kiosk lamp --url` connects to that relay (it used to be 'unrecognized arguments')."""
    async with RelayServer(make_relay_config()) as srv:
        with EmulatedLcusBoard(4) as board:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kiosk",
                "lamp",
                "--config",
                str(ROOT / "config" / "lamp.toml"),
                "--lamp-port",
                board.url,
                "--url",
                srv.url,
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                await wait_until(
                    lambda: "lamp-tobetsu-1" in srv.core.online or proc.returncode is not None, 60
                )
                assert proc.returncode is None, "kiosk lamp exited"
            finally:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def test_misspelt_required_key_is_named(tmp_path: Path) -> None:
    """`tokn = "…"` in [relay] is reported next to 'relay.token: required key is missing', with its line."""
    path = tmp_path / "office.toml"
    path.write_text('[relay]\nurl = "ws://127.0.0.1:8765"\ntokn = "abc"\n', encoding="utf-8")
    with pytest.raises(MissingKeyError) as info:
        load_terminal_config(path, "office")
    text = str(info.value)
    assert "relay.token: required key is missing" in text
    assert f"unknown key 'tokn' at {path}:3" in text


def test_every_unknown_key_is_named_when_a_required_key_is_missing(tmp_path: Path) -> None:
    """Stray keys that are no misspelling of the missing key, in any table, are reported with it."""
    path = tmp_path / "counter.toml"
    path.write_text(
        '[relay]\nurl = "ws://127.0.0.1:8765"\nverbose = true\n\n[terminal]\nlangauge = "en"\n',
        encoding="utf-8",
    )
    with pytest.raises(MissingKeyError) as info:
        load_terminal_config(path, "counter")
    text = str(info.value)
    assert "relay.token: required key is missing" in text
    assert f"unknown key 'verbose' at {path}:3" in text
    assert f"unknown key 'langauge' at {path}:6" in text


def test_relay_config_names_unknown_keys_next_to_a_missing_one(tmp_path: Path) -> None:
    """relay.toml: an [[office]] without its id, and a stray key further down that table, are reported
    together (the stray key is no misspelling of 'id')."""
    path = tmp_path / "relay.toml"
    path.write_text(
        '[server]\nport = 0\n\n[[office]]\nname = {ja = "町", en = "Town"}\ntimezon = "Asia/Tokyo"\n',
        encoding="utf-8",
    )
    with pytest.raises(MissingKeyError) as info:
        load_relay_config(path)
    text = str(info.value)
    assert "office[0].id: required key is missing" in text
    assert f"unknown key 'timezon' at {path}:6" in text


def test_a_complete_file_with_a_stray_key_still_fails_on_it_alone(tmp_path: Path) -> None:
    """Without a missing key the first unknown key is the error, as before (the lenient pass never runs)."""
    path = tmp_path / "office.toml"
    path.write_text('[relay]\nurl = "ws://127.0.0.1:8765"\ntoken = "t"\ntokn = "abc"\n', encoding="utf-8")
    with pytest.raises(UnknownKeyError, match="unknown key"):
        load_terminal_config(path, "office")
