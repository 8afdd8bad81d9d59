"""Monthly numbers per department from the call log, for the fleet page's charts and its CSV. Pure.

Each department's month and days are counted in its own office's time zone, as ``relay-server report`` does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from relay_server.config import RelayConfig
from relay_server.core import CallRecord
from relay_server.store import build_report, format_report, month_bounds

RANG = ("answered", "unanswered", "cancelled", "abandoned")  # outcomes of calls that rang


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def month_span(config: RelayConfig, month: str) -> tuple[float, float]:
    """The widest [start, end) over every office's time zone: what to read from the call log for ``month``."""
    bounds = [month_bounds(month, ZoneInfo(o.timezone)) for o in config.offices.values()]
    return min(b[0] for b in bounds), max(b[1] for b in bounds)


def month_records(config: RelayConfig, records: Iterable[CallRecord], month: str) -> list[CallRecord]:
    """The records of ``month``, each department's month in its office's time zone."""
    bounds = {
        d.id: month_bounds(month, ZoneInfo(config.offices[d.office].timezone))
        for d in config.departments.values()
    }
    return [
        r
        for r in records
        if r.department in bounds and bounds[r.department][0] <= r.created_at < bounds[r.department][1]
    ]


def report_csv(config: RelayConfig, records: Iterable[CallRecord], month: str) -> str:
    """Exactly what ``relay-server report --csv --month MONTH`` prints."""
    return format_report(build_report(month_records(config, records, month), config.departments), as_csv=True)


def _summary(recs: list[CallRecord]) -> dict[str, Any]:
    rang = [r for r in recs if r.outcome in RANG]
    waits = [r.answered_at - r.created_at for r in rang if r.answered_at is not None]
    durations = [
        r.ended_at - r.answered_at for r in rang if r.answered_at is not None and r.ended_at is not None
    ]
    return {
        "calls": len(rang),
        "answered": len(waits),
        "answered_pct": round(100 * len(waits) / len(rang), 1) if rang else None,
        "wait_median_s": round(statistics.median(waits), 1) if waits else None,
        "wait_p90_s": _round(percentile(waits, 90)),
        "duration_median_s": round(statistics.median(durations), 1) if durations else None,
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def monthly_charts(config: RelayConfig, records: Iterable[CallRecord], month: str) -> dict[str, Any]:
    """Per department: the month's totals and one entry per day (calls, answered %, wait median/p90, duration)."""
    recs = month_records(config, records, month)
    year, mon = (int(x) for x in month.split("-"))
    days = (datetime(year + (mon == 12), mon % 12 + 1, 1) - datetime(year, mon, 1)).days
    out: dict[str, Any] = {"month": month, "days": days, "departments": []}
    for dept in config.departments.values():
        tz = ZoneInfo(config.offices[dept.office].timezone)
        mine = [r for r in recs if r.department == dept.id]
        per_day: list[list[CallRecord]] = [[] for _ in range(days)]
        for r in mine:
            per_day[datetime.fromtimestamp(r.created_at, tz).day - 1].append(r)
        out["departments"].append(
            {
                "id": dept.id,
                "name": dict(dept.name),
                "month": _summary(mine),
                "daily": [_summary(day) for day in per_day],
            }
        )
    return out
