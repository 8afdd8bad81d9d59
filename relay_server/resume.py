"""Calls re-created after a relay restart: the ``resume`` message and its rules (pure).

:class:`CallResumption` is the part of :class:`relay_server.core.RelayCore` that lets the members of a call still
running peer to peer vouch for it on a restarted relay (``docs/protocol.md``, "Relay shutdown"): the counter or a
station of the department re-creates it with the same id, the other members come back within ``grace_period``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from common import messages as msgs
from common.protocol import ProtocolError
from relay_server.actions import Action, CallRecord, CancelTimer, LogEvent, Send, StartTimer
from relay_server.calls import Call, CallRules, CallState
from relay_server.config import RelayConfig


@dataclass(frozen=True)
class ResumeClaim:
    """A ``resume`` from a member that may not re-create the call itself (a station invited from another
    department): it waits, at most ``grace_period``, for the counter or a station of the department."""

    call: str
    department: str
    members: tuple[str, ...]
    at: float


class CallResumption(CallRules):
    """Calls re-created from their members' ``resume`` messages, and the claims waiting for one."""

    def __init__(self, config: RelayConfig, new_call_id: Callable[[], str]) -> None:
        super().__init__(config, new_call_id)
        self.resume_claims: dict[str, ResumeClaim] = {}  # terminal → its waiting 'resume'

    def _on_resume(self, terminal: str, msg: msgs.Resume, now: float) -> list[Action]:
        """A member still in a call after its relay link came back vouches for it (``docs/protocol.md``,
        "Relay shutdown"). A call this relay knows: nothing to do for a member, ``ended`` for a call that ended
        here, ``not_member`` for anyone else. A call it does not know (a relay restarted under it) is re-created
        when the counter that placed it or a station serving its department vouches; the other members it lists
        may come back by vouching for themselves, within ``grace_period``."""
        cid, dept = msg["call"], msg["department"]
        members = self._resume_members(terminal, dept, msg["members"])
        call = self.calls.get(cid)
        if call is not None:
            if terminal in call.members:
                return []  # back already (its welcome came with call_state) or a duplicate
            if terminal in call.pending:
                return self._resume_join(call, terminal, dept, members, now)
            raise ProtocolError("not_member", f"this terminal is not in call {cid}", "resume")
        ended = self.ended_calls.get(cid)
        if ended is not None:
            if terminal not in ended[1]:
                raise ProtocolError("unknown_call", f"no call '{cid}' (it may have ended)", "resume")
            return [Send(terminal, ended[0])]
        if terminal in self.call_of:
            raise ProtocolError(
                "already_in_call", f"this terminal is in call {self.call_of[terminal]}", "resume"
            )
        if terminal != members[0] and not self.serves(terminal, dept):
            # An invited colleague from another department: it may come back, not re-create the call.
            self.resume_claims[terminal] = ResumeClaim(cid, dept, members, now)
            return [LogEvent("call_resume_waiting", {"call": cid, "terminal": terminal})]
        return self._recreate(terminal, cid, dept, members, now)

    def _resume_members(self, terminal: str, dept: str, listed: list[str]) -> tuple[str, ...]:
        """The members a ``resume`` lists (strings: checked at the edge), checked against the config: the counter
        first (offering ``dept``), then staff stations, the sender among them, no one twice, at most
        ``max_members``."""
        members = tuple(listed)
        if dept not in self.config.departments:
            raise ProtocolError("unknown_department", f"no department '{dept}'", "resume")
        if not 2 <= len(members) <= self.config.max_members or len(set(members)) != len(members):
            raise ProtocolError(
                "bad_message",
                f"'members' of 'resume' must list 2 to {self.config.max_members} different terminals",
                "resume",
            )
        if terminal not in members:
            raise ProtocolError("not_member", "'members' of 'resume' must include the sender", "resume")
        roles = [t.role if (t := self.config.terminals.get(m)) else "" for m in members]
        if roles[0] != "counter" or not self.serves(members[0], dept) or set(roles[1:]) != {"office"}:
            raise ProtocolError(
                "forbidden",
                f"a call of '{dept}' is a counter offering it and staff stations; 'members' lists {members}",
                "resume",
            )
        return members

    def _recreate(
        self, terminal: str, cid: str, dept: str, members: tuple[str, ...], now: float
    ) -> list[Action]:
        call = Call(cid, dept, members[0], now)
        call.move(CallState.ACTIVE)
        call.answered_at, call.answered_by = now, members[1]
        call.resumed_at, call.order = now, list(members)
        call.pending = {m: now for m in members}
        self.calls[cid] = call
        out: list[Action] = [StartTimer(("resume", cid), self.config.grace_period)]
        self._vouched(call, terminal)
        # Colleagues whose own 'resume' was waiting for the call to be re-created come back with it.
        for m in list(call.pending):
            claim = self.resume_claims.get(m)
            if (
                claim is not None
                and claim.call == cid
                and (claim.department, claim.members[0]) == (dept, members[0])
                and now - claim.at <= self.config.grace_period
                and m not in self.call_of
            ):
                del self.resume_claims[m]
                self._vouched(call, m)
        call.max_members = len(members)
        out += [Send(m, self._call_state(call)) for m in call.members]
        # Lamps were turned off by the old relay's 'ended': the department is in a call again.
        out += [
            Send(lamp, {"type": "taken", "call": cid, "by": call.answered_by})
            for lamp in self.lamps_for(dept)
        ]
        out.append(self._resume_record(call))
        out.append(
            LogEvent(
                "call_resumed",
                {
                    "call": cid,
                    "department": dept,
                    "counter": call.counter,
                    "by": terminal,
                    "members": ",".join(members),
                    "back": ",".join(call.members),
                },
            )
        )
        return out + self._presence_updates(now)

    def _resume_join(
        self, call: Call, terminal: str, dept: str, members: tuple[str, ...], now: float
    ) -> list[Action]:
        """A member the re-created call expects vouches for itself; everyone present gets the new call_state
        (so the members re-signal the media to it)."""
        if (dept, members[0]) != (call.department, call.counter):
            raise ProtocolError(
                "forbidden",
                f"call {call.id} was resumed as {call.department} from {call.counter}, not {dept} from {members[0]}",
                "resume",
            )
        if terminal in self.call_of:
            raise ProtocolError(
                "already_in_call", f"this terminal is in call {self.call_of[terminal]}", "resume"
            )
        self._vouched(call, terminal)
        out: list[Action] = [Send(m, self._call_state(call)) for m in call.members]
        if not call.pending:
            out.append(CancelTimer(("resume", call.id)))
        out.append(LogEvent("call_resume_joined", {"call": call.id, "terminal": terminal}))
        return out + self._presence_updates(now)

    def _vouched(self, call: Call, terminal: str) -> None:
        del call.pending[terminal]
        call.members = [m for m in call.order if m in call.members or m == terminal] + [
            m for m in call.members if m not in call.order
        ]
        self.call_of[terminal] = call.id
        self._reindex(terminal)

    def _resume_expired(self, cid: str, now: float) -> list[Action]:
        """``grace_period`` after a call was re-created: the members that did not come back are gone."""
        call = self.calls.get(cid)
        if call is None or not call.pending:
            return []
        missing = sorted(call.pending)
        if call.counter in missing or not call.staff:
            return self._end(
                call, "disconnected", now, by=call.counter if call.counter in missing else missing[0]
            )
        call.pending.clear()
        out: list[Action] = []
        for m in missing:
            out += [
                Send(t, {"type": "left", "call": cid, "terminal": m, "reason": "disconnected"})
                for t in call.members
            ]
            out.append(LogEvent("call_left", {"call": cid, "terminal": m, "reason": "disconnected"}))
        return out

    def _resume_record(self, call: Call) -> CallRecord:
        return CallRecord(
            call.id,
            call.department,
            call.counter,
            call.created_at,
            None,
            "active",
            "",
            call.answered_at,
            call.answered_by,
            call.max_members,
            call.resumed_at,
        )
