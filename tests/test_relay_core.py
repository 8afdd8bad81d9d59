"""The relay's routing core, tested directly: no sockets, no event loop, no clock."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from helpers import COUNTER, LAMP, OFFICE1, OFFICE2, make_relay_config

from common import protocol
from common.tomlconf import ConfigFile, Section
from common.transitions import InvalidTransition
from relay_server.config import parse_hours
from relay_server.core import (
    Action,
    CallRecord,
    CallState,
    CancelTimer,
    RelayCore,
    Send,
    StartTimer,
    turn_credentials,
)

NOW = 1_790_000_000.0


def sent(actions: list[Action], to: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The messages sent to ``to``; every message sent is checked against its definition in common/messages.py,
    with no field the definition does not declare (what terminals validate on arrival is what the relay sends)."""
    for a in actions:
        if isinstance(a, Send):
            protocol.check_fields(a.msg, protocol.SERVER_MESSAGES[a.msg["type"]], a.msg["type"])
    return [
        a.msg
        for a in actions
        if isinstance(a, Send) and a.to == to and (kind is None or a.msg["type"] == kind)
    ]


def one(actions: list[Action], to: str, kind: str) -> dict[str, Any]:
    msgs = sent(actions, to, kind)
    assert len(msgs) == 1, f"expected one '{kind}' to {to}, got {sent(actions, to)}"
    return msgs[0]


@pytest.fixture
def core() -> RelayCore:
    ids = (f"call{i}" for i in itertools.count(1))
    c = RelayCore(make_relay_config(), lambda: next(ids))
    for t in (COUNTER, OFFICE1, OFFICE2, LAMP):
        c.connect(t, NOW)
    return c


def ring(core: RelayCore, dept: str = "juumin") -> tuple[str, list[Action]]:
    out = core.receive(COUNTER, {"type": "call", "department": dept}, NOW)
    return one(out, COUNTER, "ringing")["call"], out


def test_call_rings_every_serving_station_and_lamp(core: RelayCore) -> None:
    """A counter's call reaches every station of the department and the lamp (with where the counter stands)."""
    cid, out = ring(core)
    for t in (OFFICE1, OFFICE2, LAMP):
        assert one(out, t, "incoming") == {
            "type": "incoming",
            "call": cid,
            "department": "juumin",
            "from": COUNTER,
            "from_name": "札幌市役所本庁舎 1F",
        }
    assert StartTimer(("ring", cid), 60.0) in out


def test_first_answer_wins(core: RelayCore) -> None:
    """The first station to answer joins the call; the other and the lamp get taken; a late answer is an error."""
    cid, _ = ring(core)
    out = core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW + 3)
    assert one(out, COUNTER, "answered")["by"] == OFFICE1
    assert one(out, OFFICE1, "call_state")["members"] == [COUNTER, OFFICE1]
    assert one(out, OFFICE2, "taken")["by"] == OFFICE1
    assert one(out, LAMP, "taken")["by"] == OFFICE1
    assert CancelTimer(("ring", cid)) in out
    with pytest.raises(protocol.ProtocolError) as err:
        core.receive(OFFICE2, {"type": "answer", "call": cid}, NOW + 3)
    assert err.value.code == "already_answered"


def test_ring_timeout_ends_unanswered_and_records_it(core: RelayCore) -> None:
    """When the ring timer fires, counter, stations and lamp get ended/unanswered and the log gets a record."""
    cid, _ = ring(core)
    out = core.timer(("ring", cid), NOW + 60)
    for t in (COUNTER, OFFICE1, OFFICE2, LAMP):
        assert one(out, t, "ended")["reason"] == "unanswered"
    rec = next(a for a in out if isinstance(a, CallRecord))
    assert (rec.outcome, rec.department, rec.answered_at) == ("unanswered", "juumin", None)
    assert COUNTER not in core.call_of


def test_cancel_ends_the_call_even_after_the_answer(core: RelayCore) -> None:
    """Cancel ends a ringing call for the stations; a cancel that crossed the answer on the wire ends the answered
    call too (the resident meant to leave: issue 13 row 3), so the kiosk is never left 'already_in_call'."""
    cid, _ = ring(core)
    out = core.receive(COUNTER, {"type": "cancel", "call": cid}, NOW + 1)
    assert one(out, OFFICE2, "ended")["reason"] == "cancelled"
    cid, _ = ring(core)
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW + 2)
    out = core.receive(COUNTER, {"type": "cancel", "call": cid}, NOW + 3)
    assert one(out, OFFICE1, "ended") == {"type": "ended", "call": cid, "reason": "cancelled", "by": COUNTER}
    assert COUNTER not in core.call_of and OFFICE1 not in core.call_of and cid not in core.calls
    core.receive(COUNTER, {"type": "call", "department": "juumin"}, NOW + 4)  # not 'already_in_call'
    with pytest.raises(protocol.ProtocolError, match="no call"):
        core.receive(COUNTER, {"type": "cancel", "call": cid}, NOW + 5)


def test_invite_join_leave(core: RelayCore) -> None:
    """A staff member invites a colleague, who joins (joined to all), then leaves (left to the rest)."""
    cid, _ = ring(core)
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW)
    out = core.receive(OFFICE1, {"type": "invite", "call": cid, "terminal": OFFICE2}, NOW)
    assert one(out, OFFICE2, "incoming")["invited_by"] == OFFICE1
    out = core.receive(OFFICE2, {"type": "answer", "call": cid}, NOW)
    for m in (COUNTER, OFFICE1, OFFICE2):
        assert one(out, m, "joined")["terminal"] == OFFICE2
    assert one(out, OFFICE2, "call_state")["members"] == [COUNTER, OFFICE1, OFFICE2]
    out = core.receive(OFFICE1, {"type": "leave", "call": cid}, NOW)
    assert one(out, COUNTER, "left") == {"type": "left", "call": cid, "terminal": OFFICE1, "reason": "leave"}
    assert core.calls[cid].members == [COUNTER, OFFICE2]


def test_last_staff_leaving_ends_call(core: RelayCore) -> None:
    """When the only staff member leaves, the resident is not left alone in a dead call."""
    cid, _ = ring(core)
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW)
    out = core.receive(OFFICE1, {"type": "leave", "call": cid}, NOW)
    assert one(out, COUNTER, "ended")["reason"] == "hangup"
    assert cid not in core.calls


def test_signal_only_between_members(core: RelayCore) -> None:
    """Signals go between members of one call; anyone else is refused."""
    cid, _ = ring(core)
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW)
    out = core.receive(COUNTER, {"type": "signal", "call": cid, "to": OFFICE1, "data": {"sdp": "v=0"}}, NOW)
    assert one(out, OFFICE1, "signal") == {
        "type": "signal",
        "call": cid,
        "from": COUNTER,
        "data": {"sdp": "v=0"},
    }
    with pytest.raises(protocol.ProtocolError) as err:
        core.receive(OFFICE2, {"type": "signal", "call": cid, "to": COUNTER, "data": {}}, NOW)
    assert err.value.code == "not_member"


def test_roles_are_enforced(core: RelayCore) -> None:
    """A counter cannot answer or invite and a lamp cannot place a call."""
    cid, _ = ring(core)
    for terminal, msg in [
        (COUNTER, {"type": "answer", "call": cid}),
        (COUNTER, {"type": "invite", "call": cid, "department": "zeimu"}),
        (LAMP, {"type": "call", "department": "zeimu"}),
    ]:
        with pytest.raises(protocol.ProtocolError) as err:
            core.receive(terminal, protocol.parse(protocol.encode(msg)), NOW)
        assert err.value.code == "forbidden"


def test_grace_period_keeps_the_call_and_resumes(core: RelayCore) -> None:
    """A member who drops keeps its place; reconnecting in time gets the call's state back."""
    cid, _ = ring(core)
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW)
    out = core.disconnect(OFFICE1, NOW + 1)
    assert StartTimer(("grace", OFFICE1), 20.0) in out
    assert sent(out, COUNTER, "left") == []
    out = core.connect(OFFICE1, NOW + 5)
    assert CancelTimer(("grace", OFFICE1)) in out
    assert one(out, OFFICE1, "call_state")["members"] == [COUNTER, OFFICE1]
    assert core.timer(("grace", OFFICE1), NOW + 21) == []


def test_grace_expiry_ends_call_and_tells_the_late_comer(core: RelayCore) -> None:
    """After the grace period the call ends as disconnected, and the member learns so when it comes back."""
    cid, _ = ring(core)
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW)
    core.disconnect(COUNTER, NOW + 1)
    out = core.timer(("grace", COUNTER), NOW + 21)
    assert one(out, OFFICE1, "ended")["reason"] == "disconnected"
    out = core.connect(COUNTER, NOW + 30)
    assert one(out, COUNTER, "ended")["reason"] == "disconnected"


def test_presence_follows_stations(core: RelayCore) -> None:
    """The counter sees available → busy → offline as stations take calls and go away."""
    assert core.presence("juumin", NOW) == "available"
    cid, _ = ring(core)
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW)
    core.receive(OFFICE2, {"type": "status", "status": "away"}, NOW)
    assert core.presence("juumin", NOW) == "busy"
    out = core.receive(OFFICE1, {"type": "hangup", "call": cid}, NOW)
    assert one(out, COUNTER, "presence")["departments"]["juumin"] == "available"
    out = core.disconnect(OFFICE1, NOW)
    assert one(out, COUNTER, "presence")["departments"]["juumin"] == "offline"


def test_unavailable_when_everyone_is_away(core: RelayCore) -> None:
    """With every station away, a call is refused as unavailable with the fallback phone number."""
    for s in (OFFICE1, OFFICE2):
        core.receive(s, {"type": "status", "status": "away"}, NOW)
    out = core.receive(COUNTER, {"type": "call", "department": "zeimu"}, NOW)
    err = one(out, COUNTER, "error")
    assert err["code"] == "unavailable" and err["fallback"]["phone"] == "0133-23-2224"
    assert any(isinstance(a, CallRecord) and a.outcome == "unavailable" for a in out)


def test_office_hours_in_office_time_zone() -> None:
    """Hours are read in the office's zone: 09:00 in Tokyo is open even where the server's clock says 00:00."""
    text = 'hours = ["mon-fri 08:45-17:30"]\nclosed_dates = ["2026-12-29"]\n'
    hours = parse_hours(
        Section(ConfigFile("x.toml", text), "", ConfigFile("x.toml", text).data), ZoneInfo("Asia/Tokyo")
    )
    tokyo_9am = datetime(2026, 11, 30, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # a Monday
    assert hours.is_open(tokyo_9am.astimezone(ZoneInfo("UTC")))
    assert not hours.is_open(datetime(2026, 11, 30, 9, 0, tzinfo=ZoneInfo("UTC")))  # 18:00 in Tokyo
    assert not hours.is_open(datetime(2026, 12, 29, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo")))


def test_impossible_transition_names_both_states(core: RelayCore) -> None:
    """Moving an ended call is a bug that names the states involved."""
    cid, _ = ring(core)
    call = core.calls[cid]
    core.receive(COUNTER, {"type": "cancel", "call": cid}, NOW)
    with pytest.raises(InvalidTransition, match="ended -> active"):
        call.move(CallState.ACTIVE)


def test_turn_credentials_are_coturn_rest_form() -> None:
    """TURN username is '<expiry>:<terminal>' and the credential its base64 HMAC-SHA1 (value from openssl dgst)."""
    user, cred = turn_credentials("s3cret", "counter-a", 1000.0, 3600)
    assert user == "4600:counter-a"
    assert cred == "CSWqLE+aZuLpwQdKQAgWWPvbUq8="


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{", "bad_message"),
        ("[]", "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "call"}', "bad_message"),
        ('{"type": "call", "department": 5}', "bad_message"),
        ('{"type": "hello", "token": "t", "protocol": true}', "bad_message"),
        ('{"type": "call", "department": "x", "extra": 1}', "bad_message"),
        ('{"type": "invite", "call": "c"}', "bad_message"),
        ('{"type": "status", "status": "sleeping"}', "bad_message"),
        (b"binary", "bad_message"),
    ],
)
def test_parse_rejects_malformed(raw: str | bytes, code: str) -> None:
    """Every kind of malformed message is rejected with a specific error code."""
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.parse(raw)
    assert err.value.code == code


def naive_presence(core: RelayCore, dept: str, now: float) -> str:
    """Presence computed the slow, obvious way from the core's primary state."""
    if not core.is_open(dept, now):
        return "closed"
    stations = [
        t for t, o in core.online.items() if o.role == "office" and not o.away and core.serves(t, dept)
    ]
    if not stations:
        return "offline"
    return "busy" if all(s in core.call_of for s in stations) else "available"


def test_indexes_agree_with_a_full_scan_after_random_events() -> None:
    """The per-department indexes (used so no event scans every terminal) always match a brute-force scan."""
    import random

    rng = random.Random(20261128)
    ids = (f"call{i}" for i in itertools.count(1))
    core = RelayCore(make_relay_config(), lambda: next(ids))
    terminals = [COUNTER, OFFICE1, OFFICE2, LAMP]
    now = NOW
    for _ in range(3000):
        now += 1
        t = rng.choice(terminals)
        action = rng.random()
        try:
            if action < 0.15:
                core.connect(t, now)
            elif action < 0.25:
                core.disconnect(t, now)
            elif t not in core.online:
                continue
            elif t == COUNTER and action < 0.5:
                core.receive(
                    t, {"type": "call", "department": rng.choice(list(core.config.departments))}, now
                )
            elif t == COUNTER and core.call_of.get(t):
                core.receive(t, {"type": "hangup", "call": core.call_of[t]}, now)
            elif t in (OFFICE1, OFFICE2) and action < 0.4:
                core.receive(t, {"type": "status", "status": rng.choice(["away", "available"])}, now)
            elif t in (OFFICE1, OFFICE2) and core.calls:
                call = rng.choice(list(core.calls))
                kind = rng.choice(["answer", "answer", "answer", "leave", "hangup"])
                core.receive(t, protocol.parse(protocol.encode({"type": kind, "call": call})), now)
            elif action > 0.95:
                for key in [("grace", x) for x in list(core.offline_members)]:
                    core.timer(key, now + 30)
        except protocol.ProtocolError:
            pass
        for d in core.config.departments:
            assert core.presence(d, now) == naive_presence(core, d, now), (d, core.online, core.call_of)
            want = sorted(
                x for x, o in core.online.items() if o.role == "office" and not o.away and core.serves(x, d)
            )
            assert core.stations_for(d) == want
            assert core.lamps_for(d) == sorted(x for x, o in core.online.items() if o.role == "lamp")


def test_office_welcome_lists_colleagues_of_the_same_office_only() -> None:
    """A station's invite list holds the stations of its own office (any department), not other towns'."""
    from dataclasses import replace

    from relay_server.config import Department, Office, Terminal

    cfg = make_relay_config()
    other = Office("nanporo", {"ja": "南幌町役場", "en": "Nanporo Town Office"}, "Asia/Tokyo")
    juumin = cfg.departments["juumin"]
    dept = Department("nanporo-juumin", "nanporo", {"ja": "住民課", "en": "Residents"}, juumin.hours, {})
    station = Terminal("office-nanporo-1", "office", "sha256:" + "0" * 64, ("nanporo-juumin",), "南幌 住民課")
    cfg = replace(
        cfg,
        offices={**cfg.offices, "nanporo": other},
        departments={**cfg.departments, "nanporo-juumin": dept},
        terminals={**cfg.terminals, station.id: station},
    )
    core = RelayCore(cfg, lambda: "c")
    welcome = one(core.connect(OFFICE1, NOW), OFFICE1, "welcome")
    assert [s["id"] for s in welcome["stations"]] == [OFFICE2]
    welcome = one(core.connect("office-nanporo-1", NOW), "office-nanporo-1", "welcome")
    assert welcome["stations"] == []


def test_media_path_is_logged_with_the_call_and_sent_nowhere(core: RelayCore) -> None:
    """A member's media_path report becomes an event line and part of the call's call_ended line; a non-member's is
    refused."""
    from relay_server.core import LogEvent

    cid, _ = ring(core)
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW + 1)
    out = core.receive(
        OFFICE1, {"type": "media_path", "call": cid, "to": COUNTER, "path": "relay/tls ↔ relay"}, NOW + 2
    )
    assert not [a for a in out if isinstance(a, Send)]
    assert (
        LogEvent("media_path", {"call": cid, "terminal": OFFICE1, "to": COUNTER, "path": "relay/tls ↔ relay"})
        in out
    )
    with pytest.raises(protocol.ProtocolError) as err:
        core.receive(OFFICE2, {"type": "media_path", "call": cid, "to": COUNTER, "path": "x"}, NOW + 2)
    assert err.value.code == "not_member"
    out = core.receive(COUNTER, {"type": "hangup", "call": cid}, NOW + 9)
    ended = next(a for a in out if isinstance(a, LogEvent) and a.name == "call_ended")
    assert ended.fields["paths"] == f"{OFFICE1}>{COUNTER}: relay/tls ↔ relay"
