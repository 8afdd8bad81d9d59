"""The call log and `relay-server report`: known records give exact counts and medians; real calls land in the log."""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from helpers import COUNTER, OFFICE1, RelayProcess, WsClient, write_relay_config
from test_relay_process import relay_server_command

from relay_server.core import CallRecord
from relay_server.store import REPORT_COLUMNS, CallLog

TOKYO = ZoneInfo("Asia/Tokyo")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """Epoch seconds of a wall-clock time in Tokyo."""
    return datetime(year, month, day, hour, minute, second, tzinfo=TOKYO).timestamp()


def answered(call: str, dept: str, created: float, wait: float, duration: float) -> CallRecord:
    return CallRecord(
        call,
        dept,
        COUNTER,
        created,
        created + wait + duration,
        "answered",
        "hangup",
        created + wait,
        OFFICE1,
        2,
    )


def other(call: str, dept: str, created: float, outcome: str) -> CallRecord:
    reason = {"cancelled": "cancelled", "unanswered": "unanswered", "abandoned": "disconnected"}.get(
        outcome, outcome
    )
    return CallRecord(call, dept, COUNTER, created, created + 5, outcome, reason)


MARCH_RECORDS = [
    # juumin: waits 10/40/20 s (median 20), durations 100/300/200 s (median 200).
    answered("j1", "juumin", at(2026, 3, 2, 9, 0), 10, 100),
    answered("j2", "juumin", at(2026, 3, 10, 14, 0), 40, 300),
    answered("j3", "juumin", at(2026, 3, 31, 23, 59), 20, 200),
    other("j4", "juumin", at(2026, 3, 3, 10, 0), "unanswered"),
    other("j5", "juumin", at(2026, 3, 3, 11, 0), "cancelled"),
    other("j6", "juumin", at(2026, 3, 3, 12, 0), "cancelled"),
    other("j7", "juumin", at(2026, 3, 4, 9, 30), "abandoned"),
    other("j8", "juumin", at(2026, 3, 7, 10, 0), "closed"),
    other("j9", "juumin", at(2026, 3, 9, 8, 0), "unavailable"),
    # zeimu: waits 5/8 s (median 6.5), durations 60/90 s (median 75). 00:30 on 1 March in Tokyo is
    # still February in UTC: it belongs to March because months are counted in the office's zone.
    answered("z1", "zeimu", at(2026, 3, 1, 0, 30), 5, 60),
    answered("z2", "zeimu", at(2026, 3, 20, 15, 0), 8, 90),
]
OUTSIDE_MARCH = [
    answered("x1", "juumin", at(2026, 2, 28, 23, 59), 1000, 1000),  # last minute of February in Tokyo
    answered("x2", "juumin", at(2026, 4, 1, 0, 0), 1000, 1000),  # 15:00 UTC on 31 March, but April in Tokyo
    other("x3", "zeimu", at(2026, 4, 1, 0, 30), "cancelled"),
]

EXPECTED = {
    "juumin": {
        "calls": "7",
        "answered": "3",
        "unanswered": "1",
        "cancelled": "2",
        "abandoned": "1",
        "closed": "1",
        "unavailable": "1",
        "median_wait_s": "20.0",
        "median_duration_s": "200.0",
    },
    "zeimu": {
        "calls": "2",
        "answered": "2",
        "unanswered": "0",
        "cancelled": "0",
        "abandoned": "0",
        "closed": "0",
        "unavailable": "0",
        "median_wait_s": "6.5",
        "median_duration_s": "75.0",
    },
    "hoken": {"calls": "0", "answered": "0", "median_wait_s": "-", "median_duration_s": "-"},
}


def run_report(config: Path, month: str, *extra: str) -> str:
    result = subprocess.run(
        [*relay_server_command(), "report", "--config", str(config), "--month", month, *extra],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """The plain-text report as {department: {column: cell}}."""
    lines = text.strip().splitlines()
    header = lines[0].split()
    assert tuple(header) == REPORT_COLUMNS
    return {cells[0]: dict(zip(header, cells, strict=True)) for cells in (line.split() for line in lines[1:])}


def make_log(tmp_path: Path, records: list[CallRecord]) -> Path:
    config = write_relay_config(tmp_path)
    with CallLog(tmp_path / "calls.sqlite3") as log:
        for r in records:
            log.record(r)
    return config


def test_report_counts_and_medians(tmp_path: Path) -> None:
    """`relay-server report --month` counts outcomes and medians per department, months in the office's zone."""
    assert datetime.fromtimestamp(at(2026, 3, 1, 0, 30), UTC).month == 2  # the zone really matters here
    assert datetime.fromtimestamp(at(2026, 4, 1, 0, 0), UTC).month == 3
    config = make_log(tmp_path, MARCH_RECORDS + OUTSIDE_MARCH)
    rows = table_rows(run_report(config, "2026-03"))
    assert set(rows) == {"juumin", "zeimu", "hoken", "kensetsu"}
    for dept, want in EXPECTED.items():
        for col, value in want.items():
            assert rows[dept][col] == value, (dept, col, rows[dept])


def test_report_csv(tmp_path: Path) -> None:
    """`report --csv` gives the same numbers as CSV with a header and empty cells for missing medians."""
    config = make_log(tmp_path, MARCH_RECORDS + OUTSIDE_MARCH)
    text = run_report(config, "2026-03", "--csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == REPORT_COLUMNS
    by_dept = {r["department"]: r for r in rows}
    for dept, want in EXPECTED.items():
        for col, value in want.items():
            assert by_dept[dept][col] == ("" if value == "-" else value), (dept, col, by_dept[dept])
    # The month before holds only the February record.
    feb = {r["department"]: r for r in csv.DictReader(io.StringIO(run_report(config, "2026-02", "--csv")))}
    assert feb["juumin"]["answered"] == "1" and feb["juumin"]["median_wait_s"] == "1000.0"
    assert feb["zeimu"]["calls"] == "0"


async def test_real_call_lands_in_log(tmp_path: Path) -> None:
    """A call through the real relay process is written to the call log and shows up in that month's report."""
    config = write_relay_config(tmp_path)
    with RelayProcess(config) as relay:
        o1 = await WsClient.open(relay.url, OFFICE1)
        counter = await WsClient.open(relay.url, COUNTER)
        await counter.send({"type": "call", "department": "kensetsu"})
        call = (await counter.expect("ringing"))["call"]
        await o1.expect("incoming", call=call)
        await o1.send({"type": "answer", "call": call})
        await counter.expect("answered", call=call)
        await o1.send({"type": "hangup", "call": call})
        await counter.expect("ended", call=call, reason="hangup")
        await o1.close()
        await counter.close()
        assert relay.stop() == 0  # a clean stop waits for pending call-log writes

    with CallLog(tmp_path / "calls.sqlite3") as log:
        (record,) = log.records()
    assert record.call == call and record.department == "kensetsu" and record.counter == COUNTER
    assert record.outcome == "answered" and record.answered_by == OFFICE1 and record.end_reason == "hangup"
    assert record.created_at <= record.answered_at <= record.ended_at  # type: ignore[operator]

    month = datetime.fromtimestamp(record.created_at, TOKYO).strftime("%Y-%m")
    rows = table_rows(run_report(config, month))
    assert rows["kensetsu"]["calls"] == "1" and rows["kensetsu"]["answered"] == "1"
    assert rows["juumin"]["calls"] == "0"
