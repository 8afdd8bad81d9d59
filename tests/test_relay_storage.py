"""Issue 13 rows 2 and 12, point 2: a damaged call-log file never keeps the counter down, and nothing is lost.

Real SQLite files in a temporary folder; real relays (in process on 127.0.0.1:0, or as a process for the crash).
"""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from helpers import (
    COUNTER,
    OFFICE1,
    RelayProcess,
    WsClient,
    wait_until,
    write_relay_config,
)
from relay_support import Relay, StartRelay, http_get, metric, place_call

from relay_server.store import CallLog


async def one_call(relay: Relay) -> str:
    """A whole call through the relay: rung, answered, hung up."""
    o1, counter = await relay.client(OFFICE1), await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await o1.send({"type": "hangup", "call": call})
    await counter.expect("ended", call=call, reason="hangup")
    return call


async def test_corrupt_call_log_is_moved_aside_and_calls_go_on(
    start_relay: StartRelay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 2: a file that is not a database no longer stops the relay: it is renamed with a loud ERROR line, a
    fresh call log takes its place, and calls are routed and logged."""
    caplog.set_level(logging.INFO, logger="relay")
    db = tmp_path / "calls.sqlite3"
    garbage = b"this is not a database, it is a damaged file " * 200
    db.write_bytes(garbage)
    relay = await start_relay(database=str(db))
    call = await one_call(relay)
    await relay.aclose()
    (aside,) = tmp_path.glob("calls.sqlite3.corrupt-*")
    assert aside.read_bytes() == garbage
    with CallLog(db) as log:
        assert [r.call for r in log.records()] == [call]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("event=calllog_corrupt" in line and str(aside) in line for line in lines), lines


async def test_unwritable_call_log_is_buffered_and_written_later(
    start_relay: StartRelay, tmp_path: Path
) -> None:
    """Row 2 / row 12: a call log that cannot be created (its folder is a file) leaves calls running; /healthz and
    /metrics say 'degraded' with the records waiting; once the folder can be made, they are all written."""
    blocker = tmp_path / "var"
    blocker.write_text("a file where the folder should be")
    db = blocker / "calls.sqlite3"
    relay = await start_relay(database=str(db))
    relay.server.calllog_retry_s = 0.1
    call = await one_call(relay)
    status, _, body = await http_get(relay.server.url.replace("ws://", "http://") + "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "degraded" and health["calllog"]["state"] == "degraded"
    assert health["calllog"]["pending"] >= 2 and "var" in health["calllog"]["last_error"]
    _, _, text = await http_get(relay.server.url.replace("ws://", "http://") + "/metrics")
    assert metric(text, "relay_calllog_ok") == 0 and metric(text, "relay_calllog_pending_records") >= 2
    blocker.unlink()  # the technician fixes the folder
    await wait_until(lambda: relay.server.calllog.status()["state"] == "ok", timeout=20)
    with CallLog(db) as log:
        (record,) = log.records()
    assert record.call == call and record.outcome == "answered" and record.end_reason == "hangup"


def _chattr(flag: str, *paths: Path) -> bool:
    try:
        return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


async def test_read_only_call_log_is_buffered_and_written_later(
    start_relay: StartRelay, tmp_path: Path
) -> None:
    """Row 2: a read-only call log (an immutable file, which even root cannot write) leaves calls running and
    degraded; when it is writable again, the waiting records are written."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "calls.sqlite3"
    CallLog(db).close()
    if not _chattr("+i", db, folder):
        pytest.skip("chattr +i is not available on this file system")
    try:
        relay = await start_relay(database=str(db))
        relay.server.calllog_retry_s = 0.1
        call = await one_call(relay)
        await wait_until(lambda: relay.server.calllog.status()["write_errors"] > 0)
        assert relay.server.calllog.status()["state"] == "degraded"
    finally:
        _chattr("-i", db, folder)
    await wait_until(lambda: relay.server.calllog.status()["state"] == "ok", timeout=20)
    with CallLog(db) as log:
        assert [r.call for r in log.records()] == [call]


async def test_calls_in_progress_survive_a_relay_crash(tmp_path: Path) -> None:
    """Row 12: a call is in the log from its start; after a crash (SIGKILL) the next start closes it as
    'relay_restart', so the month's report still counts it."""
    db = tmp_path / "calls.sqlite3"
    config = write_relay_config(tmp_path, database=str(db))
    with RelayProcess(config) as relay:
        assert relay.proc is not None
        o1 = await WsClient.open(relay.url, OFFICE1)
        counter = await WsClient.open(relay.url, COUNTER)
        call = await place_call(counter, o1)
        with sqlite3.connect(db) as conn:  # another reader, as the report is
            await wait_until(
                lambda: (
                    conn.execute("SELECT outcome FROM calls WHERE call = ?", (call,)).fetchall()
                    == [("active",)]
                )
            )
        relay.proc.send_signal(signal.SIGKILL)
        relay.proc.wait(10)
        await o1.close()
        await counter.close()
    with RelayProcess(config):  # the next start
        pass
    with CallLog(db) as log:
        (record,) = log.records()
    assert record.call == call and record.answered_by == OFFICE1 and record.outcome == "answered"
    assert record.end_reason == "relay_restart" and record.ended_at is not None


def test_call_log_from_before_is_migrated(tmp_path: Path) -> None:
    """Files written by earlier relays (ended_at NOT NULL) are opened, kept and can hold calls in progress."""
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE calls (call TEXT PRIMARY KEY, department TEXT NOT NULL, counter TEXT NOT NULL,
              created_at REAL NOT NULL, answered_at REAL, answered_by TEXT, ended_at REAL NOT NULL,
              outcome TEXT NOT NULL, end_reason TEXT NOT NULL, max_members INTEGER NOT NULL);
            INSERT INTO calls VALUES ('old1', 'juumin', 'c', 1.0, 2.0, 'o', 3.0, 'answered', 'hangup', 2);
        """)
    from relay_server.core import CallRecord

    with CallLog(db) as log:
        log.record(CallRecord("new1", "juumin", "c", 5.0, None, "ringing", ""))
        assert [(r.call, r.ended_at) for r in log.records()] == [("old1", 3.0), ("new1", None)]


async def test_kiosk_doctor_says_when_the_call_log_is_degraded(
    start_relay: StartRelay, tmp_path: Path
) -> None:
    """Point 2: `kiosk doctor` shows the relay's call log as a warning while it cannot be written (calls work),
    and as ok otherwise."""
    from helpers import TOKENS

    from kiosk.doctor.relay import probe_relay
    from kiosk.doctor.relay_judges import calllog_result

    good = await start_relay()
    result = calllog_result(await probe_relay(good.server.url, TOKENS[COUNTER]))
    assert result.ok and not result.warning, result
    (tmp_path / "var").write_text("a file where the folder should be")
    bad = await start_relay(database=str(tmp_path / "var" / "calls.sqlite3"))
    await one_call(bad)
    result = calllog_result(await probe_relay(bad.server.url, TOKENS[COUNTER]))
    assert (
        not result.ok
        and result.warning
        and "degraded" in result.detail
        and "record(s) waiting" in result.detail
    )
    assert "docs/operations.md" in result.advice


def test_report_on_a_damaged_file_says_so(tmp_path: Path) -> None:
    """`relay-server report` on a damaged call log names the file and the way to recover, without a traceback."""
    import sys

    db = tmp_path / "calls.sqlite3"
    db.write_bytes(b"not a database " * 100)
    config = write_relay_config(tmp_path, database=str(db))
    r = subprocess.run(
        [sys.executable, "-m", "relay_server", "report", "--config", str(config), "--month", "2026-11"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "cannot read the call log" in r.stderr and "Traceback" not in r.stderr, (
        r.stderr
    )
