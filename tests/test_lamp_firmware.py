"""The Arduino sketch in contrib/lamp_firmware answers exactly like the emulated ascii lamp the tests rely on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

from kiosk.devices.emulated import AsciiLampModel
from kiosk.devices.lamp import ChannelState

FIRMWARE = ROOT / "contrib" / "lamp_firmware"
SCRIPT = [
    b"PING",
    b"ON 1",
    b"BLINK 2",
    b"off 1",
    b"ON 9",
    b"ON x",
    b"DANCE",
    b"ON 3",
    b"ON 8",
    b"BLINK 5",
    b"OFF 5",
    b"  PING  ",
    b"ALLOFF",
    b"ON 4",
    b"ON 6",
]


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the sketch for the host")
def test_sketch_matches_emulated_lamp(tmp_path: Path) -> None:
    """Built for the PC with a small Arduino stand-in, the sketch gives the same replies and outputs."""
    exe = tmp_path / "lamp_firmware"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-Wall",
            "-Werror",
            "-I",
            str(FIRMWARE / "host"),
            "-x",
            "c++",
            str(FIRMWARE / "lamp_firmware.ino"),
            "-x",
            "none",
            str(FIRMWARE / "host" / "main.cpp"),
            "-o",
            str(exe),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    stdin = b"".join(line + b"\r\n" for line in SCRIPT) + b"x" * 200 + b"\nPING\n"
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, timeout=10, check=True).stdout
    lines = out.decode().splitlines()
    assert lines[0] == "READY 8"
    model = AsciiLampModel(8)
    expected = [model.handle_line(line).decode().rstrip("\n") for line in [*SCRIPT, b"PING"]]
    assert lines[1:-1] == expected  # the over-long noise line is dropped silently by both
    pins = dict(item.split("=") for item in lines[-1].split()[1:])
    # Output n is pin n+1; relay modules are active low, so "0" means lit.
    shown = {n: pins[str(n + 1)] == "0" for n in range(1, 9)}
    assert shown == {n: model.states[n] is ChannelState.ON for n in range(1, 9)}
