"""What the fleet page shows, computed from the relay core, the terminals' health reports and the call log. Pure.

:class:`FleetState` follows the relay's actions (connect, disconnect, health, finished calls) and answers
:meth:`FleetState.snapshot`: every terminal with its problems (problems first), the live calls and today's numbers.
It never shows a token: terminal views are built field by field from the config and the reports.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from relay_server.config import RelayConfig
from relay_server.core import CallRecord, CallState, RelayCore

ROLE_ORDER = {"counter": 0, "office": 1, "lamp": 2}


@dataclass
class Link:
    online: bool = False
    since: float | None = None  # when it went online / offline (None: not since the relay started)
    peer: str = ""


@dataclass(frozen=True)
class HealthChange:
    """One change of a terminal's reported health, for the history in SQLite."""

    terminal: str
    at: float
    what: str  # "version", "device:<name>", "last_call"
    old: str
    new: str


@dataclass
class FleetState:
    config: RelayConfig
    links: dict[str, Link] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    health_at: dict[str, float] = field(default_factory=dict)
    today: list[CallRecord] = field(default_factory=list)  # finished calls since local midnight
    day: str = ""

    def __post_init__(self) -> None:
        for tid in self.config.terminals:
            self.links.setdefault(tid, Link())
        first = next(iter(self.config.offices.values()), None)
        self.tz = ZoneInfo(first.timezone if first else "UTC")

    # -- following the relay -----------------------------------------------------------------
    def connected(self, terminal: str, now: float, peer: str) -> None:
        link = self.links[terminal]
        if not link.online:
            link.since = now
        link.online, link.peer = True, peer

    def disconnected(self, terminal: str, now: float) -> None:
        link = self.links[terminal]
        if link.online:
            link.online, link.since = False, now

    def report(self, terminal: str, health: dict[str, Any], now: float) -> list[HealthChange]:
        """Keep ``health`` as the terminal's latest; return what changed (the first report changes everything)."""
        old = self.health.get(terminal, {})
        self.health[terminal] = health
        self.health_at[terminal] = now
        changes = []
        if old.get("version") != health.get("version"):
            changes.append(
                HealthChange(terminal, now, "version", str(old.get("version", "")), health["version"])
            )
        devices_old, devices_new = old.get("devices", {}), health.get("devices", {})
        for name in sorted(set(devices_old) | set(devices_new)):
            a, b = _device_text(devices_old.get(name)), _device_text(devices_new.get(name))
            if a != b:
                changes.append(HealthChange(terminal, now, f"device:{name}", a, b))
        a, b = _call_text(old.get("last_call")), _call_text(health.get("last_call"))
        if a != b:
            changes.append(HealthChange(terminal, now, "last_call", a, b))
        return changes

    def finished(self, record: CallRecord, now: float) -> None:
        self._roll_day(now)
        self.today.append(record)

    def seed_today(self, records: list[CallRecord], now: float) -> None:
        self.day = self._day(now)
        self.today = [r for r in records if self._day(r.created_at) == self.day]

    def day_start(self, now: float) -> float:
        local = datetime.fromtimestamp(now, self.tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def _day(self, t: float) -> str:
        return datetime.fromtimestamp(t, self.tz).date().isoformat()

    def _roll_day(self, now: float) -> None:
        day = self._day(now)
        if day != self.day:
            self.day = day
            self.today = [r for r in self.today if self._day(r.created_at) == day]

    # -- what the page shows -----------------------------------------------------------------
    def problems(self, terminal: str) -> list[dict[str, str]]:
        """The terminal's problems, worst first: offline, then devices not ok (missing, failing)."""
        out = []
        if not self.links[terminal].online:
            out.append({"kind": "offline", "device": "", "reason": ""})
        for name, dev in sorted(self.health.get(terminal, {}).get("devices", {}).items()):
            if dev.get("state") != "ok":
                out.append(
                    {"kind": dev.get("state", "failing"), "device": name, "reason": dev.get("reason", "")}
                )
        return out

    def terminals(self, core: RelayCore, now: float, rtt_ms: dict[str, float | None]) -> list[dict[str, Any]]:
        """Every configured terminal as the page lists it: problems first, then by role and id."""
        rows = []
        for tid, t in self.config.terminals.items():
            link = self.links[tid]
            health = self.health.get(tid, {})
            online = core.online.get(tid)
            row: dict[str, Any] = {
                "id": tid,
                "role": t.role,
                "name": t.name,
                "departments": list(t.departments),
                "online": link.online,
                "since": link.since,
                "address": link.peer if link.online else "",
                "version": health.get("version", ""),
                "rtt_ms": rtt_ms.get(tid),
                "devices": [
                    {"name": n, "state": d.get("state"), "reason": d.get("reason", "")}
                    for n, d in sorted(health.get("devices", {}).items())
                ],
                "last_call": health.get("last_call"),
                "health_at": self.health_at.get(tid),
                "problems": self.problems(tid),
                "in_call": core.call_of.get(tid),
            }
            if t.role == "office":
                row["status"] = (
                    "away"
                    if online is not None and online.away
                    else ("available" if online is not None else "offline")
                )
            rows.append(row)
        rows.sort(key=lambda r: (not r["problems"], ROLE_ORDER.get(r["role"], 9), r["id"]))
        return rows

    def calls(self, core: RelayCore, now: float) -> list[dict[str, Any]]:
        """Live calls, oldest first: ringing (how long) or answered (members, duration, media path)."""
        out = []
        for call in sorted(core.calls.values(), key=lambda c: c.created_at):
            counter_health = self.health.get(call.counter, {})
            path = ""
            if self.health_at.get(call.counter, 0) >= call.created_at:
                path = (counter_health.get("last_call") or {}).get("path", "")
            out.append(
                {
                    "call": call.id,
                    "counter": call.counter,
                    "counter_name": self.config.terminals[call.counter].name,
                    "department": call.department,
                    "state": call.state.value,
                    "members": list(call.members),
                    "offline": [m for m in call.members if m in core.offline_members],
                    "ringing_s": round(now - call.created_at, 1) if call.state is CallState.RINGING else None,
                    "duration_s": round(now - call.answered_at, 1) if call.answered_at is not None else None,
                    "media_path": path,
                }
            )
        return out

    def today_numbers(self, now: float) -> dict[str, Any]:
        """Today (in the first office's time zone): calls that rang, answered, missed, median wait."""
        self._roll_day(now)
        rang = [r for r in self.today if r.outcome in ("answered", "unanswered", "cancelled", "abandoned")]
        waits = [r.answered_at - r.created_at for r in rang if r.answered_at is not None]
        answered = len(waits)
        return {
            "day": self.day,
            "calls": len(rang),
            "answered": answered,
            "missed": len(rang) - answered,
            "median_wait_s": round(statistics.median(waits), 1) if waits else None,
        }

    def snapshot(self, core: RelayCore, now: float, rtt_ms: dict[str, float | None]) -> dict[str, Any]:
        terminals = self.terminals(core, now, rtt_ms)
        return {
            "time": now,
            "terminals": terminals,
            "calls": self.calls(core, now),
            "today": self.today_numbers(now),
            "problems": sum(1 for t in terminals if t["problems"]),
            "departments": {d.id: d.name for d in self.config.departments.values()},
        }


def _device_text(dev: dict[str, Any] | None) -> str:
    if dev is None:
        return ""
    return dev.get("state", "") + (f": {dev['reason']}" if dev.get("reason") else "")


def _call_text(call: dict[str, Any] | None) -> str:
    if not call:
        return ""
    return " ".join(str(call.get(k, "")) for k in ("path", "quality")).strip()
