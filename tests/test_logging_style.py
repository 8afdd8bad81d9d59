"""One logging style: every operational log line is written by ``common.logs.event`` (``event=NAME k=v …``), the
form docs/operations.md tells technicians to filter on and the tests match; a plain ``log.info("… %s", x)`` (or
``logging.warning``, ``log.exception``, ``log.log``) anywhere else fails here, naming the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("common", "relay_server", "kiosk", "bench")
LEVEL_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "log"}
ALLOWED = {
    "common/logs.py",  # the helper itself
}
# Files excused while their owner converts them (none left). Each entry must still hold a plain call, so a converted
# file cannot stay excused.
NOT_YET: set[str] = set()


def _logger_names(tree: ast.Module) -> set[str]:
    """Names bound to ``logging.getLogger(...)`` anywhere in the module (``log``, ``logger``, ``self.log`` …)."""
    names = {"logging"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and func.attr == "getLogger":
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        names.add(t.id)
                    elif isinstance(t, ast.Attribute):
                        names.add(t.attr)
    return names


def plain_log_calls(path: Path) -> list[int]:
    """Line numbers of ``<logger>.info(...)``-style calls in one file."""
    tree = ast.parse(path.read_text(), str(path))
    loggers = _logger_names(tree)
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in LEVEL_METHODS:
            continue
        owner = node.func.value
        name = (
            owner.id
            if isinstance(owner, ast.Name)
            else owner.attr
            if isinstance(owner, ast.Attribute)
            else ""
        )
        if name in loggers:
            lines.append(node.lineno)
    return lines


def test_operational_logging_goes_through_the_structured_helper() -> None:
    """No module logs with a plain format string: each line is ``event(log, "name", level, key=value)``."""
    bad = []
    for package in CHECKED:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED or rel in NOT_YET:
                continue
            bad += [f"{rel}:{n}" for n in plain_log_calls(path)]
    assert not bad, "plain log calls (use common.logs.event(log, 'name', level, key=value)):\n" + "\n".join(
        bad
    )


def test_the_files_not_yet_converted_still_need_their_excuse() -> None:
    """An entry of NOT_YET whose file is converted (or gone) must leave the list, so the check covers it again."""
    stale = [rel for rel in NOT_YET if not (ROOT / rel).exists() or not plain_log_calls(ROOT / rel)]
    assert not stale, f"remove from NOT_YET (converted or gone): {stale}"


def test_the_check_sees_the_forms_it_forbids(tmp_path: Path) -> None:
    """The checker finds module loggers, attribute loggers and the logging module's own functions."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import logging\n"
        "log = logging.getLogger(__name__)\n"
        "log.info('x %s', 1)\n"
        "logging.warning('y')\n"
        "class A:\n"
        "    def __init__(self) -> None:\n"
        "        self.logger = logging.getLogger('a')\n"
        "        self.logger.exception('z')\n"
        "from common.logs import event\n"
        "event(log, 'fine', value=1)\n"
    )
    assert plain_log_calls(sample) == [3, 4, 8]
