"""Shared benchmark plumbing: percentiles, result rows and tables, process CPU/RSS sampling, fd limits.

Every benchmark returns :class:`Row` objects; the runner prints them as one Markdown table (the same text goes
into ``docs/performance.md``). A row carries our measurement, the baseline measured in the same run (if the
benchmark has one), the ratio between them and the project's goal with a verdict, so a reader never has to
compare numbers from different runs on this noisy machine.

Process sampling reads ``/proc`` directly (Linux only, no extra dependency): CPU is the sum of user and system
time of a process and, optionally, all of its descendants (Chromium runs as a tree of processes).
"""

from __future__ import annotations

import math
import os
import platform
import resource
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------------
# Statistics


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    k = (len(data) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


@dataclass(frozen=True)
class Stats:
    """Median and a tail percentile of a sample, with the sample size."""

    n: int
    p50: float
    tail: float
    tail_p: int = 99
    mean: float = math.nan
    max: float = math.nan

    @classmethod
    def of(cls, values: Sequence[float], tail_p: int = 99) -> Stats:
        vals = list(values)
        if not vals:
            return cls(0, math.nan, math.nan, tail_p)
        return cls(
            len(vals),
            percentile(vals, 50),
            percentile(vals, tail_p),
            tail_p,
            sum(vals) / len(vals),
            max(vals),
        )


# ---------------------------------------------------------------------------------------------------
# Result rows and tables


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with about ``digits`` significant digits, or '–' when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 10**digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(mag)))
    return f"{value:.{decimals}f}"


@dataclass
class Row:
    """One measured quantity of one benchmark case.

    ``ours``/``base`` are either :class:`Stats` (latencies: median and tail) or plain numbers (rates, CPU, memory).
    ``goal`` is a predicate on (ours, base) with a short text; ``lower_is_better`` picks the ratio direction.
    """

    bench: str
    case: str
    metric: str
    unit: str
    ours: Stats | float | None
    base: Stats | float | None = None
    goal_text: str = ""
    goal: Callable[[Stats | float | None, Stats | float | None], bool | None] | None = None
    note: str = ""

    def _tail(self, v: Stats | float | None) -> float | None:
        if isinstance(v, Stats):
            return v.tail
        return v

    def ratio(self) -> float | None:
        a, b = self._tail(self.ours), self._tail(self.base)
        if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
            return None
        return a / b

    def verdict(self) -> str:
        if self.goal is None:
            return ""
        try:
            ok = self.goal(self.ours, self.base)
        except (TypeError, ValueError, ZeroDivisionError):
            ok = None
        return "" if ok is None else ("ok" if ok else "MISS")

    @staticmethod
    def _cell(v: Stats | float | None) -> str:
        if isinstance(v, Stats):
            return f"{fmt(v.p50)} / {fmt(v.tail)} (p{v.tail_p}, n={v.n})"
        return fmt(v)

    def cells(self) -> list[str]:
        r = self.ratio()
        return [
            self.bench,
            self.case,
            f"{self.metric} [{self.unit}]",
            self._cell(self.ours),
            self._cell(self.base),
            "–" if r is None else f"{r:.2f}×",
            self.goal_text,
            self.verdict(),
            self.note,
        ]


HEADER = [
    "bench",
    "case",
    "metric [unit]",
    "ours: p50 / tail",
    "baseline: p50 / tail",
    "ratio (tail)",
    "goal",
    "verdict",
    "note",
]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def render_rows(rows: Sequence[Row]) -> str:
    return markdown_table(HEADER, (r.cells() for r in rows))


def tail_below(limit: float) -> Callable[[Stats | float | None, Stats | float | None], bool | None]:
    """Goal: our tail (or value) is below ``limit``."""

    def check(ours: Stats | float | None, base: Stats | float | None) -> bool | None:
        v = ours.tail if isinstance(ours, Stats) else ours
        return None if v is None or math.isnan(v) else v < limit

    return check


def tail_at_most(limit: float) -> Callable[[Stats | float | None, Stats | float | None], bool | None]:
    def check(ours: Stats | float | None, base: Stats | float | None) -> bool | None:
        v = ours.tail if isinstance(ours, Stats) else ours
        return None if v is None or math.isnan(v) else v <= limit

    return check


def both(
    *checks: Callable[[Stats | float | None, Stats | float | None], bool | None],
) -> Callable[[Stats | float | None, Stats | float | None], bool | None]:
    """All goals must hold; unknown (None) parts are skipped, all unknown gives None."""

    def check(ours: Stats | float | None, base: Stats | float | None) -> bool | None:
        results = [c(ours, base) for c in checks]
        known = [r for r in results if r is not None]
        return None if not known else all(known)

    return check


def ratio_at_most(limit: float) -> Callable[[Stats | float | None, Stats | float | None], bool | None]:
    """Goal: tail(ours) / tail(baseline) ≤ ``limit`` (None without a baseline)."""

    def check(ours: Stats | float | None, base: Stats | float | None) -> bool | None:
        a = ours.tail if isinstance(ours, Stats) else ours
        b = base.tail if isinstance(base, Stats) else base
        if a is None or b is None or math.isnan(a) or math.isnan(b) or b <= 0:
            return None
        return a / b <= limit

    return check


def at_least(limit: float) -> Callable[[Stats | float | None, Stats | float | None], bool | None]:
    def check(ours: Stats | float | None, base: Stats | float | None) -> bool | None:
        v = ours.p50 if isinstance(ours, Stats) else ours
        return None if v is None or math.isnan(v) else v >= limit

    return check


def not_worse_than_base(
    higher_is_better: bool = False, slack: float = 1.0
) -> Callable[[Stats | float | None, Stats | float | None], bool | None]:
    def check(ours: Stats | float | None, base: Stats | float | None) -> bool | None:
        a = ours.tail if isinstance(ours, Stats) else ours
        b = base.tail if isinstance(base, Stats) else base
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            return None
        return a >= b * slack if higher_is_better else a <= b * slack

    return check


# ---------------------------------------------------------------------------------------------------
# Processes: CPU and memory from /proc


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all of its descendants that exist now."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages divided among their users): sums correctly over a process tree."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """Resident set size of one process in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except OSError:
        return 0


@dataclass
class ProcSampler:
    """Samples CPU use and RSS of a process (and optionally its descendants) in a background thread.

    ``cpu_percent`` is the CPU time used between :meth:`start` and :meth:`stop` over the wall time, in percent of
    one core (200 % = both cores of this machine). RSS is sampled every ``interval`` seconds.
    """

    pid: int
    tree: bool = False
    interval: float = 0.25
    rss_samples: list[int] = field(default_factory=list)
    cpu_percent: float = math.nan
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _cpu_by_pid: dict[int, float] = field(default_factory=dict)
    _cpu0: float = 0.0
    _t0: float = 0.0

    def _pids(self) -> list[int]:
        return process_tree(self.pid) if self.tree else [self.pid]

    def _cpu_total(self) -> float:
        # Remember every process seen, so one that exits during the window still counts with its last value.
        for p in self._pids():
            self._cpu_by_pid[p] = max(self._cpu_by_pid.get(p, 0.0), cpu_seconds(p))
        return sum(self._cpu_by_pid.values())

    def start(self) -> ProcSampler:
        self._cpu_by_pid.clear()
        self._cpu0 = self._cpu_total()
        self._t0 = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"sampler-{self.pid}")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # For a tree, PSS: RSS would count Chromium's shared pages once per process.
            self.rss_samples.append(sum(pss_bytes(p) if self.tree else rss_bytes(p) for p in self._pids()))
            if self.tree:
                self._cpu_total()

    def stop(self) -> ProcSampler:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        wall = time.monotonic() - self._t0
        self.cpu_percent = 100.0 * (self._cpu_total() - self._cpu0) / wall if wall > 0 else math.nan
        if not self.rss_samples:
            self.rss_samples.append(sum(pss_bytes(p) if self.tree else rss_bytes(p) for p in self._pids()))
        return self

    @property
    def rss_median_mb(self) -> float:
        return percentile([float(x) for x in self.rss_samples], 50) / 2**20

    @property
    def rss_max_mb(self) -> float:
        return max(self.rss_samples) / 2**20 if self.rss_samples else math.nan

    def __enter__(self) -> ProcSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit as far as allowed (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else wanted
    target = min(max(soft, wanted), target) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------------------------------
# The machine


def machine_description() -> dict[str, str]:
    """nproc, CPU model, memory, OS and Python: the header of every results table."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    osname = "?"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "os": osname,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load (1/5/15 min)": load,
    }


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"
