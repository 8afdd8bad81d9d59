"""The call log: one SQLite row per finished call, and the monthly report built from it.

No personal data is stored: terminal and department ids, timestamps, who answered, how it ended.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from relay_server.core import CallRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call TEXT PRIMARY KEY,
    department TEXT NOT NULL,
    counter TEXT NOT NULL,
    created_at REAL NOT NULL,
    answered_at REAL,
    answered_by TEXT,
    ended_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    end_reason TEXT NOT NULL,
    max_members INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_created ON calls (created_at);
"""

REPORT_COLUMNS = ("department", "calls", "answered", "unanswered", "cancelled", "abandoned", "closed",
                  "unavailable", "median_wait_s", "median_duration_s")


class CallLog:
    """SQLite call log. ``path`` may be ``":memory:"``. Not thread-safe: use from one thread."""

    def __init__(self, path: str | Path) -> None:
        if str(path) not in ("", ":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path) or ":memory:", check_same_thread=False)
        self.db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + SCHEMA)

    def record(self, r: CallRecord) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?)",
                (r.call, r.department, r.counter, r.created_at, r.answered_at, r.answered_by, r.ended_at,
                 r.outcome, r.end_reason, r.max_members),
            )

    def records(self, start: float = 0.0, end: float = float("inf")) -> list[CallRecord]:
        rows = self.db.execute(
            "SELECT call, department, counter, created_at, ended_at, outcome, end_reason, answered_at, answered_by,"
            " max_members FROM calls WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
            (start, min(end, 1e18)),
        ).fetchall()
        return [CallRecord(*row) for row in rows]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> CallLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ReportRow:
    department: str
    calls: int
    answered: int
    unanswered: int
    cancelled: int
    abandoned: int
    closed: int
    unavailable: int
    median_wait_s: float | None
    median_duration_s: float | None


def month_bounds(month: str, tz: ZoneInfo) -> tuple[float, float]:
    """Epoch seconds of the first instant of ``YYYY-MM`` and of the next month, in ``tz``."""
    year, mon = (int(x) for x in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return start.timestamp(), end.timestamp()


def build_report(records: Iterable[CallRecord], departments: Iterable[str]) -> list[ReportRow]:
    """Per-department counts and medians. ``calls`` counts calls that rang (rejected attempts apart)."""
    by_dept: dict[str, list[CallRecord]] = {d: [] for d in departments}
    for r in records:
        by_dept.setdefault(r.department, []).append(r)
    rows = []
    for dept, recs in by_dept.items():
        count = {o: sum(1 for r in recs if r.outcome == o) for o in
                 ("answered", "unanswered", "cancelled", "abandoned", "closed", "unavailable")}
        waits = [r.answered_at - r.created_at for r in recs if r.answered_at is not None]
        durations = [r.ended_at - r.answered_at for r in recs if r.answered_at is not None]
        rows.append(ReportRow(
            dept, count["answered"] + count["unanswered"] + count["cancelled"] + count["abandoned"],
            count["answered"], count["unanswered"], count["cancelled"], count["abandoned"], count["closed"],
            count["unavailable"],
            round(statistics.median(waits), 1) if waits else None,
            round(statistics.median(durations), 1) if durations else None,
        ))
    return rows


def format_report(rows: list[ReportRow], as_csv: bool = False) -> str:
    values = [[getattr(r, c) for c in REPORT_COLUMNS] for r in rows]
    if as_csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(REPORT_COLUMNS)
        w.writerows(["" if v is None else v for v in row] for row in values)
        return buf.getvalue()
    table = [list(REPORT_COLUMNS)] + [["-" if v is None else str(v) for v in row] for row in values]
    widths = [max(len(row[i]) for row in table) for i in range(len(REPORT_COLUMNS))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in table]
    return "\n".join(lines) + "\n"
