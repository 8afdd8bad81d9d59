"""No temporary folder outlives the program that made it: terminals, the demo and the test suite itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT


def run_with_tmpdir(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KIVY_HOME"}
    env["TMPDIR"] = str(tmp)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_kivy_process_removes_its_kivy_home(tmp_path: Path) -> None:
    """A process that prepares Kivy's environment (every window program does) removes its KIVY_HOME on exit."""
    result = run_with_tmpdir(
        tmp_path,
        sys.executable,
        "-c",
        "import os; from kiosk.ui.env import prepare_kivy_env; prepare_kivy_env(); "
        "print(os.environ['KIVY_HOME'])",
    )
    assert result.returncode == 0, result.stderr
    home = Path(result.stdout.strip())
    assert home.parent == tmp_path and not home.exists()


def test_a_test_run_leaves_no_temp_folder(tmp_path: Path) -> None:
    """pytest with this suite's conftest leaves nothing in the temp folder."""
    import shutil

    probe = tmp_path / "probe"
    probe.mkdir()
    for name in (
        "conftest.py",
        "helpers.py",
        "relay_support.py",
    ):  # the conftest imports the two harness modules
        shutil.copy(ROOT / "tests" / name, probe / name)
    (probe / "test_probe.py").write_text(
        "import os\n\n\ndef test_kivy_home_is_there() -> None:\n    assert os.path.isdir(os.environ['KIVY_HOME'])\n"
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = run_with_tmpdir(
        temp,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(probe),
        str(probe),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    left = [p.name for p in temp.iterdir() if not p.name.startswith("pytest-of-")]
    assert not left, left


def test_demo_with_a_taken_port_leaves_no_temp_folder(tmp_path: Path) -> None:
    """A windowed demo that cannot start its relay says so in one line and removes its temp folder."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env_display = {"DISPLAY": ":none"}
        env = (
            {k: v for k, v in os.environ.items() if k != "KIVY_HOME"}
            | env_display
            | {"TMPDIR": str(tmp_path)}
        )
        result = subprocess.run(
            [sys.executable, "-m", "kiosk", "demo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "already in use" in result.stderr, result.stderr
    assert not list(tmp_path.glob("kiosk-demo-*"))
