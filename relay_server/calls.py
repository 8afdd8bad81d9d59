"""Calls and their rules: ringing, answering, invitations, signalling, leaving and ending (pure).

:class:`CallRules` is the part of :class:`relay_server.core.RelayCore` that handles the call messages (``call``,
``cancel``, ``answer``, ``decline``, ``invite``, ``leave``, ``hangup``, ``signal``, ``media_path``) and ends calls;
:class:`Call` is one call, its state moved only through :meth:`Call.move` (one transition table).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from common import messages as msgs
from common.protocol import ProtocolError
from common.transitions import TransitionTable, by_value
from relay_server.actions import Action, CallRecord, CancelTimer, LogEvent, Send, StartTimer
from relay_server.config import RelayConfig
from relay_server.presence import PresenceIndex

log = logging.getLogger(__name__)

ENDED_REMEMBERED = 4096  # ended calls this relay remembers, so a late 'resume' of one gets its 'ended'


class CallState(Enum):
    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"


_TRANSITIONS: TransitionTable[CallState] = TransitionTable(
    "call",
    {
        CallState.RINGING: {CallState.ACTIVE, CallState.ENDED},
        CallState.ACTIVE: {CallState.ENDED},
        CallState.ENDED: set(),
    },
    label=by_value,
    level=logging.DEBUG,
)


@dataclass
class Invite:
    number: int
    by: str
    targets: set[str]


@dataclass
class Call:
    id: str
    department: str
    counter: str
    created_at: float
    state: CallState = CallState.RINGING
    members: list[str] = field(default_factory=list)  # join order; the counter first
    rung: set[str] = field(default_factory=set)  # stations (and lamps) shown the initial ring
    invites: dict[int, Invite] = field(default_factory=dict)
    answered_at: float | None = None
    answered_by: str | None = None
    max_members: int = 1
    invite_counter: int = 0
    paths: dict[str, str] = field(default_factory=dict)  # "member>other" → the media path the member reported
    # A call re-created by ``resume`` (a relay restarted under it): when, the members in the order the first
    # member to vouch listed them, and those not back yet (→ since when), who are not in ``members`` until
    # they vouch for themselves.
    resumed_at: float | None = None
    order: list[str] = field(default_factory=list)
    pending: dict[str, float] = field(default_factory=dict)

    def move(self, new: CallState) -> None:
        """The one place a call changes state."""
        self.state = _TRANSITIONS.move(self.state, new, log, subject=self.id)

    @property
    def staff(self) -> list[str]:
        return [m for m in self.members if m != self.counter]

    def invited(self, terminal: str) -> Invite | None:
        return next((inv for inv in self.invites.values() if terminal in inv.targets), None)


class CallRules(PresenceIndex):
    """The calls in progress and the rules of the call messages.

    Args:
        config: the validated relay config.
        new_call_id: factory for call ids (injected so tests are deterministic).
    """

    def __init__(self, config: RelayConfig, new_call_id: Callable[[], str]) -> None:
        super().__init__(config)
        self.new_call_id = new_call_id
        self.calls: dict[str, Call] = {}
        self.offline_members: dict[str, float] = {}  # member in grace → dropped at
        self.missed_end: dict[str, dict[str, Any]] = {}  # member in grace when its call ended → the 'ended'
        # Calls this relay ended, oldest first (at most ENDED_REMEMBERED): the 'ended' and who was in the call.
        self.ended_calls: dict[str, tuple[dict[str, Any], frozenset[str]]] = {}

    # -- call messages ---------------------------------------------------------------------------------------
    def _on_call(self, terminal: str, msg: msgs.PlaceCall, now: float) -> list[Action]:
        dept_id = msg["department"]
        if dept_id not in self.config.terminals[terminal].departments:
            raise ProtocolError("unknown_department", f"no department '{dept_id}' at this counter", "call")
        if terminal in self.call_of:
            raise ProtocolError(
                "already_in_call",
                f"this counter is already in call {self.call_of[terminal]}",
                "call",
                call=self.call_of[terminal],
            )
        dept = self.config.departments[dept_id]
        reject = None
        if not self.is_open(dept_id, now):
            reject = ("closed", f"{dept.name['en']} is closed now ({dept.hours.describe()})")
        elif not self.stations_for(dept_id):
            reject = ("unavailable", f"no station of {dept.name['en']} is online")
        if reject:
            code, text = reject
            return [
                CallRecord(self.new_call_id(), dept_id, terminal, now, now, code, code),
                LogEvent("call_rejected", {"counter": terminal, "department": dept_id, "code": code}),
                Send(
                    terminal,
                    {
                        "type": "error",
                        "code": code,
                        "message": text,
                        "ref": "call",
                        "department": dept_id,
                        "fallback": dict(dept.fallback),
                    },
                ),
            ]
        call = Call(self.new_call_id(), dept_id, terminal, now, members=[terminal])
        self.calls[call.id] = call
        self.call_of[terminal] = call.id
        out: list[Action] = [
            Send(terminal, {"type": "ringing", "call": call.id, "department": dept_id}),
            StartTimer(("ring", call.id), self.config.ring_timeout),
            CallRecord(call.id, dept_id, terminal, now, None, "ringing", ""),
        ]
        for t in self.stations_for(dept_id) + self.lamps_for(dept_id):
            call.rung.add(t)
            out.append(Send(t, self._incoming(call)))
        out.append(
            LogEvent(
                "call_rung",
                {"call": call.id, "department": dept_id, "counter": terminal, "rung": len(call.rung)},
            )
        )
        return out

    def _on_cancel(self, terminal: str, msg: msgs.Cancel, now: float) -> list[Action]:
        # A cancel that crossed the answer on the wire still ends the call: the resident meant to leave, and a
        # call kept alive here would hold the kiosk ("already_in_call") with nobody at it.
        call = self._member_call(terminal, msg, "cancel")
        return self._end(call, "cancelled", now, by=terminal)

    def _on_answer(self, terminal: str, msg: msgs.Answer, now: float) -> list[Action]:
        call = self._call(msg, "answer")
        inv = call.invited(terminal)
        if call.state is CallState.RINGING and terminal in call.rung:
            if terminal in self.call_of:
                raise ProtocolError("already_in_call", "hang up or leave your current call first", "answer")
            call.move(CallState.ACTIVE)
            call.answered_at, call.answered_by = now, terminal
            out: list[Action] = [CancelTimer(("ring", call.id))]
            self._add_member(call, terminal)
            for t in sorted(call.rung - {terminal}):
                out.append(Send(t, {"type": "taken", "call": call.id, "by": terminal}))
            call.rung.clear()
            out += [
                Send(call.counter, {"type": "answered", "call": call.id, "by": terminal}),
                Send(terminal, self._call_state(call)),
                CallRecord(
                    call.id,
                    call.department,
                    call.counter,
                    call.created_at,
                    None,
                    "active",
                    "",
                    now,
                    terminal,
                    call.max_members,
                ),
                LogEvent(
                    "call_answered",
                    {
                        "call": call.id,
                        "department": call.department,
                        "by": terminal,
                        "wait_s": round(now - call.created_at, 3),
                    },
                ),
            ]
            return out + self._presence_updates(now)
        if inv is not None and call.state is CallState.ACTIVE:
            if terminal in self.call_of:
                raise ProtocolError("already_in_call", "hang up or leave your current call first", "answer")
            if len(call.members) >= self.config.max_members:
                raise ProtocolError(
                    "call_full", f"call {call.id} already has {len(call.members)} members", "answer"
                )
            del call.invites[inv.number]
            out = [CancelTimer(("invite", f"{call.id}/{inv.number}"))]
            out += [
                Send(t, {"type": "taken", "call": call.id, "by": terminal})
                for t in sorted(inv.targets - {terminal})
            ]
            self._add_member(call, terminal)
            out.append(Send(terminal, self._call_state(call)))
            out += [Send(m, {"type": "joined", "call": call.id, "terminal": terminal}) for m in call.members]
            out.append(LogEvent("call_joined", {"call": call.id, "terminal": terminal, "invited_by": inv.by}))
            return out + self._presence_updates(now)
        if call.state is CallState.ACTIVE and (terminal in call.members or call.answered_by is not None):
            raise ProtocolError(
                "already_answered",
                f"call {call.id} was answered by {call.answered_by}",
                "answer",
                call=call.id,
                by=call.answered_by,
            )
        raise ProtocolError("forbidden", f"call {call.id} is not ringing at this station", "answer")

    def _on_decline(self, terminal: str, msg: msgs.Decline, now: float) -> list[Action]:
        call = self._call(msg, "decline")
        inv = call.invited(terminal)
        if inv is not None:
            inv.targets.discard(terminal)
            out: list[Action] = [
                Send(m, {"type": "declined", "call": call.id, "terminal": terminal}) for m in call.members
            ]
            if not inv.targets:
                del call.invites[inv.number]
                out.append(CancelTimer(("invite", f"{call.id}/{inv.number}")))
            return out
        if terminal in call.rung:
            call.rung.discard(terminal)
            return [LogEvent("call_declined", {"call": call.id, "terminal": terminal})]
        raise ProtocolError("forbidden", f"call {call.id} is not ringing at this station", "decline")

    def _on_invite(self, terminal: str, msg: msgs.Invite, now: float) -> list[Action]:
        call = self._member_call(terminal, msg, "invite")
        if call.state is not CallState.ACTIVE:
            raise ProtocolError("not_ringing", "invite once the call is answered", "invite")
        if len(call.members) >= self.config.max_members:
            raise ProtocolError(
                "call_full",
                f"the call already has {len(call.members)} members (limit {self.config.max_members})",
                "invite",
            )
        busy = set(call.members) | {t for inv in call.invites.values() for t in inv.targets}
        if "department" in msg:
            dept = msg["department"]
            if dept not in self.config.departments:
                raise ProtocolError("unknown_department", f"no department '{dept}'", "invite")
            targets = [s for s in self.stations_for(dept) if s not in busy]
        else:
            target = msg["terminal"]
            t = self.config.terminals.get(target)
            if t is None or t.role != "office":
                raise ProtocolError("unknown_terminal", f"no staff station '{target}'", "invite")
            if target in call.members:
                raise ProtocolError("bad_message", f"'{target}' is already in the call", "invite")
            if target not in self.online:
                raise ProtocolError("unavailable", f"station '{target}' is offline", "invite")
            if self.online[target].away:
                raise ProtocolError("unavailable", f"station '{target}' is away", "invite")
            if target in busy:
                raise ProtocolError(
                    "unavailable", f"station '{target}' is already invited to this call", "invite"
                )
            targets = [target]
        if not targets:
            raise ProtocolError("unavailable", "nobody to invite is online and free", "invite")
        call.invite_counter += 1
        inv = Invite(call.invite_counter, terminal, set(targets))
        call.invites[inv.number] = inv
        out: list[Action] = [Send(t, self._incoming(call, invited_by=terminal)) for t in targets]
        out.append(StartTimer(("invite", f"{call.id}/{inv.number}"), self.config.invite_timeout))
        out.append(
            LogEvent("call_invite", {"call": call.id, "by": terminal, "targets": ",".join(sorted(targets))})
        )
        return out

    def _on_leave(self, terminal: str, msg: msgs.Leave, now: float) -> list[Action]:
        self._member_call(terminal, msg, "leave")
        return self._remove_member(terminal, "leave", now)

    def _on_hangup(self, terminal: str, msg: msgs.Hangup, now: float) -> list[Action]:
        call = self._member_call(terminal, msg, "hangup")
        if call.state is CallState.RINGING:
            return self._end(call, "cancelled", now, by=terminal)
        return self._end(call, "hangup", now, by=terminal)

    def _on_signal(self, terminal: str, msg: msgs.SendSignal, now: float) -> list[Action]:
        call = self._member_call(terminal, msg, "signal")
        to = msg["to"]
        if to in call.pending:
            raise ProtocolError("member_offline", f"'{to}' is not back in call {call.id} yet", "signal")
        if to == terminal or to not in call.members:
            raise ProtocolError("not_member", f"'{to}' is not another member of call {call.id}", "signal")
        if to in self.offline_members or to not in self.online:
            raise ProtocolError(
                "member_offline", f"'{to}' is reconnecting; try again when it is back", "signal"
            )
        return [Send(to, {"type": "signal", "call": call.id, "from": terminal, "data": msg["data"]})]

    def _on_media_path(self, terminal: str, msg: msgs.MediaPath, now: float) -> list[Action]:
        """A member says which path carries its media to another member (for the log; nothing is sent)."""
        call = self._member_call(terminal, msg, "media_path")
        path = msg["path"][:200]
        call.paths[f"{terminal}>{msg['to']}"] = path
        return [
            LogEvent("media_path", {"call": call.id, "terminal": terminal, "to": msg["to"], "path": path})
        ]

    # -- helpers -------------------------------------------------------------------------------------------
    def _call(self, msg: Mapping[str, Any], ref: str) -> Call:
        call = self.calls.get(msg["call"])
        if call is None:
            raise ProtocolError("unknown_call", f"no call '{msg['call']}' (it may have ended)", ref)
        return call

    def _member_call(self, terminal: str, msg: Mapping[str, Any], ref: str) -> Call:
        call = self._call(msg, ref)
        if terminal not in call.members:
            raise ProtocolError("not_member", f"this terminal is not in call {call.id}", ref)
        return call

    def _add_member(self, call: Call, terminal: str) -> None:
        call.members.append(terminal)
        self.call_of[terminal] = call.id
        self._reindex(terminal)
        call.max_members = max(call.max_members, len(call.members))

    def _remove_member(self, terminal: str, reason: str, now: float) -> list[Action]:
        cid = self.call_of.get(terminal)
        if cid is None:
            return []
        call = self.calls[cid]
        if terminal == call.counter or len(call.staff) <= 1 and call.state is CallState.ACTIVE:
            end_reason = "disconnected" if reason == "disconnected" else "hangup"
            return self._end(call, end_reason, now, by=terminal)
        call.members.remove(terminal)
        del self.call_of[terminal]
        self._reindex(terminal)
        self.offline_members.pop(terminal, None)
        out: list[Action] = [
            Send(m, {"type": "left", "call": call.id, "terminal": terminal, "reason": reason})
            for m in call.members
        ]
        if reason == "disconnected":
            self.missed_end[terminal] = {"type": "ended", "call": call.id, "reason": "disconnected"}
        else:
            out.insert(
                0, Send(terminal, {"type": "ended", "call": call.id, "reason": "leave", "by": terminal})
            )
        out.append(LogEvent("call_left", {"call": call.id, "terminal": terminal, "reason": reason}))
        return out + self._presence_updates(now)

    def _end(self, call: Call, reason: str, now: float, by: str | None = None) -> list[Action]:
        call.move(CallState.ENDED)
        del self.calls[call.id]
        ended: dict[str, Any] = {"type": "ended", "call": call.id, "reason": reason}
        if by is not None:
            ended["by"] = by
        self._remember_end(call, ended)
        out: list[Action] = [CancelTimer(("ring", call.id))]
        told = set()
        for t in (
            call.members + sorted(call.rung) + sorted({x for i in call.invites.values() for x in i.targets})
        ):
            if t not in told and (t in self.online):
                told.add(t)
                out.append(Send(t, ended))
        # Lamps watching the department must turn off even if they were never rung (answered calls).
        for lamp in self.lamps_for(call.department):
            if lamp not in told:
                out.append(Send(lamp, ended))
        for inv in call.invites.values():
            out.append(CancelTimer(("invite", f"{call.id}/{inv.number}")))
        for m in call.members:
            self.call_of.pop(m, None)
            self._reindex(m)
            if m in self.offline_members:
                del self.offline_members[m]
                self.missed_end[m] = ended
                out.append(CancelTimer(("grace", m)))
        if call.answered_at is not None:
            outcome = "answered"
        else:
            outcome = {"cancelled": "cancelled", "unanswered": "unanswered"}.get(reason, "abandoned")
        out.append(
            CallRecord(
                call.id,
                call.department,
                call.counter,
                call.created_at,
                now,
                outcome,
                reason,
                call.answered_at,
                call.answered_by,
                call.max_members,
                call.resumed_at,
            )
        )
        out.append(
            LogEvent(
                "call_ended",
                {
                    "call": call.id,
                    "department": call.department,
                    "reason": reason,
                    "outcome": outcome,
                    "by": by,
                    "duration_s": round(now - (call.answered_at or now), 3),
                    **(
                        {"paths": "; ".join(f"{k}: {v}" for k, v in call.paths.items())} if call.paths else {}
                    ),
                },
            )
        )
        return out + self._presence_updates(now)

    def _remember_end(self, call: Call, ended: dict[str, Any]) -> None:
        self.ended_calls[call.id] = (ended, frozenset(call.members) | frozenset(call.pending))
        while len(self.ended_calls) > ENDED_REMEMBERED:
            del self.ended_calls[next(iter(self.ended_calls))]

    def _incoming(self, call: Call, invited_by: str | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "incoming",
            "call": call.id,
            "department": call.department,
            "from": call.counter,
        }
        name = self.config.terminals[call.counter].name
        if name:
            msg["from_name"] = name  # where the counter stands, for the station's list
        if invited_by is not None:
            msg["invited_by"] = invited_by
            msg["members"] = list(call.members)
        return msg

    def _call_state(self, call: Call) -> dict[str, Any]:
        members = self._listed_members(call)
        return {
            "type": "call_state",
            "call": call.id,
            "state": call.state.value,
            "department": call.department,
            "counter": call.counter,
            "members": members,
            "offline": [m for m in members if m in self.offline_members or m in call.pending],
        }

    def _listed_members(self, call: Call) -> list[str]:
        """The members as ``call_state`` lists them: those back and those expected back, in order."""
        if not call.pending:
            return list(call.members)
        listed = [m for m in call.order if m in call.members or m in call.pending]
        return listed + [m for m in call.members if m not in listed]
