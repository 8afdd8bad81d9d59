"""A call resumed on a restarted relay (``resume``), tested on the relay's pure core: who may re-create a call,
who may come back into it, what the others are told, and what happens to members that never come back."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import COUNTER, LAMP, OFFICE1, OFFICE2, make_relay_config

from common import protocol
from common.protocol import ProtocolError
from relay_server.core import Action, CallRecord, CancelTimer, LogEvent, RelayCore, Send, StartTimer
from relay_server.store import CallLog

NOW = 1_790_000_000.0
CID = "0123456789ab"  # a call of the relay before the restart


def sent(actions: list[Action], to: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [
        a.msg
        for a in actions
        if isinstance(a, Send) and a.to == to and (kind is None or a.msg["type"] == kind)
    ]


def one(actions: list[Action], to: str, kind: str) -> dict[str, Any]:
    msgs = sent(actions, to, kind)
    assert len(msgs) == 1, f"expected one '{kind}' to {to}, got {sent(actions, to)}"
    return msgs[0]


def new_core(**overrides: Any) -> RelayCore:
    ids = (f"new{i}" for i in itertools.count(1))
    core = RelayCore(make_relay_config(**overrides), lambda: next(ids))
    for t in (COUNTER, OFFICE1, OFFICE2, LAMP):
        core.connect(t, NOW)
    return core


@pytest.fixture
def core() -> RelayCore:
    """A relay that has just started: every terminal is back, no call is known."""
    return new_core()


def resume(
    core: RelayCore,
    terminal: str,
    members: list[str],
    *,
    call: str = CID,
    department: str = "juumin",
    at: float = NOW + 1,
) -> list[Action]:
    msg = {"type": "resume", "call": call, "department": department, "members": members}
    return core.receive(terminal, protocol.parse(protocol.encode(msg)), at)


def signal(core: RelayCore, frm: str, to: str, at: float = NOW + 2) -> list[Action]:
    return core.receive(frm, {"type": "signal", "call": CID, "to": to, "data": {"kind": "restart"}}, at)


def test_counter_re_creates_the_call_and_the_station_comes_back(core: RelayCore) -> None:
    """The counter vouches first: the call exists again (active, same id), the station is expected back; once it
    vouches too both get call_state with everyone present and signals flow again; the lamp shows it taken."""
    out = resume(core, COUNTER, [COUNTER, OFFICE1])
    state = one(out, COUNTER, "call_state")
    assert state == {
        "type": "call_state",
        "call": CID,
        "state": "active",
        "department": "juumin",
        "counter": COUNTER,
        "members": [COUNTER, OFFICE1],
        "offline": [OFFICE1],
    }
    assert one(out, LAMP, "taken") == {"type": "taken", "call": CID, "by": OFFICE1}
    assert sent(out, OFFICE1) == []  # nothing about a call is sent to a terminal that has not vouched for it
    assert StartTimer(("resume", CID), 20.0) in out
    record = next(a for a in out if isinstance(a, CallRecord))
    assert (record.call, record.outcome, record.resumed_at, record.ended_at) == (CID, "active", NOW + 1, None)
    assert any(isinstance(a, LogEvent) and a.name == "call_resumed" for a in out)
    assert core.presence("juumin", NOW + 1) == "available"  # OFFICE2 is still free
    with pytest.raises(ProtocolError) as err:
        signal(core, COUNTER, OFFICE1)
    assert err.value.code == "member_offline"

    out = resume(core, OFFICE1, [COUNTER, OFFICE1], at=NOW + 3)
    for member in (COUNTER, OFFICE1):
        assert one(out, member, "call_state")["offline"] == []
    assert CancelTimer(("resume", CID)) in out
    assert core.call_of == {COUNTER: CID, OFFICE1: CID}
    assert one(signal(core, COUNTER, OFFICE1), OFFICE1, "signal")["from"] == COUNTER
    assert one(signal(core, OFFICE1, COUNTER), COUNTER, "signal")["from"] == OFFICE1
    # A duplicate resume changes nothing; the resumed call ends as any other, and the log keeps the resume time.
    assert resume(core, OFFICE1, [COUNTER, OFFICE1], at=NOW + 4) == []
    out = core.receive(OFFICE1, {"type": "hangup", "call": CID}, NOW + 60)
    assert one(out, COUNTER, "ended")["reason"] == "hangup"
    record = next(a for a in out if isinstance(a, CallRecord))
    assert (record.outcome, record.end_reason, record.resumed_at) == ("answered", "hangup", NOW + 1)


def test_a_station_of_the_department_may_re_create_the_call(core: RelayCore) -> None:
    """The station reconnects first: it re-creates the call; the counter that comes later joins it."""
    out = resume(core, OFFICE1, [COUNTER, OFFICE1])
    assert one(out, OFFICE1, "call_state")["offline"] == [COUNTER]
    out = resume(core, COUNTER, [COUNTER, OFFICE1], at=NOW + 2)
    assert one(out, OFFICE1, "call_state")["offline"] == []
    assert one(out, COUNTER, "call_state")["members"] == [COUNTER, OFFICE1]


@pytest.mark.parametrize(
    ("sender", "members", "department", "code"),
    [
        (LAMP, [COUNTER, LAMP], "juumin", "forbidden"),  # a lamp is never in a call
        (OFFICE1, [OFFICE1, COUNTER], "juumin", "forbidden"),  # the counter comes first
        (OFFICE1, [COUNTER, OFFICE1, OFFICE1], "juumin", "bad_message"),  # nobody twice
        (OFFICE1, [COUNTER], "juumin", "bad_message"),  # a call has staff
        (OFFICE1, [COUNTER, OFFICE2], "juumin", "not_member"),  # a station vouching for others only
        (OFFICE1, [COUNTER, OFFICE1, "stranger"], "juumin", "forbidden"),  # no such terminal
        (COUNTER, [COUNTER, OFFICE1], "nosuch", "unknown_department"),
        (COUNTER, [COUNTER, OFFICE1, OFFICE2, OFFICE2 + "x", OFFICE1 + "y"], "juumin", "bad_message"),
    ],
)
def test_resumes_that_cannot_be_a_call_are_refused(
    core: RelayCore, sender: str, members: list[Any], department: str, code: str
) -> None:
    with pytest.raises(ProtocolError) as err:
        resume(core, sender, members, department=department)
    assert err.value.code == code
    assert core.calls == {} and core.call_of == {}


def test_a_counter_cannot_resume_a_department_it_does_not_offer() -> None:
    core = new_core()
    counter = core.config.terminals[COUNTER]
    core = new_core(terminals={**core.config.terminals, COUNTER: replace(counter, departments=("zeimu",))})
    with pytest.raises(ProtocolError) as err:
        resume(core, COUNTER, [COUNTER, OFFICE1], department="juumin")
    assert err.value.code == "forbidden"


def test_nobody_joins_a_resumed_call_it_was_not_in(core: RelayCore) -> None:
    """A station the first voucher did not list cannot get in, whatever it claims; nor can a member whose view of
    the call (counter, department) differs from the call's."""
    resume(core, COUNTER, [COUNTER, OFFICE1])
    with pytest.raises(ProtocolError) as err:
        resume(core, OFFICE2, [COUNTER, OFFICE1, OFFICE2])
    assert err.value.code == "not_member"
    assert OFFICE2 not in core.call_of
    core2 = new_core()
    resume(core2, COUNTER, [COUNTER, OFFICE1, OFFICE2])
    with pytest.raises(ProtocolError) as err:
        resume(core2, OFFICE2, [COUNTER, OFFICE2], department="zeimu")
    assert err.value.code == "forbidden"
    assert OFFICE2 not in core2.call_of


def test_a_terminal_in_another_call_cannot_resume(core: RelayCore) -> None:
    cid = one(core.receive(COUNTER, {"type": "call", "department": "juumin"}, NOW), COUNTER, "ringing")[
        "call"
    ]
    core.receive(OFFICE2, {"type": "answer", "call": cid}, NOW)
    with pytest.raises(ProtocolError) as err:
        resume(core, COUNTER, [COUNTER, OFFICE1])
    assert err.value.code == "already_in_call"
    # The station expected back into a re-created call is in another call by now: it cannot come back.
    resume(core, OFFICE1, [COUNTER, OFFICE1, OFFICE2], call="other")
    with pytest.raises(ProtocolError) as err:
        resume(core, OFFICE2, [COUNTER, OFFICE1, OFFICE2], call="other")
    assert err.value.code == "already_in_call"


def test_a_counter_that_never_comes_back_ends_the_call(core: RelayCore) -> None:
    """The normal grace rule: the counter is not back within grace_period after the call was re-created → ended
    (disconnected) for the staff, and the call log row ends too."""
    resume(core, OFFICE1, [COUNTER, OFFICE1])
    out = core.timer(("resume", CID), NOW + 21)
    assert one(out, OFFICE1, "ended") == {
        "type": "ended",
        "call": CID,
        "reason": "disconnected",
        "by": COUNTER,
    }
    assert one(out, LAMP, "ended")["reason"] == "disconnected"
    assert sent(out, COUNTER) == []
    assert core.calls == {} and core.call_of == {}
    record = next(a for a in out if isinstance(a, CallRecord))
    assert (record.end_reason, record.resumed_at) == ("disconnected", NOW + 1)
    # The counter coming back later hears that the call ended instead of re-creating it; a stranger learns nothing.
    out = resume(core, COUNTER, [COUNTER, OFFICE1], at=NOW + 30)
    assert one(out, COUNTER, "ended")["reason"] == "disconnected"
    assert core.calls == {}


def test_a_colleague_that_never_comes_back_leaves(core: RelayCore) -> None:
    resume(core, COUNTER, [COUNTER, OFFICE1, OFFICE2])
    resume(core, OFFICE1, [COUNTER, OFFICE1, OFFICE2])
    out = core.timer(("resume", CID), NOW + 21)
    for member in (COUNTER, OFFICE1):
        assert one(out, member, "left") == {
            "type": "left",
            "call": CID,
            "terminal": OFFICE2,
            "reason": "disconnected",
        }
    assert core.calls[CID].members == [COUNTER, OFFICE1]
    assert one(core.connect(COUNTER, NOW + 22), COUNTER, "call_state")["offline"] == []


def test_a_call_that_ended_here_is_not_resumed() -> None:
    """The station's grace ran out on this relay (the call ended); its late resume gets that 'ended', and a
    terminal that was not in the call gets unknown_call."""
    core = new_core()
    cid = one(core.receive(COUNTER, {"type": "call", "department": "juumin"}, NOW), COUNTER, "ringing")[
        "call"
    ]
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW)
    core.disconnect(OFFICE1, NOW + 1)
    core.timer(("grace", OFFICE1), NOW + 21)
    core.connect(OFFICE1, NOW + 25)
    out = resume(core, OFFICE1, [COUNTER, OFFICE1], call=cid, at=NOW + 25)
    assert one(out, OFFICE1, "ended")["reason"] == "disconnected"
    assert core.calls == {}
    with pytest.raises(ProtocolError) as err:
        resume(core, OFFICE2, [COUNTER, OFFICE2], call=cid)
    assert err.value.code == "unknown_call"


def test_a_member_the_relay_still_knows_only_gets_nothing(core: RelayCore) -> None:
    """No restart: a member's resume for the call the relay kept is a no-op (connect() sent its call_state)."""
    cid = one(core.receive(COUNTER, {"type": "call", "department": "juumin"}, NOW), COUNTER, "ringing")[
        "call"
    ]
    core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW)
    assert resume(core, COUNTER, [COUNTER, OFFICE1], call=cid) == []
    with pytest.raises(ProtocolError) as err:
        resume(core, OFFICE2, [COUNTER, OFFICE1, OFFICE2], call=cid)
    assert err.value.code == "not_member"


def test_an_invited_colleague_of_another_department_waits_for_a_founder() -> None:
    """A station that does not serve the department (it was invited) cannot re-create the call; its resume waits
    and it is back as soon as the counter re-creates the call listing it."""
    core = new_core()
    o2 = core.config.terminals[OFFICE2]
    core = new_core(terminals={**core.config.terminals, OFFICE2: replace(o2, departments=("zeimu",))})
    out = resume(core, OFFICE2, [COUNTER, OFFICE1, OFFICE2])
    assert sent(out, OFFICE2) == [] and core.calls == {}
    out = resume(core, COUNTER, [COUNTER, OFFICE1, OFFICE2], at=NOW + 2)
    assert one(out, OFFICE2, "call_state")["offline"] == [OFFICE1]
    assert one(out, COUNTER, "call_state")["members"] == [COUNTER, OFFICE1, OFFICE2]
    assert core.call_of == {COUNTER: CID, OFFICE2: CID}


def test_call_log_row_is_reopened_by_the_resume(tmp_path: Path) -> None:
    """The old relay wrote the call as ended 'shutdown' (or the new one closed it as 'relay_restart'): the resumed
    call reopens that row, keeping its start and answer, and its real end is written with the resume time. A row
    that had ended for another reason is never reopened."""
    log = CallLog(tmp_path / "calls.db")
    log.record(CallRecord(CID, "juumin", COUNTER, 100.0, 200.0, "answered", "shutdown", 110.0, OFFICE1, 2))
    log.record(CallRecord("crashed", "juumin", COUNTER, 100.0, None, "active", "", 110.0, OFFICE1, 2))
    assert log.close_unfinished(300.0) == 1
    log.record(CallRecord("done", "juumin", COUNTER, 100.0, 150.0, "answered", "hangup", 110.0, OFFICE1, 2))
    for call in (CID, "crashed", "done"):
        log.record(CallRecord(call, "juumin", COUNTER, 400.0, None, "active", "", 400.0, OFFICE1, 2, 400.0))
    rows = {r.call: r for r in log.records()}
    for call in (CID, "crashed"):
        assert (rows[call].created_at, rows[call].answered_at, rows[call].ended_at) == (100.0, 110.0, None)
        assert (rows[call].outcome, rows[call].resumed_at) == ("active", 400.0)
    assert (rows["done"].end_reason, rows["done"].resumed_at) == ("hangup", None)
    log.record(
        CallRecord(CID, "juumin", COUNTER, 400.0, 500.0, "answered", "hangup", 400.0, OFFICE1, 3, 400.0)
    )
    row = {r.call: r for r in log.records()}[CID]
    assert (row.created_at, row.answered_at, row.ended_at, row.end_reason, row.max_members) == (
        100.0,
        110.0,
        500.0,
        "hangup",
        3,
    )
    # A restarted relay's own log never saw the call: the resume writes a row of its own.
    log.record(CallRecord("fresh", "juumin", COUNTER, 400.0, None, "active", "", 400.0, OFFICE1, 2, 400.0))
    assert {r.call: r for r in log.records()}["fresh"].created_at == 400.0
    log.close()
