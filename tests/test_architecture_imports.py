"""The import rules of docs/architecture.md ("Which way imports point"), checked on the source of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IO_LIBRARIES = ("websockets", "aiortc", "aioice", "av", "cv2", "serial", "kivy", "sqlite3")
PURE_CORES = ("relay_server/protocol.py", "relay_server/tomlconf.py", "relay_server/config.py",
              "relay_server/core.py", "kiosk/config.py", "kiosk/machine.py", "kiosk/counter_state.py",
              "kiosk/office_state.py", "kiosk/doctor/stun.py", "kiosk/doctor/report.py")


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (``from x import y`` gives ``x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def under(name: str, *packages: str) -> bool:
    """Whether module ``name`` is one of ``packages`` or inside one."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def modules(folder: str) -> list[Path]:
    """The Python files of a package folder, recursively."""
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("rel", PURE_CORES)
def test_pure_cores_import_no_io_library(rel: str) -> None:
    """Protocol, config, relay core and state machines import no websockets, aiortc, av, cv2, serial or kivy."""
    path = ROOT / rel
    if not path.exists():
        pytest.skip(f"{rel} does not exist yet")
    bad = sorted(n for n in imports_of(path) if under(n, *IO_LIBRARIES))
    assert not bad, f"{rel} is a pure core but imports {bad}"


def test_relay_never_imports_kiosk() -> None:
    """The relay package stands alone: nothing in relay_server imports kiosk."""
    bad = {p.name: sorted(n for n in imports_of(p) if under(n, "kiosk")) for p in modules("relay_server")}
    assert not {k: v for k, v in bad.items() if v}


def test_screens_and_ui_import_no_media_libraries() -> None:
    """Screens and UI widgets draw state and numpy frames: no aiortc, av or cv2 (the screenshot tool aside)."""
    paths = [p for p in modules("kiosk/screens") + modules("kiosk/ui") if p.name != "counter_shots.py"]
    bad = {str(p.relative_to(ROOT)): sorted(n for n in imports_of(p) if under(n, "aiortc", "av", "cv2"))
           for p in paths}
    assert not {k: v for k, v in bad.items() if v}


def test_devices_import_no_app_layers() -> None:
    """Devices import only kiosk.config and other devices from this project (plus relay_server.logs)."""
    bad = {}
    for p in modules("kiosk/devices"):
        own = [n for n in imports_of(p) if under(n, "kiosk", "relay_server")]
        wrong = sorted(n for n in own if not under(n, "kiosk.config", "kiosk.devices", "relay_server.logs"))
        if wrong:
            bad[str(p.relative_to(ROOT))] = wrong
    assert not bad


def test_video_imports_no_ui() -> None:
    """The media edge never imports Kivy, screens, UI or apps."""
    bad = {str(p.relative_to(ROOT)): sorted(n for n in imports_of(p)
                                            if under(n, "kivy", "kiosk.ui", "kiosk.screens", "kiosk.apps"))
           for p in modules("kiosk/video")}
    assert not {k: v for k, v in bad.items() if v}
