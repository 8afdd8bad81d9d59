"""The import rules of docs/architecture.md ("Which way imports point"), checked on the source of every module.

Every module of ``common``, ``relay_server`` and ``kiosk`` is mapped to exactly one layer by ``LAYER_RULES``
(first match wins); every project import must point to a layer the importing layer may use; pure layers import no
I/O library. A module that no rule maps, or a rule that names a file that no longer exists, fails the test: a new or
renamed module must be placed in a layer here (and in docs/architecture.md's module map), never silently skipped.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "relay_server", "kiosk")
IO_LIBRARIES = (
    "websockets",
    "aiortc",
    "aioice",
    "av",
    "cv2",
    "serial",
    "kivy",
    "sqlite3",
    "socket",
    "subprocess",
)

# (path pattern relative to the repository, layer); the first match wins. Plain paths must exist.
LAYER_RULES: tuple[tuple[str, str], ...] = (
    ("common/*.py", "shared"),
    # relay: pure core, edges, command
    ("relay_server/__init__.py", "relay-pure"),
    ("relay_server/config.py", "relay-pure"),
    ("relay_server/core.py", "relay-pure"),
    ("relay_server/actions.py", "relay-pure"),
    ("relay_server/presence.py", "relay-pure"),
    ("relay_server/calls.py", "relay-pure"),
    ("relay_server/resume.py", "relay-pure"),
    ("relay_server/guards.py", "relay-pure"),
    ("relay_server/server.py", "relay-edge"),
    ("relay_server/connection.py", "relay-edge"),
    ("relay_server/endpoints.py", "relay-edge"),
    ("relay_server/store.py", "relay-edge"),
    ("relay_server/metrics.py", "relay-edge"),
    ("relay_server/admin/__init__.py", "relay-pure"),
    ("relay_server/admin/settings.py", "relay-pure"),
    ("relay_server/admin/auth.py", "relay-pure"),
    ("relay_server/admin/fleet.py", "relay-pure"),
    ("relay_server/admin/*.py", "relay-edge"),
    ("relay_server/__main__.py", "relay-command"),
    # terminals: pure cores
    ("kiosk/__init__.py", "kiosk-pure"),
    ("kiosk/config.py", "kiosk-pure"),
    ("kiosk/cli.py", "kiosk-pure"),
    ("kiosk/machine.py", "kiosk-pure"),
    ("kiosk/counter_state.py", "kiosk-pure"),
    ("kiosk/counter_events.py", "kiosk-pure"),
    ("kiosk/office_state.py", "kiosk-pure"),
    ("kiosk/office_events.py", "kiosk-pure"),
    ("kiosk/start_layout.py", "kiosk-pure"),
    ("kiosk/lamp_board.py", "kiosk-pure"),
    ("kiosk/assist/*.py", "kiosk-pure"),
    ("kiosk/video/stamp.py", "kiosk-pure"),
    ("kiosk/video/synthetic.py", "kiosk-pure"),
    ("kiosk/video/paths.py", "kiosk-pure"),
    ("kiosk/video/membership.py", "kiosk-pure"),
    ("kiosk/doctor/stun.py", "kiosk-pure"),
    ("kiosk/doctor/report.py", "kiosk-pure"),
    # terminals: edges
    ("kiosk/client.py", "client"),
    ("kiosk/devices/lamp_protocol.py", "kiosk-pure"),
    ("kiosk/devices/emulated_models.py", "kiosk-pure"),
    ("kiosk/devices/*.py", "devices"),
    ("kiosk/video/*.py", "media"),
    # terminals: UI
    ("kiosk/screens/*.py", "ui"),
    ("kiosk/ui/*.py", "ui"),
    # terminals: composition and commands
    ("kiosk/apps/office.py", "command"),
    ("kiosk/apps/counter_texts.py", "composition"),
    ("kiosk/apps/office_texts.py", "composition"),
    ("kiosk/apps/*.py", "composition"),
    ("kiosk/headless.py", "composition"),
    ("kiosk/health.py", "composition"),
    ("kiosk/lamp_agent.py", "composition"),
    ("kiosk/__main__.py", "command"),
    ("kiosk/call_test.py", "command"),
    ("kiosk/doctor/relay_judges.py", "command"),
    ("kiosk/doctor/*.py", "command"),
    # the tools that deliberately start a relay next to terminals (demo, screenshot scenes): one package
    ("kiosk/tools/*.py", "tool"),
)

_KIOSK_BELOW_COMMANDS = {"shared", "kiosk-pure", "client", "devices", "media", "ui", "composition"}
MAY_IMPORT: dict[str, set[str]] = {
    "shared": {"shared"},
    "relay-pure": {"shared", "relay-pure"},
    "relay-edge": {"shared", "relay-pure", "relay-edge"},
    "relay-command": {"shared", "relay-pure", "relay-edge", "relay-command"},
    "kiosk-pure": {"shared", "kiosk-pure"},
    "client": {"shared", "kiosk-pure", "client"},
    "devices": {"shared", "kiosk-pure", "devices"},
    "media": {"shared", "kiosk-pure", "devices", "media"},
    "ui": {"shared", "kiosk-pure", "ui"},
    "composition": _KIOSK_BELOW_COMMANDS,
    "command": _KIOSK_BELOW_COMMANDS | {"command"},
    # the tools that deliberately start a relay next to terminals (demo, screenshots)
    "tool": _KIOSK_BELOW_COMMANDS | {"command", "tool", "relay-pure", "relay-edge"},
}
PURE_LAYERS = {"shared", "relay-pure", "kiosk-pure"}


def module_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def layer_of(path: Path) -> str | None:
    rel = path.relative_to(ROOT).as_posix()
    for pattern, layer in LAYER_RULES:
        if fnmatch.fnmatchcase(rel, pattern) and "/" not in rel[len(pattern.rsplit("/", 1)[0]) + 1 :]:
            return layer
    return None


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (``from x import y`` gives ``x.y`` or ``x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def under(name: str, *packages: str) -> bool:
    """Whether module ``name`` is one of ``packages`` or inside one."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for p in module_files()}


def test_every_module_has_a_layer_and_every_rule_a_module() -> None:
    """A module missing from LAYER_RULES fails (it must be placed); a rule naming a vanished file fails too."""
    unmapped = [p.relative_to(ROOT).as_posix() for p in module_files() if layer_of(p) is None]
    assert not unmapped, (
        f"modules with no layer: {unmapped}; add them to LAYER_RULES and docs/architecture.md"
    )
    missing = [
        pattern
        for pattern, _ in LAYER_RULES
        if not any(ch in pattern for ch in "*?[") and not (ROOT / pattern).exists()
    ]
    assert not missing, f"LAYER_RULES names files that do not exist: {missing}"
    idle = [
        pattern
        for pattern, _ in LAYER_RULES
        if not any(fnmatch.fnmatchcase(p.relative_to(ROOT).as_posix(), pattern) for p in module_files())
    ]
    assert not idle, f"LAYER_RULES patterns that match no module: {idle}"


def test_every_import_points_to_an_allowed_layer() -> None:
    """relay never imports kiosk and vice versa (tools aside), screens import no media, devices no apps, …"""
    modules = project_modules()
    bad: list[str] = []
    for name, path in modules.items():
        layer = layer_of(path)
        assert layer is not None
        for imported in sorted(imports_of(path)):
            target = imported
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target not in modules or target == name:
                continue
            if not under(target, *PACKAGES):
                continue
            target_layer = layer_of(modules[target])
            if (
                target_layer is not None
                and target_layer not in MAY_IMPORT[layer]
                and target not in _parents(name)
            ):
                bad.append(f"{name} ({layer}) imports {target} ({target_layer})")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


TOOLS = "kiosk/tools/"


def test_only_the_tools_package_imports_the_relay() -> None:
    """Nothing in ``kiosk`` imports ``relay_server`` except ``kiosk/tools/`` (demo, screenshot scenes), and nothing
    in ``kiosk`` imports the tools: the terminals' programs never start a relay."""
    relay_importers = []
    tool_importers = []
    for path in module_files():
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith("kiosk/"):
            continue
        imported = imports_of(path)
        if not rel.startswith(TOOLS) and any(under(n, "relay_server") for n in imported):
            relay_importers.append(rel)
        if not rel.startswith(TOOLS) and any(under(n, "kiosk.tools") for n in imported):
            tool_importers.append(rel)
    assert not relay_importers, f"kiosk modules outside {TOOLS} importing relay_server: {relay_importers}"
    assert not tool_importers, f"kiosk modules importing {TOOLS}: {tool_importers}"
    assert any(under(n, "relay_server") for p in (ROOT / TOOLS).glob("*.py") for n in imports_of(p))


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_pure_layers_import_no_io_library() -> None:
    """The shared package, the relay core and the terminals' state machines import no I/O library."""
    bad = {}
    for path in module_files():
        if layer_of(path) in PURE_LAYERS:
            io = sorted(n for n in imports_of(path) if under(n, *IO_LIBRARIES))
            if io:
                bad[path.relative_to(ROOT).as_posix()] = io
    assert not bad, f"pure modules importing I/O libraries: {bad}"


def test_the_docs_call_pure_exactly_the_pure_layers() -> None:
    """Every module docs/architecture.md's module map calls pure is in a pure layer here, and the other way round."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    documented_pure: set[str] = set()
    package = None
    for line in text.splitlines():
        heading = re.match(r"### `(\w+)/`", line)
        if heading:
            package = heading.group(1)
        row = re.match(r"\| ((?:`[\w/.]+\.py`(?:, )?)+) \| ([^|]+) \|", line)
        if row and package and row.group(2).strip() == "pure":
            documented_pure.update(
                f"{package}/{name}" for name in re.findall(r"`([\w/.]+\.py)`", row.group(1))
            )
    layered_pure = {
        p.relative_to(ROOT).as_posix()
        for p in module_files()
        if layer_of(p) in PURE_LAYERS and p.name != "__init__.py"
    }
    assert documented_pure, "no module map with 'pure' rows found in docs/architecture.md"
    assert documented_pure <= layered_pure, (
        f"documented pure but not in a pure layer: {documented_pure - layered_pure}"
    )
    assert layered_pure <= documented_pure, (
        f"in a pure layer but not documented pure: {layered_pure - documented_pure}"
    )


def test_the_module_map_names_every_module() -> None:
    """docs/architecture.md's module map has a row for every module (or for the folder holding it)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    absent = []
    for path in module_files():
        if path.name == "__init__.py":
            continue
        parts = path.relative_to(ROOT).parts
        inner = "/".join(parts[1:])
        folders = {"/".join(parts[1:i]) + "/" for i in range(2, len(parts))}
        if f"`{inner}`" not in text and not any(f"`{f}`" in text for f in folders):
            absent.append(path.relative_to(ROOT).as_posix())
    assert not absent, f"docs/architecture.md's module map lacks: {absent}"
