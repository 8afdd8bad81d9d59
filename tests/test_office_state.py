"""The staff station's pure state machine: ringing list, taken, away, missed calls, answering, the call,
invitations, leave and end — fed with relay messages, no event loop."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import relay_msg

from kiosk.office_state import (
    AnswerPressed,
    AwayToggled,
    CancelTimer,
    DeclinePressed,
    HangUpPressed,
    InvalidTransition,
    InvitePressed,
    InviteStatus,
    LeavePressed,
    LinkChanged,
    MediaEnded,
    OfficeMachine,
    Ring,
    Send,
    StartMedia,
    StartTimer,
    State,
    StopMedia,
    TimerFired,
)

ME = "office-tobetsu-1"
OTHER = "office-tobetsu-2"
COUNTER = "counter-sapporo-1"

WELCOME = {
    "type": "welcome",
    "terminal": ME,
    "role": "office",
    "name": "住民課 窓口",
    "protocol": 1,
    "time": 0,
    "departments": [
        {
            "id": "juumin",
            "office": "tobetsu",
            "name": {"ja": "住民課", "en": "Residents Division"},
            "fallback": {"phone": "0133-23-2223"},
        }
    ],
    "stations": [{"id": OTHER, "name": "税務課 窓口", "departments": ["juumin", "zeimu"], "status": "away"}],
    "status": "available",
    "ice_servers": [],
}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.wall = 1_790_000_000.0

    def mono(self) -> float:
        return self.t

    def now(self) -> float:
        return self.wall

    def advance(self, s: float) -> None:
        self.t += s
        self.wall += s


def machine() -> tuple[OfficeMachine, Clock]:
    clock = Clock()
    m = OfficeMachine(clock=clock.mono, wall=clock.now)
    m.handle(relay_msg(WELCOME))
    m.handle(LinkChanged("up"))
    return m, clock


def msg(m: OfficeMachine, **fields: Any) -> list[Any]:
    return m.handle(relay_msg(fields))


def incoming(m: OfficeMachine, call: str = "c1", **extra: Any) -> list[Any]:
    return msg(m, type="incoming", call=call, department="juumin", **{"from": COUNTER}, **extra)


def in_call(m: OfficeMachine, call: str = "c1") -> None:
    incoming(m, call)
    m.handle(AnswerPressed(call))
    msg(
        m,
        type="call_state",
        call=call,
        state="active",
        department="juumin",
        counter=COUNTER,
        members=[COUNTER, ME],
        offline=[],
    )
    assert m.state is State.IN_CALL


def test_welcome_moves_to_waiting_and_reads_departments_and_stations() -> None:
    """After welcome the station waits, knows its name, departments and colleagues."""
    m, _ = machine()
    assert m.state is State.WAITING and m.terminal == ME and m.terminal_name == "住民課 窓口"
    dept = m.department("juumin")
    assert dept is not None and dept.name("en") == "Residents Division"
    assert m.station(OTHER) is not None and m.invite_departments() == ["juumin", "zeimu"]
    assert m.history == [(State.CONNECTING, State.WAITING)]


def test_colleague_status_follows_the_relay() -> None:
    """A colleague's status comes with welcome and changes with 'colleagues'; away or offline cannot be invited."""
    m, _ = machine()
    other = m.station(OTHER)
    assert other is not None and other.status == "away" and not other.can_be_invited
    msg(m, type="colleagues", stations={OTHER: "available", "office-unknown": "available"})
    other = m.station(OTHER)
    assert other is not None and other.status == "available" and other.can_be_invited
    assert [s.id for s in m.stations] == [OTHER], "a station the welcome did not list is not added"
    msg(m, type="colleagues", stations={OTHER: "offline"})
    assert not m.station(OTHER).can_be_invited  # type: ignore[union-attr]


def test_incoming_rings_and_lists_with_waiting_time() -> None:
    """An incoming call is listed (department, counter, since) and switches the ring on; a second does not re-ring."""
    m, clock = machine()
    out = incoming(m)
    assert Ring(True) in out
    clock.advance(42)
    assert incoming(m, "c2") == []
    calls = m.ringing_calls()
    assert [c.call for c in calls] == ["c1", "c2"] and calls[0].counter == COUNTER
    assert clock.mono() - calls[0].since == 42


def test_taken_by_colleague_shows_then_disappears_and_stops_the_ring() -> None:
    """'taken' marks the call as taken by the colleague, stops the ring, and a timer removes it later."""
    m, _ = machine()
    incoming(m)
    out = msg(m, type="taken", call="c1", by=OTHER)
    assert Ring(False) in out and StartTimer("taken:c1", m.taken_shown) in out
    assert m.ringing["c1"].taken_by == OTHER
    m.handle(AnswerPressed("c1"))  # too late: nothing happens
    assert m.state is State.WAITING
    m.handle(TimerFired("taken:c1"))
    assert m.ringing_calls() == []


def test_unanswered_and_cancelled_calls_become_missed_with_time() -> None:
    """A call that rang here and ended unanswered or cancelled is in today's missed list, newest first."""
    m, clock = machine()
    incoming(m, "c1")
    clock.advance(60)
    out = msg(m, type="ended", call="c1", reason="unanswered")
    assert Ring(False) in out
    incoming(m, "c2")
    clock.advance(5)
    msg(m, type="ended", call="c2", reason="cancelled", by=COUNTER)
    incoming(m, "c3")
    msg(m, type="taken", call="c3", by=OTHER)
    msg(m, type="ended", call="c3", reason="hangup")  # answered elsewhere: not missed
    missed = m.missed_today()
    assert [(x.call, x.reason, round(x.waited)) for x in missed] == [
        ("c2", "cancelled", 5),
        ("c1", "unanswered", 60),
    ]
    assert missed[1].at == 1_790_000_000.0  # when it started ringing
    clock.advance(86400)
    assert m.missed_today() == []


def test_away_sends_status_and_follows_the_relay() -> None:
    """The away toggle sends 'status' once; the relay's echo and welcome keep the flag right."""
    m, _ = machine()
    assert m.handle(AwayToggled(True)) == [Send({"type": "status", "status": "away"})]
    assert m.away and m.handle(AwayToggled(True)) == []
    msg(m, type="status", status="available")
    assert not m.away


def test_answer_starts_media_then_call_state_enters_the_call() -> None:
    """Answering opens media first, sends 'answer', and call_state makes it a call with members."""
    m, _ = machine()
    incoming(m)
    out = m.handle(AnswerPressed("c1"))
    assert out[:2] == [StartMedia("c1"), Send({"type": "answer", "call": "c1"})] and Ring(False) in out
    assert m.state is State.ANSWERING
    msg(
        m,
        type="call_state",
        call="c1",
        state="active",
        department="juumin",
        counter=COUNTER,
        members=[COUNTER, ME],
        offline=[],
    )
    assert m.state is State.IN_CALL and m.call is not None and m.call.members == [COUNTER, ME]
    assert "c1" not in m.ringing and not m.can_leave


def test_answer_refused_because_a_colleague_was_faster() -> None:
    """already_answered closes the media and returns to waiting with a 'taken by' notice."""
    m, _ = machine()
    incoming(m)
    m.handle(AnswerPressed("c1"))
    out = msg(m, type="error", code="already_answered", ref="answer", call="c1", by=OTHER, message="")
    assert StopMedia("close") in out and m.state is State.WAITING
    assert m.notice is not None and m.notice.kind == "taken" and m.notice.fields["by"] == OTHER


def test_other_calls_ring_silently_during_a_call() -> None:
    """While in a call new calls are listed but the ring stays off."""
    m, _ = machine()
    in_call(m)
    out = incoming(m, "c2")
    assert Ring(True) not in out and "c2" in m.ringing


def test_invite_by_terminal_joined_and_by_department_declined() -> None:
    """Invitations are tracked: joined by the station, declined, expired, or refused by the relay."""
    m, _ = machine()
    in_call(m)
    out = m.handle(InvitePressed(terminal=OTHER))
    assert out == [Send({"type": "invite", "call": "c1", "terminal": OTHER})]
    msg(m, type="joined", call="c1", terminal=OTHER)
    assert m.call is not None and m.call.invites[0].status is InviteStatus.JOINED
    assert m.call.members == [COUNTER, ME, OTHER] and m.can_leave
    msg(m, type="left", call="c1", terminal=OTHER, reason="leave")
    assert not m.can_leave
    m.handle(InvitePressed(department="zeimu"))
    msg(m, type="declined", call="c1", terminal=OTHER)
    assert m.call.invites[1].status is InviteStatus.DECLINED and m.call.invites[1].by == OTHER
    m.handle(InvitePressed(department="juumin"))
    msg(m, type="invite_expired", call="c1")
    assert m.call.invites[2].status is InviteStatus.EXPIRED
    m.handle(InvitePressed(terminal=OTHER))
    msg(m, type="error", code="unavailable", ref="invite", message="")
    assert m.call.invites[3].status is InviteStatus.FAILED and m.call.invites[3].detail == "unavailable"


def test_invitation_rings_and_can_be_declined() -> None:
    """An invitation from a colleague is listed as such and rings; declining tells the relay."""
    m, _ = machine()
    out = incoming(m, "c9", invited_by=OTHER, members=[COUNTER, OTHER])
    assert Ring(True) in out and m.ringing["c9"].is_invite
    out = m.handle(DeclinePressed("c9"))
    assert Send({"type": "decline", "call": "c9"}) in out and Ring(False) in out and not m.ringing


def test_leave_only_with_a_colleague_and_hangup_ends() -> None:
    """Leave needs a colleague in the call; hang-up ends it and returns to waiting."""
    m, _ = machine()
    in_call(m)
    assert m.handle(LeavePressed()) == [] and m.state is State.IN_CALL
    msg(m, type="joined", call="c1", terminal=OTHER)
    assert m.handle(LeavePressed()) == [StopMedia("leave")] and m.state is State.WAITING and m.call is None
    in_call(m, "c2")
    assert m.handle(HangUpPressed()) == [StopMedia("hangup")] and m.state is State.WAITING


def test_call_ended_by_the_resident_or_media_failure() -> None:
    """'ended' from the relay or a failed media session closes the call with a notice."""
    m, _ = machine()
    in_call(m)
    out = msg(m, type="ended", call="c1", reason="hangup", by=COUNTER)
    assert StopMedia("close") in out and m.state is State.WAITING and m.notice is not None
    assert m.notice.kind == "ended"
    in_call(m, "c2")
    m.handle(MediaEnded("old-call", "media_failed"))
    assert m.state is State.IN_CALL
    m.handle(MediaEnded("c2", "media_failed"))
    assert m.state is State.WAITING and m.notice is not None and m.notice.kind == "media_failed"


def test_link_loss_clears_the_ringing_list_but_keeps_a_call() -> None:
    """Losing the relay empties the (possibly stale) ringing list; a call in progress carries on."""
    m, _ = machine()
    incoming(m)
    out = m.handle(LinkChanged("down", "x"))
    assert Ring(False) in out and CancelTimer("taken:c1") in out and m.state is State.CONNECTING
    m.handle(relay_msg(WELCOME))
    in_call(m)
    m.handle(LinkChanged("down"))
    assert m.state is State.IN_CALL
    m.handle(relay_msg(WELCOME))
    msg(
        m,
        type="call_state",
        call="c1",
        state="active",
        department="juumin",
        counter=COUNTER,
        members=[COUNTER, ME],
        offline=[],
    )
    assert m.state is State.IN_CALL and m.call is not None


def test_impossible_transition_names_both_states() -> None:
    """A transition the table forbids raises, naming the old and the new state."""
    m = OfficeMachine()
    with pytest.raises(InvalidTransition, match="CONNECTING -> ANSWERING"):
        m._go(State.ANSWERING)
