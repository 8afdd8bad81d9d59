"""The staff station's state: pure, no Kivy, no I/O.

The station app feeds :class:`OfficeMachine` events (relay messages, link changes, staff touches, media
events, timers) through :meth:`OfficeMachine.handle`, which returns commands for the app to carry out
(send a message, ring or stop ringing, start or stop the call's media session, start or cancel a timer).
Screens read the machine's public attributes: the ringing list, today's missed calls, the current call
with its members and invitations, the available/away status and the last notice.

Every state change goes through :meth:`OfficeMachine._go`, which logs ``old -> new`` and raises
:class:`InvalidTransition` (naming both states) for a change that :data:`TRANSITIONS` does not allow
(:func:`kiosk.machine.check_transition`, shared with the counter's machine).

Why it is one module: it is one state machine. Its handlers are short and share the machine's state (the ringing
list, the call and its invitations, the notice) and one transition table; spread over modules, which event moves
which state would no longer be visible in one place. Its vocabulary (states, data, events, commands) is in
:mod:`kiosk.office_events`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from common import messages as msgs
from common.logs import event
from common.messages import ServerMessage
from kiosk.machine import (
    CancelTimer,
    Command,
    Event,
    InvalidTransition,
    LinkChanged,
    RelayMessage,
    Ring,
    Send,
    StartTimer,
    TimerFired,
    TransitionTable,
    check_transition,
)
from kiosk.office_events import (  # the machine's vocabulary, re-exported
    AnswerPressed,
    AwayToggled,
    DeclinePressed,
    DepartmentInfo,
    HangUpPressed,
    Invite,
    InvitePressed,
    InviteStatus,
    LeavePressed,
    MediaEnded,
    Missed,
    Notice,
    Ringing,
    StartMedia,
    State,
    StationCall,
    StationInfo,
    StopMedia,
)
from kiosk.video.membership import resume_message

log = logging.getLogger(__name__)

__all__ = [
    "State",
    "InviteStatus",
    "InvalidTransition",
    "Ringing",
    "Missed",
    "Invite",
    "StationCall",
    "Notice",
    "StationInfo",
    "DepartmentInfo",
    "OfficeMachine",
    "TAKEN_SHOWN_S",
    # events
    "Event",
    "LinkChanged",
    "RelayMessage",
    "AnswerPressed",
    "DeclinePressed",
    "AwayToggled",
    "InvitePressed",
    "LeavePressed",
    "HangUpPressed",
    "MediaEnded",
    "TimerFired",
    # commands
    "Command",
    "Send",
    "Ring",
    "StartMedia",
    "StopMedia",
    "StartTimer",
    "CancelTimer",
]

TAKEN_SHOWN_S = 6.0  # how long a call answered by a colleague stays listed as "taken by …"
MISSED_REASONS = ("unanswered", "cancelled")


TRANSITIONS: TransitionTable[State] = TransitionTable(
    "office",
    {
        State.CONNECTING: frozenset({State.WAITING, State.IN_CALL}),
        State.WAITING: frozenset({State.ANSWERING, State.CONNECTING, State.IN_CALL}),
        State.ANSWERING: frozenset({State.IN_CALL, State.WAITING, State.CONNECTING}),
        State.IN_CALL: frozenset({State.WAITING, State.CONNECTING}),
    },
)


# -- the machine ---------------------------------------------------------------------------------
class OfficeMachine:
    """State of one staff station.

    Args:
        clock: monotonic seconds (waiting times, notices).
        wall: Unix seconds (missed-call times, "today").
        taken_shown: seconds a call answered by a colleague stays listed.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        taken_shown: float = TAKEN_SHOWN_S,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.taken_shown = taken_shown
        self.state = State.CONNECTING
        self.history: list[tuple[State, State]] = []
        self.link_state = "connecting"
        self.link_detail = ""
        self.terminal = ""
        self.terminal_name = ""
        self.departments: list[DepartmentInfo] = []
        self.stations: list[StationInfo] = []
        self.away = False
        self.ringing: dict[str, Ringing] = {}  # call id → entry, in arrival order
        self.missed: list[Missed] = []
        self.call: StationCall | None = None
        self.answering: str | None = None
        self.notice: Notice | None = None
        self._ring_on = False
        self._out: list[Command] = []
        # The dispatch tables: every event type this machine takes; the relay messages about no call in
        # particular; the messages about a call (``call`` is a string), before those about the call it is in.
        self.event_handlers: dict[type[Event], Callable[[Any], None]] = {
            LinkChanged: self._on_link,
            RelayMessage: self._on_relay_message,
            AnswerPressed: self._on_answer_pressed,
            DeclinePressed: self._on_decline,
            AwayToggled: self._on_away,
            InvitePressed: self._on_invite,
            LeavePressed: self._on_leave,
            HangUpPressed: self._on_hang_up,
            MediaEnded: self._on_media_ended,
            TimerFired: self._on_timer,
        }
        # Each message handler takes the definition of common.messages its key names (validated on arrival by the
        # relay client), hence ``Any`` for the tables' message argument: a Callable's argument cannot vary with the
        # key. Call messages for other types (joined, left, declined, invite_expired) go to _on_call_message when
        # they are about this station's call.
        self.message_handlers: dict[str, Callable[[Any], None]] = {
            "welcome": self._on_welcome,
            "status": self._on_status,
            "error": self._on_error,
            "colleagues": self._on_colleagues,
        }
        self.call_message_handlers: dict[str, Callable[[str, Any], None]] = {
            "incoming": self._on_incoming,
            "taken": self._on_taken,
            "ended": self._on_ended,
            "call_state": self._on_call_state,
        }

    # -- queries -----------------------------------------------------------------------------
    def department(self, dept_id: str) -> DepartmentInfo | None:
        return next((d for d in self.departments if d.id == dept_id), None)

    def station(self, terminal: str) -> StationInfo | None:
        return next((s for s in self.stations if s.id == terminal), None)

    def ringing_calls(self) -> list[Ringing]:
        """Calls ringing here (and those just taken by a colleague), oldest first."""
        return list(self.ringing.values())

    def missed_today(self) -> list[Missed]:
        """Missed calls of today (local date), newest first."""
        today = datetime.fromtimestamp(self.wall()).date()
        return [m for m in reversed(self.missed) if datetime.fromtimestamp(m.at).date() == today]

    def staff_members(self) -> list[str]:
        """Staff in the current call, this station included."""
        if self.call is None:
            return []
        return [m for m in self.call.members if m != self.call.counter]

    @property
    def can_leave(self) -> bool:
        """Leaving is possible only while a colleague stays with the resident."""
        return self.state is State.IN_CALL and len(self.staff_members()) > 1

    def invite_departments(self) -> list[str]:
        """Departments a colleague can be invited from: ours first, then those of other stations."""
        ids = [d.id for d in self.departments]
        for s in self.stations:
            ids += [d for d in s.departments if d not in ids]
        return ids

    # -- events in ---------------------------------------------------------------------------
    def handle(self, event: Event) -> list[Command]:
        """Apply one event; return the commands to carry out."""
        self._out = []
        handler = self.event_handlers.get(type(event))
        if handler is None:
            raise TypeError(f"unknown office event {event!r}")
        handler(event)
        self._update_ring()
        return self._out

    def _on_relay_message(self, event: RelayMessage) -> None:
        self._on_message(event.msg)

    def _on_answer_pressed(self, event: AnswerPressed) -> None:
        self._on_answer(event.call)

    def _on_decline(self, event: DeclinePressed) -> None:
        entry = self.ringing.pop(event.call, None)
        if entry is not None:
            self._emit(Send({"type": "decline", "call": event.call}))

    def _on_away(self, event: AwayToggled) -> None:
        if event.away != self.away:
            self.away = event.away
            self._emit(Send({"type": "status", "status": "away" if event.away else "available"}))

    def _on_leave(self, event: LeavePressed) -> None:
        if self.state is State.IN_CALL and self.can_leave:
            self._end_call("leave", Notice("left", at=self.clock()))

    def _on_hang_up(self, event: HangUpPressed) -> None:
        if self.state in (State.IN_CALL, State.ANSWERING):
            self._end_call("hangup", Notice("ended_by_you", at=self.clock()))

    def _on_media_ended(self, event: MediaEnded) -> None:
        current = self.call.id if self.call is not None else self.answering
        if current == event.call and self.state in (State.IN_CALL, State.ANSWERING):
            kind = "media_failed" if event.reason == "media_failed" else "ended"
            self._end_call("close", Notice(kind, {"reason": event.reason}, self.clock()))

    def _on_timer(self, event: TimerFired) -> None:
        if event.name.startswith("taken:"):
            entry = self.ringing.get(event.name[6:])
            if entry is not None and entry.taken_by is not None:
                del self.ringing[entry.call]

    # -- internals ---------------------------------------------------------------------------
    def _emit(self, cmd: Command) -> None:
        self._out.append(cmd)

    def _go(self, new: State, why: str = "") -> None:
        old = self.state
        if not check_transition(TRANSITIONS, old, new, why, log):
            return
        self.state = new
        self.history.append((old, new))

    def _idle_state(self) -> State:
        return State.WAITING if self.link_state == "up" and self.terminal else State.CONNECTING

    def _update_ring(self) -> None:
        on = self.state is State.WAITING and any(r.taken_by is None for r in self.ringing.values())
        if on != self._ring_on:
            self._ring_on = on
            self._emit(Ring(on))

    def _on_link(self, event: LinkChanged) -> None:
        self.link_state, self.link_detail = event.state, event.detail
        if event.state == "up":
            return  # 'welcome' (which comes first) already moved us on
        if event.state in ("down", "unauthorized"):
            # Whatever rang may have been answered or ended meanwhile: the relay re-sends what still rings.
            for call in list(self.ringing):
                self._emit(CancelTimer(f"taken:{call}"))
            self.ringing.clear()
            if self.state is State.ANSWERING:
                self.answering = None
                self._emit(StopMedia("close"))
                self.notice = Notice("answer_failed", {"code": "relay"}, self.clock())
                self._go(State.CONNECTING, "relay link lost while answering")
            elif self.state is State.WAITING:
                self._go(State.CONNECTING, f"relay link {event.state}")
            # In a call the media is peer to peer and carries on; the relay re-sends call_state.

    def _on_message(self, msg: ServerMessage) -> None:
        handler = self.message_handlers.get(msg["type"])
        if handler is not None:
            handler(msg)
            return
        call = msg.get("call")
        if not isinstance(call, str):
            return
        call_handler = self.call_message_handlers.get(msg["type"])
        if call_handler is not None:
            call_handler(call, msg)
        elif self.call is not None and call == self.call.id:
            self._on_call_message(msg)

    def _on_status(self, msg: msgs.StatusSet) -> None:
        self.away = msg["status"] == "away"

    def _on_colleagues(self, msg: msgs.Colleagues) -> None:
        changes = msg["stations"]
        self.stations = [replace(s, status=changes[s.id]) if s.id in changes else s for s in self.stations]

    def _on_incoming(self, call: str, msg: msgs.Incoming) -> None:
        if self.call is not None and call == self.call.id:
            return
        entry = self.ringing.get(call)
        if entry is None or entry.taken_by is not None:
            self.ringing[call] = Ringing(
                call=call,
                department=msg["department"],
                counter=msg["from"],
                since=entry.since if entry is not None else self.clock(),
                counter_name=msg.get("from_name", ""),
                invited_by=msg.get("invited_by"),
                members=tuple(msg.get("members", ())),
            )

    def _on_taken(self, call: str, msg: msgs.Taken) -> None:
        entry = self.ringing.get(call)
        by = msg["by"]
        if entry is not None and self.answering != call:
            entry.taken_by = by
            self._emit(StartTimer(f"taken:{call}", self.taken_shown))

    def _on_welcome(self, msg: msgs.Welcome) -> None:
        self.terminal = msg["terminal"]
        self.terminal_name = msg.get("name", "")
        self.departments = [
            DepartmentInfo(
                d["id"],
                d.get("name", {}).get("ja", d["id"]),
                d.get("name", {}).get("en", d["id"]),
                d.get("fallback", {}).get("phone", ""),
            )
            for d in msg["departments"]
        ]
        self.stations = [
            StationInfo(
                s["id"],
                s.get("name", s["id"]),
                tuple(s.get("departments", ())),
                s.get("status", "available"),
            )
            for s in msg.get("stations", [])
        ]
        self.away = msg.get("status") == "away"
        self.link_state = "up"
        for call in list(self.ringing):
            self._emit(CancelTimer(f"taken:{call}"))
        self.ringing.clear()  # the relay re-sends every call still ringing here
        if self.state is State.IN_CALL and self.call is not None:
            # Still in the call: vouch for it, so a relay restarted under it re-creates it (and we are back in it).
            c = self.call
            resume = resume_message(self.terminal, c.id, c.department, c.counter, c.members)
            if resume is not None:
                self._emit(Send(resume))
        if self.state is State.CONNECTING:
            self._go(State.WAITING, "welcomed")

    def _on_error(self, msg: msgs.Error) -> None:
        ref, code = msg.get("ref"), msg["code"]
        if ref == "answer" and self.state is State.ANSWERING:
            call = self.answering or ""
            self.answering = None
            self._emit(StopMedia("close"))
            entry = self.ringing.pop(call, None)
            by = msg.get("by")
            if code == "already_answered" and by:
                self.notice = Notice(
                    "taken",
                    {"by": by, "department": entry.department if entry else ""},
                    self.clock(),
                )
            else:
                self.notice = Notice("answer_failed", {"code": code}, self.clock())
            self._go(self._idle_state(), f"answer refused: {code}")
        elif ref == "invite" and self.call is not None:
            pending = [i for i in self.call.invites if i.status is InviteStatus.PENDING]
            if pending:
                pending[-1].status, pending[-1].detail = InviteStatus.FAILED, code
            self.notice = Notice("invite_failed", {"code": code}, self.clock())

    def _on_answer(self, call: str) -> None:
        entry = self.ringing.get(call)
        if self.state is not State.WAITING or entry is None or entry.taken_by is not None:
            event(log, "answer_ignored", call=call, state=self.state.name)
            return
        self.answering = call
        self.notice = None
        self._emit(StartMedia(call))
        self._emit(Send({"type": "answer", "call": call}))
        self._go(State.ANSWERING, f"answering {call}")

    def _on_invite(self, ev: InvitePressed) -> None:
        if self.state is not State.IN_CALL or self.call is None:
            return
        if (ev.department is None) == (ev.terminal is None):
            raise ValueError("invite needs exactly one of department or terminal")
        msg: dict[str, Any] = {"type": "invite", "call": self.call.id}
        if ev.terminal is not None:
            msg["terminal"] = ev.terminal
            self.call.invites.append(Invite("terminal", ev.terminal))
        else:
            msg["department"] = ev.department
            self.call.invites.append(Invite("department", str(ev.department)))
        self._emit(Send(msg))

    def _on_call_state(self, call: str, msg: msgs.CallState) -> None:
        members = list(msg["members"])
        if msg["state"] != "active":
            return
        if self.call is not None and self.call.id == call:
            self.call.members = members
            return
        entry = self.ringing.pop(call, None)
        if entry is not None:
            self._emit(CancelTimer(f"taken:{call}"))
        self.call = StationCall(
            call,
            msg["department"],
            msg["counter"],
            members,
            answered_at=self.clock(),
            counter_name=entry.counter_name if entry is not None else "",
        )
        if self.state is State.ANSWERING and self.answering == call:
            self.answering = None
            self._go(State.IN_CALL, f"answered {call}")
        else:
            # The relay says we are in a call we did not know about (this app restarted mid-call).
            self._emit(StartMedia(call))
            self._go(State.IN_CALL, f"resumed {call}")

    def _on_call_message(self, msg: ServerMessage) -> None:
        """A message about this station's call that no table entry takes (the type narrows it)."""
        assert self.call is not None
        if msg["type"] == "joined":
            terminal = msg["terminal"]
            if terminal not in self.call.members:
                self.call.members.append(terminal)
            invite = self._pending_invite_for(terminal)
            if invite is not None:
                invite.status, invite.by = InviteStatus.JOINED, terminal
        elif msg["type"] == "left":
            if msg["terminal"] in self.call.members:
                self.call.members.remove(msg["terminal"])
        elif msg["type"] == "declined":
            invite = self._pending_invite_for(msg["terminal"])
            if invite is not None:
                invite.status, invite.by = InviteStatus.DECLINED, msg["terminal"]
        elif msg["type"] == "invite_expired":
            pending = [i for i in self.call.invites if i.status is InviteStatus.PENDING]
            if pending:
                pending[0].status = InviteStatus.EXPIRED

    def _pending_invite_for(self, terminal: str) -> Invite | None:
        assert self.call is not None
        pending = [i for i in self.call.invites if i.status is InviteStatus.PENDING]
        for i in pending:
            if i.kind == "terminal" and i.target == terminal:
                return i
        station = self.station(terminal)
        for i in pending:
            if i.kind == "department" and (station is None or i.target in station.departments):
                return i
        return None

    def _on_ended(self, call: str, msg: msgs.Ended) -> None:
        reason = msg["reason"]
        entry = self.ringing.pop(call, None)
        if entry is not None:
            self._emit(CancelTimer(f"taken:{call}"))
            if not entry.is_invite and entry.taken_by is None and reason in MISSED_REASONS:
                waited = max(0.0, self.clock() - entry.since)
                self.missed.append(
                    Missed(
                        call,
                        entry.department,
                        entry.counter,
                        self.wall() - waited,
                        waited,
                        reason,
                        entry.counter_name,
                    )
                )
        if self.answering == call and self.state is State.ANSWERING:
            self.answering = None
            self._emit(StopMedia("close"))
            self.notice = Notice("answer_failed", {"code": reason}, self.clock())
            self._go(self._idle_state(), f"call {call} ended while answering: {reason}")
        elif self.call is not None and self.call.id == call and self.state is State.IN_CALL:
            if reason == "shutdown":
                return  # the relay went away, not the call: media carries on peer to peer
            self._end_call(
                "close", Notice("ended", {"reason": reason, "by": msg.get("by", "")}, self.clock())
            )

    def _end_call(self, how: str, notice: Notice) -> None:
        self._emit(StopMedia(how))
        self.call = None
        self.answering = None
        self.notice = notice
        self._go(self._idle_state(), f"call over ({how})")
