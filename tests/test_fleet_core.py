"""The fleet page's pure parts, tested directly: config and password hashes, sessions and lock-out, the health
message, the fleet view (problems first, live calls, today's numbers), the monthly charts, and its SQLite store."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from helpers import COUNTER, LAMP, OFFICE1, OFFICE2, ROOT, make_relay_config

from common import protocol
from common.tomlconf import ConfigFile, Section
from relay_server.admin.auth import Auth, LoginGuard, Verdict, is_loopback
from relay_server.admin.charts import monthly_charts, percentile, report_csv
from relay_server.admin.fleet import FleetState
from relay_server.admin.settings import (
    AdminAccount,
    FleetSettings,
    hash_password,
    parse_fleet,
    verify_password,
)
from relay_server.admin.store import AuditEntry, FleetStore
from relay_server.config import ConfigError, load_relay_config
from relay_server.core import CallRecord, HealthReport, RelayCore
from relay_server.store import build_report, format_report

NOW = 1_790_000_000.0  # 2026-09-21 23:13 JST
TZ = ZoneInfo("Asia/Tokyo")
FAST = 1 << 14  # the smallest accepted scrypt cost, to keep tests quick


def fleet_section(text: str) -> Section:
    import tomllib

    file = ConfigFile("relay.toml", text)
    return Section(file, "", tomllib.loads(text))


# -- settings and passwords ----------------------------------------------------------------------
def test_password_hash_round_trip_and_wrong_password() -> None:
    """A scrypt hash verifies its own password only; a salt makes two hashes of one password differ."""
    h = hash_password("correct horse", n=FAST)
    assert h.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", h)
    assert not verify_password("correct hors", h)
    assert hash_password("correct horse", n=FAST) != h
    assert not verify_password("x", "garbage")


def test_fleet_config_parses_accounts_and_rejects_bad_ones() -> None:
    """[fleet] and [[admin]] load; a weak or malformed hash, a duplicate user or a page without admins is an error
    naming the key."""
    h = hash_password("pw", n=FAST)
    s = parse_fleet(
        fleet_section(
            f'[fleet]\nenabled = true\nport = 0\n[[admin]]\nuser = "sato"\npassword_hash = "{h}"\n'
            f'[[admin]]\nuser = "demo"\npassword_hash = "{h}"\ndemo = true\n'
        )
    )
    assert s.enabled and s.port == 0 and s.host == "127.0.0.1"
    assert s.admins == (AdminAccount("sato", h), AdminAccount("demo", h, demo=True))
    with pytest.raises(ConfigError, match="admin-hash"):
        parse_fleet(fleet_section('[[admin]]\nuser = "a"\npassword_hash = "plain"\n'))
    weak = hash_password("pw", n=1024)
    with pytest.raises(ConfigError, match="power of two of at least 16384"):
        parse_fleet(fleet_section(f'[[admin]]\nuser = "a"\npassword_hash = "{weak}"\n'))
    with pytest.raises(ConfigError, match="defined twice"):
        parse_fleet(
            fleet_section(
                f'[[admin]]\nuser = "a"\npassword_hash = "{h}"\n'
                f'[[admin]]\nuser = "a"\npassword_hash = "{h}"\n'
            )
        )
    with pytest.raises(ConfigError, match="at least one"):
        parse_fleet(fleet_section("[fleet]\nenabled = true\n"))
    with pytest.raises(ConfigError, match="unknown key"):
        parse_fleet(fleet_section("[fleet]\nenable = true\n"))


def test_relay_config_has_the_fleet_page_off_by_default(tmp_path: Path) -> None:
    """relay.toml without [fleet] loads with the page off; with it, load_relay_config carries the settings."""
    assert load_relay_config(ROOT / "config/examples/relay-office-hours.toml").fleet == FleetSettings()
    h = hash_password("pw", n=FAST)
    p = tmp_path / "relay.toml"
    p.write_text(
        (ROOT / "config/examples/relay-office-hours.toml").read_text()
        + f'\n[fleet]\nenabled = true\n[[admin]]\nuser = "t"\n'
        f'password_hash = "{h}"\n'
    )
    assert load_relay_config(p).fleet.enabled


# -- sessions and lock-out --------------------------------------------------------------------------
def make_auth(**kw: object) -> Auth:
    h = hash_password("pw", n=FAST)
    return Auth(
        FleetSettings(
            enabled=True,
            admins=(AdminAccount("sato", h), AdminAccount("demo", h, demo=True)),
            **kw,  # type: ignore[arg-type]
        )
    )


def login(auth: Auth, user: str, password: str, peer: str = "127.0.0.1", now: float = NOW) -> Verdict:
    verdict, stored = auth.before_check(user, peer, now)
    if verdict is not None:
        return verdict
    return auth.after_check(user, peer, verify_password(password, stored), now)[0]


def test_login_session_csrf_and_logout() -> None:
    """A right password makes a session with its own CSRF token; a session ends at logout or when it expires."""
    auth = make_auth(session_minutes=10)
    assert login(auth, "sato", "nope") is Verdict.WRONG
    assert login(auth, "nobody", "pw") is Verdict.WRONG
    verdict, session = auth.after_check("sato", "127.0.0.1", True, NOW)
    assert verdict is Verdict.OK and session is not None
    assert auth.session(session.id, NOW + 1) is session
    assert (
        auth.csrf_ok(session, session.csrf)
        and not auth.csrf_ok(session, "x")
        and not auth.csrf_ok(session, None)
    )
    assert auth.session(session.id, NOW + 601) is None
    _, again = auth.after_check("sato", "127.0.0.1", True, NOW)
    assert again is not None and again.id != session.id
    auth.logout(again.id)
    assert auth.session(again.id, NOW) is None
    assert auth.session(None, NOW) is None


def test_lockout_after_repeated_failures_then_released() -> None:
    """Five failures lock the user out (even with the right password) for 15 minutes; then it works again."""
    auth = make_auth()
    for _ in range(5):
        assert login(auth, "sato", "wrong", now=NOW) is Verdict.WRONG
    assert login(auth, "sato", "pw", now=NOW + 1) is Verdict.LOCKED
    assert login(auth, "sato", "pw", now=NOW + 15 * 60 + 1) is Verdict.OK


def test_lockout_counts_per_address_too() -> None:
    """Guessing across user names from one address locks that address."""
    guard = LoginGuard(limit=3, lock_s=60)
    for user in ("a", "b", "c"):
        guard.failed(user, "198.18.0.9", NOW)
    assert guard.locked_for("d", "198.18.0.9", NOW) > 0
    assert guard.locked_for("d", "198.18.0.10", NOW) == 0


def test_demo_account_only_from_loopback() -> None:
    """The published demo login is refused from any address that is not loopback."""
    auth = make_auth()
    assert login(auth, "demo", "pw", peer="127.0.0.1") is Verdict.OK
    assert login(auth, "demo", "pw", peer="::1") is Verdict.OK
    assert login(auth, "demo", "pw", peer="198.18.0.5") is Verdict.DEMO_REMOTE
    assert login(auth, "sato", "pw", peer="198.18.0.5") is Verdict.OK
    assert is_loopback("127.0.0.2") and not is_loopback("?")


# -- the health message -------------------------------------------------------------------------------
GOOD_HEALTH = {
    "type": "health",
    "version": "kiosk 0.1",
    "devices": {"camera": {"state": "ok"}, "document_camera": {"state": "missing", "reason": "/dev/video2"}},
    "last_call": {"path": "host/udp", "quality": "ok"},
}


def test_health_message_parses_and_bad_reports_are_refused() -> None:
    """A health report with known states parses; unknown states, wrong shapes and long texts are bad_message."""
    assert protocol.parse(protocol.encode(GOOD_HEALTH)) == GOOD_HEALTH
    bad: list[dict[str, Any]] = [
        {**GOOD_HEALTH, "devices": {"camera": {"state": "broken"}}},
        {**GOOD_HEALTH, "devices": {"camera": "ok"}},
        {**GOOD_HEALTH, "devices": {"camera": {"state": "ok", "colour": "red"}}},
        {**GOOD_HEALTH, "devices": {f"d{i}": {"state": "ok"} for i in range(17)}},
        {**GOOD_HEALTH, "last_call": {"path": 3}},
        {**GOOD_HEALTH, "version": "x" * 201},
        {"type": "health", "devices": {}},
    ]
    for msg in bad:
        with pytest.raises(protocol.ProtocolError) as err:
            protocol.parse(protocol.encode(msg))
        assert err.value.code == "bad_message" and err.value.ref == "health", msg


def test_core_passes_health_reports_on_from_every_role() -> None:
    """Every role may report; the core hands the report to the edge unchanged and routes nothing."""
    core = RelayCore(make_relay_config(), lambda: "c1")
    for t in (COUNTER, OFFICE1, LAMP):
        core.connect(t, NOW)
        msg = protocol.parse(protocol.encode(GOOD_HEALTH))
        assert core.receive(t, msg, NOW) == [
            HealthReport(t, {k: v for k, v in GOOD_HEALTH.items() if k != "type"})
        ]


# -- the fleet view -----------------------------------------------------------------------------------
@pytest.fixture
def world() -> tuple[RelayCore, FleetState]:
    cfg = make_relay_config()
    ids = (f"call{i}" for i in itertools.count(1))
    core = RelayCore(cfg, lambda: next(ids))
    fleet = FleetState(cfg)
    for t in (COUNTER, OFFICE1, OFFICE2, LAMP):
        core.connect(t, NOW)
        fleet.connected(t, NOW, "127.0.0.1")
    return core, fleet


def test_problems_come_first_offline_and_missing_devices(world: tuple[RelayCore, FleetState]) -> None:
    """An offline terminal and a counter whose document camera is missing are listed first, with the reason."""
    core, fleet = world
    healthy = {"version": "v1", "devices": {"camera": {"state": "ok"}}}
    for t in (OFFICE1, OFFICE2, LAMP):
        fleet.report(t, healthy, NOW)
    fleet.report(
        COUNTER,
        {
            "version": "v1",
            "devices": {
                "camera": {"state": "ok"},
                "document_camera": {"state": "missing", "reason": "no /dev/video2"},
            },
        },
        NOW,
    )
    rows = fleet.terminals(core, NOW, {})
    assert rows[0]["id"] == COUNTER
    assert rows[0]["problems"] == [
        {"kind": "missing", "device": "document_camera", "reason": "no /dev/video2"}
    ]
    assert all(not r["problems"] for r in rows[1:])
    core.disconnect(OFFICE2, NOW + 5)
    fleet.disconnected(OFFICE2, NOW + 5)
    rows = fleet.terminals(core, NOW + 6, {})
    assert [r["id"] for r in rows[:2]] == [COUNTER, OFFICE2]
    assert rows[1]["online"] is False and rows[1]["since"] == NOW + 5 and rows[1]["status"] == "offline"
    assert not any("token" in key for r in rows for key in r)


def test_health_changes_are_recorded_as_history(world: tuple[RelayCore, FleetState]) -> None:
    """The first report and every later change yield history entries; a repeat yields none."""
    _, fleet = world
    first = fleet.report(LAMP, {"version": "v1", "devices": {"lamp_port": {"state": "ok"}}}, NOW)
    assert {c.what for c in first} == {"version", "device:lamp_port"}
    assert fleet.report(LAMP, {"version": "v1", "devices": {"lamp_port": {"state": "ok"}}}, NOW + 1) == []
    change = fleet.report(
        LAMP, {"version": "v1", "devices": {"lamp_port": {"state": "failing", "reason": "EIO"}}}, NOW + 2
    )
    assert [(c.what, c.old, c.new) for c in change] == [("device:lamp_port", "ok", "failing: EIO")]


def test_live_calls_ringing_then_answered_with_members(world: tuple[RelayCore, FleetState]) -> None:
    """A ringing call shows how long it rings; once answered its members and duration."""
    core, fleet = world
    core.receive(COUNTER, {"type": "call", "department": "juumin"}, NOW)
    [call] = fleet.calls(core, NOW + 3)
    assert call["state"] == "ringing" and call["ringing_s"] == 3 and call["members"] == [COUNTER]
    core.receive(OFFICE1, {"type": "answer", "call": call["call"]}, NOW + 4)
    fleet.report(COUNTER, {"version": "v1", "devices": {}, "last_call": {"path": "srflx/udp"}}, NOW + 5)
    [call] = fleet.calls(core, NOW + 10)
    assert call["state"] == "active" and call["members"] == [COUNTER, OFFICE1] and call["duration_s"] == 6
    assert call["media_path"] == "srflx/udp"
    status = {r["id"]: r for r in fleet.terminals(core, NOW + 10, {})}
    assert status[OFFICE1]["in_call"] == call["call"] and status[OFFICE1]["status"] == "available"


def record(
    created: float, outcome: str, wait: float | None = None, talk: float = 60.0, dept: str = "juumin"
) -> CallRecord:
    answered = created + wait if wait is not None else None
    ended = (answered or created + 30) + (talk if answered else 0)
    return CallRecord(
        f"c{created}",
        dept,
        COUNTER,
        created,
        ended,
        outcome,
        "hangup",
        answered,
        OFFICE1 if answered else None,
    )


def test_today_numbers_count_rang_calls_and_median_wait(world: tuple[RelayCore, FleetState]) -> None:
    """Today: calls that rang, answered, missed (unanswered/cancelled/abandoned) and the median wait; yesterday
    and rejected attempts do not count, and the numbers start again at local midnight."""
    _, fleet = world
    midnight = fleet.day_start(NOW)
    fleet.seed_today([record(midnight - 60, "answered", 5)], NOW)
    for r in (
        record(midnight + 10, "answered", 4),
        record(midnight + 20, "answered", 10),
        record(midnight + 30, "unanswered"),
        record(midnight + 40, "closed"),
        record(midnight + 50, "cancelled"),
    ):
        fleet.finished(r, NOW)
    assert fleet.today_numbers(NOW) == {
        "day": "2026-09-21",
        "calls": 4,
        "answered": 2,
        "missed": 2,
        "median_wait_s": 7.0,
    }
    assert fleet.today_numbers(midnight + 86400 + 1)["calls"] == 0


# -- charts --------------------------------------------------------------------------------------------
def test_percentile_nearest_rank() -> None:
    """p90 of 1..10 is 9, of one value that value, of nothing None."""
    assert percentile([float(x) for x in range(10, 0, -1)], 90) == 9
    assert percentile([4.0], 90) == 4 and percentile([], 90) is None


def test_monthly_charts_per_department_and_day() -> None:
    """A seeded month gives per-department totals (answered %, wait median and p90, duration) and daily entries,
    counted in the office's time zone; another month's calls are left out."""
    cfg = make_relay_config()
    day1 = datetime(2026, 11, 1, 0, 30, tzinfo=TZ).timestamp()  # 2026-10-31 in UTC, November in Tokyo
    recs = [
        record(day1, "answered", 10, 120),
        record(day1 + 3600, "answered", 30, 60),
        record(day1 + 86400 * 2, "unanswered"),
        record(day1 + 86400 * 2 + 60, "closed"),
        record(day1 + 86400 * 3, "answered", 20, 300, dept="zeimu"),
        record(day1 - 7200, "answered", 1),
    ]  # October in Tokyo
    charts = monthly_charts(cfg, recs, "2026-11")
    assert charts["days"] == 30
    juumin = next(d for d in charts["departments"] if d["id"] == "juumin")
    assert juumin["month"] == {
        "calls": 3,
        "answered": 2,
        "answered_pct": 66.7,
        "wait_median_s": 20.0,
        "wait_p90_s": 30.0,
        "duration_median_s": 90.0,
    }
    assert juumin["daily"][0]["calls"] == 2 and juumin["daily"][2]["calls"] == 1
    assert juumin["daily"][2]["answered_pct"] == 0.0 and juumin["daily"][5]["calls"] == 0
    zeimu = next(d for d in charts["departments"] if d["id"] == "zeimu")
    assert zeimu["month"]["calls"] == 1 and zeimu["daily"][3]["wait_median_s"] == 20.0


def test_csv_download_is_the_report_command_output() -> None:
    """The page's CSV equals relay-server report --csv for the same month."""
    cfg = make_relay_config()
    day1 = datetime(2026, 11, 3, 10, tzinfo=TZ).timestamp()
    recs = [
        record(day1, "answered", 10),
        record(day1 + 60, "cancelled"),
        record(day1 - 30 * 86400, "answered", 3),
    ]
    expected = format_report(build_report(recs[:2], cfg.departments), as_csv=True)
    assert report_csv(cfg, recs, "2026-11") == expected
    assert expected.splitlines()[1].startswith("juumin,2,1,")


# -- store ---------------------------------------------------------------------------------------------
def test_store_keeps_latest_health_history_and_audit(tmp_path: Path) -> None:
    """Health, its history and the audit log survive a reopen of the SQLite file (a relay restart)."""
    cfg = replace(make_relay_config(), database=str(tmp_path / "relay.sqlite3"))
    fleet = FleetState(cfg)
    with FleetStore(tmp_path / "relay.sqlite3") as store:
        h1 = {"version": "v1", "devices": {"camera": {"state": "ok"}}}
        store.save_health(COUNTER, NOW, h1, fleet.report(COUNTER, h1, NOW))
        h2 = {"version": "v1", "devices": {"camera": {"state": "failing", "reason": "no frames for 5 s"}}}
        store.save_health(COUNTER, NOW + 1, h2, fleet.report(COUNTER, h2, NOW + 1))
        store.audit(AuditEntry(NOW, "sato", "127.0.0.1", "ring", OFFICE1, "sent"))
    with FleetStore(tmp_path / "relay.sqlite3") as store:
        assert store.latest_health() == {COUNTER: (NOW + 1, h2)}
        history = store.history(COUNTER)
        assert [(c.what, c.new) for c in history] == [
            ("device:camera", "failing: no frames for 5 s"),
            ("device:camera", "ok"),
            ("version", "v1"),
        ]
        assert store.audit_log() == [AuditEntry(NOW, "sato", "127.0.0.1", "ring", OFFICE1, "sent")]


def test_admin_hash_command_makes_an_account_the_config_accepts(tmp_path: Path) -> None:
    """`relay-server admin-hash USER` (password on stdin) prints an [[admin]] block that loads and verifies; a short
    password is refused."""
    import subprocess
    import sys

    run = [sys.executable, "-m", "relay_server", "admin-hash", "sato"]
    out = subprocess.run(
        run, input="long enough password\n", capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    block = out.stdout.split("\n", 1)[1]
    p = tmp_path / "relay.toml"
    p.write_text(
        (ROOT / "config/examples/relay-office-hours.toml").read_text() + "\n[fleet]\nenabled = true\n" + block
    )
    [account] = load_relay_config(p).fleet.admins
    assert account.user == "sato" and verify_password("long enough password", account.password_hash)
    short = subprocess.run(run, input="short\n", capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert short.returncode == 1 and "at least 10" in short.stderr
