"""The call log: one SQLite row per call, refused attempts counted per minute, and the monthly report.

No personal data is stored: terminal and department ids, timestamps, who answered, how it ended.

A call's row is written when it starts ringing, updated when it is answered and when it ends, so a relay that
crashes loses no call: rows it left unfinished are closed at the next start (``end_reason = "relay_restart"``).
A call its members resume on the restarted relay (``resume``) reopens that row (or one closed as ``shutdown``):
its start and answer stay, ``resumed_at`` says when it was resumed, and its end is written as usual.
:class:`DurableCallLog` is what the relay uses: it never raises, keeps records in memory while the file cannot be
written (read-only, disk full, locked) and writes them once it can, and moves a corrupt file aside.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sqlite3
import statistics
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common.logs import event
from relay_server.core import CallRecord

log = logging.getLogger("relay")

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call TEXT PRIMARY KEY,
    department TEXT NOT NULL,
    counter TEXT NOT NULL,
    created_at REAL NOT NULL,
    answered_at REAL,
    answered_by TEXT,
    ended_at REAL,
    outcome TEXT NOT NULL,
    end_reason TEXT NOT NULL,
    max_members INTEGER NOT NULL,
    resumed_at REAL
);
CREATE INDEX IF NOT EXISTS calls_created ON calls (created_at);
CREATE TABLE IF NOT EXISTS refused (
    minute REAL NOT NULL,
    department TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (minute, department, outcome)
);
"""

# A resumed call's record: the row of the call it continues keeps its start and answer; a row that ended for
# another reason than the relay stopping is never reopened.
RESUMED_UPSERT = (
    "INSERT INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (call) DO UPDATE SET"
    " ended_at = excluded.ended_at, outcome = excluded.outcome, end_reason = excluded.end_reason,"
    " max_members = max(calls.max_members, excluded.max_members), resumed_at = excluded.resumed_at"
    " WHERE calls.ended_at IS NULL OR calls.end_reason IN ('shutdown', 'relay_restart')"
    " OR calls.resumed_at = excluded.resumed_at"
)
REFUSED_OUTCOMES = ("closed", "unavailable")  # calls refused at once: counted per minute, not one row each
IN_PROGRESS = ("ringing", "active")  # outcomes of a row whose call has not ended (yet)

REPORT_COLUMNS = (
    "department",
    "calls",
    "answered",
    "unanswered",
    "cancelled",
    "abandoned",
    "closed",
    "unavailable",
    "median_wait_s",
    "median_duration_s",
)


class CallLog:
    """SQLite call log. ``path`` may be ``":memory:"``. Not thread-safe: use from one thread.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a call log (:class:`DurableCallLog` handles these).
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) not in ("", ":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path) or ":memory:", check_same_thread=False, timeout=2.0)
        try:
            self.db.executescript(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-256;" + SCHEMA
            )
            self._migrate()
        except BaseException:
            self.db.close()
            raise

    def _migrate(self) -> None:
        """Files from before calls were written at their start have ``ended_at NOT NULL``: rebuild the table."""
        cols = {row[1]: row[3] for row in self.db.execute("PRAGMA table_info(calls)")}
        if "resumed_at" not in cols:
            with self.db:
                self.db.execute("ALTER TABLE calls ADD COLUMN resumed_at REAL")
        if cols.get("ended_at"):
            with self.db:
                self.db.execute("ALTER TABLE calls RENAME TO calls_v1")
                self.db.executescript(SCHEMA.split("CREATE INDEX")[0])
                self.db.execute("INSERT INTO calls SELECT * FROM calls_v1")
                self.db.execute("DROP TABLE calls_v1")
                self.db.execute("CREATE INDEX IF NOT EXISTS calls_created ON calls (created_at)")

    def record(self, r: CallRecord) -> None:
        """Write (or update) one call's row."""
        self.write([r])

    def write(self, records: Iterable[CallRecord]) -> None:
        """Write a batch in one transaction: call rows upserted, refused attempts added to their minute's count."""
        refused: dict[tuple[float, str, str], int] = {}
        with self.db:
            for r in records:
                if r.outcome in REFUSED_OUTCOMES and r.ended_at == r.created_at and r.answered_at is None:
                    key = (r.created_at // 60 * 60, r.department, r.outcome)
                    refused[key] = refused.get(key, 0) + 1
                    continue
                row = (
                    r.call,
                    r.department,
                    r.counter,
                    r.created_at,
                    r.answered_at,
                    r.answered_by,
                    r.ended_at,
                    r.outcome,
                    r.end_reason,
                    r.max_members,
                    r.resumed_at,
                )
                self.db.execute(
                    RESUMED_UPSERT
                    if r.resumed_at is not None
                    else "INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    row,
                )
            for (minute, dept, outcome), n in refused.items():
                self.db.execute(
                    "INSERT INTO refused VALUES (?,?,?,?) ON CONFLICT (minute, department, outcome)"
                    " DO UPDATE SET count = count + excluded.count",
                    (minute, dept, outcome, n),
                )

    def close_unfinished(self, now: float) -> int:
        """Rows of calls a stopped relay never finished: ended now with reason ``relay_restart``; how many."""
        with self.db:
            cur = self.db.execute(
                "UPDATE calls SET ended_at = ?, end_reason = 'relay_restart',"
                " outcome = CASE WHEN answered_at IS NULL THEN 'abandoned' ELSE 'answered' END"
                " WHERE ended_at IS NULL",
                (now,),
            )
        return cur.rowcount

    def records(self, start: float = 0.0, end: float = float("inf")) -> list[CallRecord]:
        rows = self.db.execute(
            "SELECT call, department, counter, created_at, ended_at, outcome, end_reason, answered_at, answered_by,"
            " max_members, resumed_at FROM calls WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
            (start, min(end, 1e18)),
        ).fetchall()
        return [CallRecord(*row) for row in rows]

    def refused(self, start: float = 0.0, end: float = float("inf")) -> list[CallRecord]:
        """Refused attempts as records (one per attempt, at the start of its minute), for the report."""
        rows = self.db.execute(
            "SELECT minute, department, outcome, count FROM refused WHERE minute >= ? AND minute < ?",
            (start, min(end, 1e18)),
        ).fetchall()
        return [
            CallRecord("", dept, "", minute, minute, outcome, outcome)
            for minute, dept, outcome, count in rows
            for _ in range(count)
        ]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> CallLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DurableCallLog:
    """The relay's call log: never raises, never stops the relay, loses nothing it can keep.

    * The file cannot be opened or written (read-only, disk full, locked, directory missing): records stay in
      memory (at most ``max_pending``, oldest dropped and counted) and every :meth:`flush` tries again.
    * The file is not a database or is damaged: it is renamed ``NAME.corrupt-YYYYmmddTHHMMSS`` (with its
      ``-wal``/``-shm``), an ERROR line says where it went, and a fresh file takes its place.

    Used from one thread (the relay's call-log executor); :meth:`status` may be read from any thread.

    Args:
        path: the SQLite file, or ``""``/``":memory:"``.
        clock: wall-clock seconds, for file names and rows left unfinished.
    """

    def __init__(self, path: str | Path, *, max_pending: int = 100_000, clock: Any = time.time) -> None:
        self.path = str(path) or ":memory:"
        self.clock = clock
        self.max_pending = max_pending
        self.pending: deque[CallRecord] = deque()
        self.db: CallLog | None = None
        self.dropped = 0
        self.write_errors = 0
        self.moved_aside: list[str] = []
        self.last_error = ""
        self._first_open = True
        self._open()

    # -- state --------------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.db is not None and not self.pending

    def status(self) -> dict[str, Any]:
        """For ``/healthz`` and metrics: ``ok`` or ``degraded``, records waiting, the last problem."""
        return {
            "state": "ok" if self.ok else "degraded",
            "pending": len(self.pending),
            "dropped": self.dropped,
            "write_errors": self.write_errors,
            "last_error": self.last_error,
            "moved_aside": list(self.moved_aside),
        }

    # -- reading ------------------------------------------------------------------------------
    def records(self, start: float = 0.0, end: float = float("inf")) -> list[CallRecord]:
        """Calls that started in [start, end): those in the file, updated by those still waiting to be written."""
        by_call: dict[str, CallRecord] = {}
        if self.db is not None:
            try:
                by_call = {r.call: r for r in self.db.records(start, end)}
            except sqlite3.Error as err:
                self._failed("read", err)
        for r in list(self.pending):
            if start <= r.created_at < end and r.outcome not in REFUSED_OUTCOMES:
                by_call[r.call] = r
        return sorted(by_call.values(), key=lambda r: r.created_at)

    def finished(self, start: float = 0.0, end: float = float("inf")) -> list[CallRecord]:
        """What the monthly report counts: ended calls and refused attempts (one record each) in [start, end)."""
        out = [r for r in self.records(start, end) if r.ended_at is not None]
        if self.db is not None:
            try:
                out += self.db.refused(start, end)
            except sqlite3.Error as err:
                self._failed("read", err)
        out += [
            r for r in list(self.pending) if r.outcome in REFUSED_OUTCOMES and start <= r.created_at < end
        ]
        return out

    # -- writing ------------------------------------------------------------------------------
    def record(self, r: CallRecord) -> None:
        """Queue one record and write everything queued (or keep it for the next try)."""
        self.add(r)
        self.flush()

    def add(self, r: CallRecord) -> None:
        if len(self.pending) >= self.max_pending:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append(r)

    def flush(self) -> bool:
        """Write what is queued; True when nothing is left waiting."""
        if self.db is None and not self._open():
            return False
        if not self.pending:
            return True
        batch = list(self.pending)
        for attempt in (1, 2):
            try:
                assert self.db is not None
                self.db.write(batch)
                break
            except sqlite3.Error as err:
                self._failed("write", err)
                if attempt == 2 or self.db is None:  # a damaged file was replaced: one more try, at once
                    return False
        for _ in batch:
            self.pending.popleft()
        if self.last_error:
            event(log, "calllog_recovered", logging.WARNING, path=self.path, written=len(batch))
            self.last_error = ""
        return True

    def close(self) -> None:
        self.flush()
        if self.pending:
            event(
                log,
                "calllog_lost_on_stop",
                logging.ERROR,
                path=self.path,
                records=len(self.pending),
                error=self.last_error,
            )
        if self.db is not None:
            self.db.close()
            self.db = None

    # -- opening and faults -------------------------------------------------------------------
    def _open(self) -> bool:
        try:
            self.db = CallLog(self.path)
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) or not self._move_aside(err):
                self._failed("open", err)
                return False
            try:
                self.db = CallLog(self.path)
            except (sqlite3.Error, OSError) as err2:
                self._failed("open", err2)
                return False
        except OSError as err:  # the folder cannot be created
            self._failed("open", err)
            return False
        if not self._first_open:
            return True
        try:
            unfinished = self.db.close_unfinished(self.clock())
        except sqlite3.Error as err:
            self._failed("open", err)
            return False
        self._first_open = False  # later re-opens must not close calls that this relay is still carrying
        if unfinished:
            event(log, "calllog_unfinished_calls_closed", logging.WARNING, path=self.path, calls=unfinished)
        return True

    def _move_aside(self, err: Exception) -> bool:
        """Rename a damaged file (and its WAL) so that a fresh one can be made; False if that is impossible."""
        if self.path == ":memory:":
            return False
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(self.clock()))
        target = f"{self.path}.corrupt-{stamp}"
        try:
            os.replace(self.path, target)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, target + suffix)
        except OSError as move_err:
            self.last_error = f"damaged ({err}) and cannot be moved aside: {move_err}"
            return False
        self.moved_aside.append(target)
        event(
            log,
            "calllog_corrupt",
            logging.ERROR,
            path=self.path,
            error=str(err),
            moved_to=target,
            action="started a fresh call log; see docs/operations.md, 'A damaged call log'",
        )
        return True

    def _failed(self, what: str, err: Exception) -> None:
        self.write_errors += 1
        text = f"{what}: {type(err).__name__}: {err}"
        if (
            self.db is not None
            and isinstance(err, sqlite3.DatabaseError)
            and not isinstance(err, sqlite3.OperationalError)
        ):
            # Damaged while open: close, move aside, start fresh; the queued records go to the new file.
            self.db.close()
            self.db = None
            if self._move_aside(err):
                self._open()
                return
        if text != self.last_error:
            event(
                log,
                "calllog_unavailable",
                logging.ERROR,
                path=self.path,
                error=text,
                pending=len(self.pending),
                action="calls go on; records are kept in memory and written when the file can be written",
            )
        self.last_error = text


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
        count = {
            o: sum(1 for r in recs if r.outcome == o)
            for o in ("answered", "unanswered", "cancelled", "abandoned", "closed", "unavailable")
        }
        waits = [r.answered_at - r.created_at for r in recs if r.answered_at is not None]
        durations = [
            r.ended_at - r.answered_at
            for r in recs
            if r.answered_at is not None and r.ended_at is not None and r.end_reason != "relay_restart"
        ]
        rows.append(
            ReportRow(
                dept,
                count["answered"] + count["unanswered"] + count["cancelled"] + count["abandoned"],
                count["answered"],
                count["unanswered"],
                count["cancelled"],
                count["abandoned"],
                count["closed"],
                count["unavailable"],
                round(statistics.median(waits), 1) if waits else None,
                round(statistics.median(durations), 1) if durations else None,
            )
        )
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
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    return "\n".join(lines) + "\n"
