"""The doctor's results and how they are printed: one :class:`CheckResult` per check, ✓/!/✗/– per line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CheckResult", "format_report", "skip", "warn"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: short name shown in the checklist (``camera``, ``relay token``).
        ok: passed (✓) or failed (✗).
        detail: what was found; may span several lines (device lists).
        advice: for a failure, one line a technician on site can act on.
        skipped: not run because an earlier check it depends on failed (shown as –, never a failure by itself).
        warning: it works, but not the way a terminal in the field should (a demo token, a synthetic camera):
            shown as !, with advice; a failure only with ``kiosk doctor --strict``.
    """

    name: str
    ok: bool
    detail: str
    advice: str = ""
    skipped: bool = False
    warning: bool = False

    @property
    def failed(self) -> bool:
        """Whether this result counts as a failure."""
        return not self.ok and not self.skipped

    @property
    def warned(self) -> bool:
        """Whether this result is a warning (it passed, with a reservation)."""
        return self.ok and self.warning


def warn(name: str, detail: str, advice: str) -> CheckResult:
    """A check that passed with a reservation a technician should act on before the terminal goes live."""
    return CheckResult(name, True, detail, advice, warning=True)


def skip(name: str, why: str) -> CheckResult:
    """A check that was not run because one it depends on failed."""
    return CheckResult(name, False, f"skipped: {why}", skipped=True)


def format_report(results: Iterable[CheckResult], title: str = "") -> str:
    """The checklist as text: ``✓ name  detail``, ``✗ …`` with ``→ advice`` below, and a summary line."""
    results = list(results)
    width = max([len(r.name) for r in results] + [10])
    lines = [title] if title else []
    for r in results:
        mark = "–" if r.skipped else ("!" if r.warned else ("✓" if r.ok else "✗"))
        detail_lines = r.detail.splitlines() or [""]
        lines.append(f"{mark} {r.name:<{width}}  {detail_lines[0]}")
        lines += [f"  {'':<{width}}  {extra}" for extra in detail_lines[1:]]
        if (r.failed or r.warned) and r.advice:
            lines.append(f"  {'':<{width}}  → {r.advice}")
    failed = [r.name for r in results if r.failed]
    warned = [r.name for r in results if r.warned]
    if failed:
        lines.append(f"\n{len(failed)} check(s) failed: {', '.join(failed)}")
    elif warned:
        lines.append(f"\nall {len(results)} checks passed, {len(warned)} with a warning")
    else:
        lines.append(f"\nall {len(results)} checks passed")
    if warned:
        lines.append(
            f"{len(warned)} warning(s): {', '.join(warned)} (not ready for the field; "
            "--strict makes warnings fail)"
        )
    return "\n".join(lines) + "\n"
