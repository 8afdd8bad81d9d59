"""The fleet page's SQLite tables: each terminal's latest health, the history of its changes, the audit log.

Kept in the relay's database file (``[server] database``) next to the call log, through a connection of its own.
Not thread-safe: the service uses it from one worker thread.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay_server.admin.fleet import HealthChange

SCHEMA = """
CREATE TABLE IF NOT EXISTS terminal_health (
    terminal TEXT PRIMARY KEY,
    at REAL NOT NULL,
    health TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS health_history (
    terminal TEXT NOT NULL,
    at REAL NOT NULL,
    what TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS health_history_terminal ON health_history (terminal, at);
CREATE TABLE IF NOT EXISTS audit (
    at REAL NOT NULL,
    user TEXT NOT NULL,
    peer TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class AuditEntry:
    at: float
    user: str
    peer: str
    action: str  # login, login_failed, logout, lamp, ring, disconnect
    target: str
    result: str


class FleetStore:
    """``path`` may be ``":memory:"``."""

    def __init__(self, path: str | Path) -> None:
        if str(path) not in ("", ":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path) or ":memory:", check_same_thread=False)
        self.db.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;" + SCHEMA
        )

    def save_health(
        self, terminal: str, at: float, health: dict[str, Any], changes: list[HealthChange]
    ) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO terminal_health VALUES (?,?,?)",
                (terminal, at, json.dumps(health, ensure_ascii=False)),
            )
            self.db.executemany(
                "INSERT INTO health_history VALUES (?,?,?,?,?)",
                [(c.terminal, c.at, c.what, c.old, c.new) for c in changes],
            )

    def latest_health(self) -> dict[str, tuple[float, dict[str, Any]]]:
        rows = self.db.execute("SELECT terminal, at, health FROM terminal_health").fetchall()
        return {t: (at, json.loads(h)) for t, at, h in rows}

    def history(self, terminal: str, limit: int = 50) -> list[HealthChange]:
        rows = self.db.execute(
            "SELECT terminal, at, what, old, new FROM health_history WHERE terminal = ? "
            "ORDER BY at DESC, rowid DESC LIMIT ?",
            (terminal, limit),
        ).fetchall()
        return [HealthChange(*row) for row in rows]

    def audit(self, entry: AuditEntry) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO audit VALUES (?,?,?,?,?,?)",
                (entry.at, entry.user, entry.peer, entry.action, entry.target, entry.result),
            )

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        rows = self.db.execute(
            "SELECT at, user, peer, action, target, result FROM audit ORDER BY at DESC, rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [AuditEntry(*row) for row in rows]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> FleetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
