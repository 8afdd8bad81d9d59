"""The relay's routing core: terminals, calls and their rules, with no I/O.

:class:`RelayCore` is fed events (a terminal connected, a message arrived, a timer fired, a
terminal dropped) with the current time, and returns a list of actions for the edge to carry out:
messages to send, connections to close, timers to start or cancel, call records to store and
events to log. It never touches a socket, a clock or a database, so every rule of
``docs/protocol.md`` is tested directly without an event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from common import messages as msgs
from common.messages import ClientMessage
from common.protocol import CLIENT_ROLES, LAMP_TEST_SECONDS, ROLES, ProtocolError
from common.transitions import TransitionTable, by_value
from relay_server.config import RelayConfig

log = logging.getLogger(__name__)

Key = tuple[
    str, str
]  # timer keys: ("ring", call), ("invite", "call/n"), ("grace", terminal), ("resume", call)
ENDED_REMEMBERED = 4096  # ended calls this relay remembers, so a late 'resume' of one gets its 'ended'


# -- actions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Send:
    to: str
    msg: dict[str, Any]


@dataclass(frozen=True)
class Close:
    to: str
    code: int
    reason: str


@dataclass(frozen=True)
class StartTimer:
    key: Key
    delay: float


@dataclass(frozen=True)
class CancelTimer:
    key: Key


@dataclass(frozen=True)
class CallRecord:
    """One call (or rejected attempt) for the call log: ids and times only, no personal data.

    A call is recorded when it starts ringing (``outcome="ringing"``, no ``ended_at``), when it is answered
    (``"active"``) and when it ends, so a relay that stops abruptly loses none.
    """

    call: str
    department: str
    counter: str
    created_at: float
    ended_at: float | None
    # ringing | active (in progress) | answered | unanswered | cancelled | abandoned | closed | unavailable
    outcome: str
    end_reason: str
    answered_at: float | None = None
    answered_by: str | None = None
    max_members: int = 1
    # When a restarted relay re-created the call from its members' ``resume`` (None: never): the call log then
    # keeps the row's original start and answer, and reopens a row closed as ``shutdown``/``relay_restart``.
    resumed_at: float | None = None


@dataclass(frozen=True)
class LogEvent:
    """An output of the core: something worth one log line (and a metric). Not an input: those are messages,
    connections and timers fed to :meth:`RelayCore.receive` and friends."""

    name: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class HealthReport:
    """A terminal's ``health`` message, for the fleet page (``relay_server/admin``); routing ignores it."""

    terminal: str
    health: dict[str, Any]


Action = Send | Close | StartTimer | CancelTimer | CallRecord | LogEvent | HealthReport
# (terminal, message, now) → actions. The message is one of common.messages' definitions, validated at the edge
# (common.protocol.parse) against the one its ``type`` names; each handler declares which it takes, so the table's
# value type can only say "a message" (a Callable's argument cannot vary with the key).
MessageHandler = Callable[[str, Any, float], list[Action]]


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


@dataclass
class Online:
    role: str
    away: bool = False


@dataclass(frozen=True)
class ResumeClaim:
    """A ``resume`` from a member that may not re-create the call itself (a station invited from another
    department): it waits, at most ``grace_period``, for the counter or a station of the department."""

    call: str
    department: str
    members: tuple[str, ...]
    at: float


def turn_credentials(secret: str, terminal: str, now: float, ttl: int) -> tuple[str, str]:
    """coturn REST-API credentials: ``username = "<expiry>:<terminal>"``, HMAC-SHA1 of it in base64."""
    username = f"{int(now) + ttl}:{terminal}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class RelayCore:
    """All relay rules, as a pure state machine.

    Args:
        config: the validated relay config (departments, terminals, timeouts).
        new_call_id: factory for call ids (injected so tests are deterministic).
    """

    def __init__(self, config: RelayConfig, new_call_id: Callable[[], str]) -> None:
        self.config = config
        self.new_call_id = new_call_id
        self.online: dict[str, Online] = {}
        self.calls: dict[str, Call] = {}
        self.call_of: dict[str, str] = {}  # member terminal → call id
        self.offline_members: dict[str, float] = {}  # member in grace → dropped at
        self.sent_presence: dict[str, dict[str, str]] = {}
        self.missed_end: dict[str, dict[str, Any]] = {}  # member in grace when its call ended → the 'ended'
        # Calls this relay ended, oldest first (at most ENDED_REMEMBERED): the 'ended' and who was in the call.
        self.ended_calls: dict[str, tuple[dict[str, Any], frozenset[str]]] = {}
        self.resume_claims: dict[str, ResumeClaim] = {}  # terminal → its waiting 'resume'
        # Every client message type (common.protocol.CLIENT_MESSAGES) → its handler: the one dispatch table.
        self.handlers: dict[str, MessageHandler] = {
            "hello": self._on_hello,
            "ping": self._on_ping,
            "health": self._on_health,
            "status": self._on_status,
            "lamp_test": self._on_lamp_test,
            "call": self._on_call,
            "cancel": self._on_cancel,
            "answer": self._on_answer,
            "decline": self._on_decline,
            "invite": self._on_invite,
            "leave": self._on_leave,
            "hangup": self._on_hangup,
            "signal": self._on_signal,
            "media_path": self._on_media_path,
            "resume": self._on_resume,
        }
        self._by_hash = {t.token_hash: t.id for t in config.terminals.values()}
        # Indexes kept up to date by _reindex() on every change, so no event scans every terminal:
        # online terminals by (role, department); available (online, not away) stations by department and how
        # many of them are free (not in a call); each terminal's last contribution; departments to re-evaluate.
        depts = list(config.departments)
        self._online_in: dict[tuple[str, str], set[str]] = {(r, d): set() for r in ROLES for d in depts}
        self._available: dict[str, set[str]] = {d: set() for d in depts}
        self._free: dict[str, int] = dict.fromkeys(depts, 0)
        self._indexed: dict[str, tuple[bool, bool, bool]] = {}
        self._dirty: set[str] = set()
        self._presence: dict[str, str] = {}
        # Static: the staff stations of each office, as listed in an office's welcome.
        self._stations_of_office: dict[str, set[str]] = {o: set() for o in config.offices}
        self._station_cards: dict[str, dict[str, Any]] = {}
        for term in config.terminals.values():
            if term.role == "office":
                self._station_cards[term.id] = {
                    "id": term.id,
                    "name": term.name,
                    "departments": list(term.departments),
                }
                for d in term.departments:
                    self._stations_of_office[config.departments[d].office].add(term.id)
        # Colleagues to invite: the stations of a station's office(s), whatever their department (a question that
        # crosses departments is why one invites), but not every station of a large deployment.
        self._colleagues: dict[str, tuple[str, ...]] = {}
        for sid in self._station_cards:
            offices = {config.departments[d].office for d in config.terminals[sid].departments}
            self._colleagues[sid] = tuple(
                sorted({c for o in offices for c in self._stations_of_office[o]} - {sid})
            )
        self._station_dirty: set[str] = set()  # stations whose status changed since the colleagues were told

    # -- authentication ----------------------------------------------------------------------
    def authenticate(self, token: str) -> str | None:
        """The terminal id a token belongs to, or None."""
        # A dict look-up of the digest is safe: tokens are long random strings, so timing reveals nothing useful.
        return self._by_hash.get("sha256:" + hashlib.sha256(token.encode()).hexdigest())

    # -- queries ---------------------------------------------------------------------------
    def role(self, terminal: str) -> str:
        return self.config.terminals[terminal].role

    def serves(self, terminal: str, department: str) -> bool:
        return department in self.config.terminals[terminal].departments

    def is_open(self, department: str, now: float) -> bool:
        return self.config.departments[department].hours.is_open(datetime.fromtimestamp(now, UTC))

    def stations_for(self, department: str) -> list[str]:
        """Online, not-away stations serving ``department``."""
        return sorted(self._available[department])

    def lamps_for(self, department: str) -> list[str]:
        return sorted(self._online_in["lamp", department])

    def online_in(self, role: str, department: str) -> int:
        """How many terminals of ``role`` for ``department`` are connected (for metrics)."""
        return len(self._online_in[role, department])

    def presence(self, department: str, now: float) -> str:
        if not self.is_open(department, now):
            return "closed"
        if not self._available[department]:
            return "offline"
        if self._free[department] == 0:
            return "busy"
        return "available"

    def presence_map(self, counter: str, now: float) -> dict[str, str]:
        return {d: self.presence(d, now) for d in self.config.terminals[counter].departments}

    def stats(self) -> dict[str, Any]:
        roles: dict[str, int] = {"counter": 0, "office": 0, "lamp": 0}
        for o in self.online.values():
            roles[o.role] += 1
        ringing = sum(1 for c in self.calls.values() if c.state is CallState.RINGING)
        return {"terminals": roles, "calls_ringing": ringing, "calls_active": len(self.calls) - ringing}

    # -- events from the edge ----------------------------------------------------------------
    def connect(self, terminal: str, now: float) -> list[Action]:
        """An authenticated terminal is (again) online: welcome it and bring it up to date."""
        out: list[Action] = []
        t = self.config.terminals[terminal]
        resumed = terminal in self.offline_members
        if resumed:
            del self.offline_members[terminal]
            out.append(CancelTimer(("grace", terminal)))
        previous = self.online.get(terminal)
        self.online[terminal] = Online(t.role, away=previous.away if previous else False)
        self._reindex(terminal)
        out.append(LogEvent("terminal_connected", {"terminal": terminal, "role": t.role, "resumed": resumed}))
        out.append(Send(terminal, self._welcome(terminal, now)))
        cid = self.call_of.get(terminal)
        if cid is not None:
            out.append(Send(terminal, self._call_state(self.calls[cid])))
        missed = self.missed_end.pop(terminal, None)
        if missed is not None:
            out.append(Send(terminal, missed))
        # Ringing calls (and for lamps, calls in progress) this terminal should know about.
        for call in self.calls.values():
            if call.id == cid:
                continue
            if (
                t.role in ("office", "lamp")
                and call.state is CallState.RINGING
                and self.serves(terminal, call.department)
            ):
                if t.role == "lamp" or not self.online[terminal].away:
                    call.rung.add(terminal)
                    out.append(Send(terminal, self._incoming(call)))
            elif (
                t.role == "lamp" and call.state is CallState.ACTIVE and self.serves(terminal, call.department)
            ):
                out.append(Send(terminal, {"type": "taken", "call": call.id, "by": call.answered_by}))
            inv = call.invited(terminal)
            if inv is not None and t.role == "office":
                out.append(Send(terminal, self._incoming(call, invited_by=inv.by)))
        out += self._presence_updates(now)
        if t.role == "counter":
            self.sent_presence.pop(terminal, None)
            out += self._send_presence(terminal, now)
        return out

    def disconnect(self, terminal: str, now: float) -> list[Action]:
        """A terminal's connection is gone (not replaced). Members get a grace period."""
        if terminal not in self.online:
            return []
        del self.online[terminal]
        self._reindex(terminal)
        self.sent_presence.pop(terminal, None)
        self.resume_claims.pop(terminal, None)
        out: list[Action] = [LogEvent("terminal_disconnected", {"terminal": terminal})]
        cid = self.call_of.get(terminal)
        if cid is not None:
            self.offline_members[terminal] = now
            out.append(StartTimer(("grace", terminal), self.config.grace_period))
        # A station that drops simply stops being rung; it is rung again if it comes back in time.
        for call in self.calls.values():
            call.rung.discard(terminal)
        out += self._presence_updates(now)
        return out

    def timer(self, key: Key, now: float) -> list[Action]:
        kind, ident = key
        if kind == "ring":
            call = self.calls.get(ident)
            if call is not None and call.state is CallState.RINGING:
                return self._end(call, "unanswered", now)
        elif kind == "invite":
            cid, _, n = ident.rpartition("/")
            call = self.calls.get(cid)
            if call is not None and int(n) in call.invites:
                inv = call.invites.pop(int(n))
                out: list[Action] = [
                    Send(t, {"type": "ended", "call": call.id, "reason": "unanswered"}) for t in inv.targets
                ]
                out += [Send(m, {"type": "invite_expired", "call": call.id}) for m in call.members]
                return out
        elif kind == "grace":
            if ident in self.offline_members:
                return self._remove_member(ident, "disconnected", now)
        elif kind == "resume":
            return self._resume_expired(ident, now)
        return []

    def tick(self, now: float) -> list[Action]:
        """Periodic: office hours open and close with the clock, so presence can change on its own."""
        return self._presence_updates(now, everything=True)

    def shutdown(self, now: float) -> list[Action]:
        out: list[Action] = []
        for call in list(self.calls.values()):
            out += self._end(call, "shutdown", now)
        return out

    def receive(self, terminal: str, msg: ClientMessage, now: float) -> list[Action]:
        """A message from an authenticated terminal, validated by :func:`common.protocol.parse` at the edge.

        Raises:
            ProtocolError: the message breaks a rule; the edge sends it back as an ``error``.
        """
        kind = msg["type"]
        role = self.role(terminal)
        if role not in CLIENT_ROLES[kind]:
            raise ProtocolError("forbidden", f"a {role} terminal may not send '{kind}'", kind)
        return self.handlers[kind](terminal, msg, now)

    # -- message handlers --------------------------------------------------------------------
    def _on_hello(self, terminal: str, msg: msgs.Hello, now: float) -> list[Action]:
        raise ProtocolError(
            "bad_message", "already authenticated; 'hello' is only the first message", "hello"
        )

    def _on_ping(self, terminal: str, msg: msgs.Ping, now: float) -> list[Action]:
        pong: dict[str, Any] = {"type": "pong", "time": now}
        if "id" in msg:
            pong["id"] = msg["id"]
        return [Send(terminal, pong)]

    def _on_health(self, terminal: str, msg: msgs.Health, now: float) -> list[Action]:
        return [HealthReport(terminal, {k: v for k, v in msg.items() if k != "type"})]

    def _on_status(self, terminal: str, msg: msgs.SetStatus, now: float) -> list[Action]:
        was_away = self.online[terminal].away
        self.online[terminal].away = msg["status"] == "away"
        self._reindex(terminal)
        out: list[Action] = [
            Send(terminal, {"type": "status", "status": msg["status"]}),
            LogEvent("station_status", {"terminal": terminal, "status": msg["status"]}),
        ]
        if was_away and not self.online[terminal].away:
            # Back at the desk: ring the calls of its departments that are ringing now, as at a (re)connect.
            for call in self.calls.values():
                if (
                    call.state is CallState.RINGING
                    and terminal not in call.rung
                    and self.serves(terminal, call.department)
                ):
                    call.rung.add(terminal)
                    out.append(Send(terminal, self._incoming(call)))
        return out + self._presence_updates(now)

    def _on_lamp_test(self, terminal: str, msg: msgs.AskLampTest, now: float) -> list[Action]:
        """A technician at a counter tests the office lamps: every online lamp agent and station of its departments
        lights those departments' channels for a moment; the counter is told who was asked."""
        offered = self.config.terminals[terminal].departments
        told: dict[str, list[str]] = {}
        for dept in offered:
            for t in self._online_in["lamp", dept] | self._online_in["office", dept]:
                told.setdefault(t, []).append(dept)
        out: list[Action] = [
            Send(t, {"type": "lamp_test", "by": terminal, "departments": depts, "seconds": LAMP_TEST_SECONDS})
            for t, depts in sorted(told.items())
        ]
        lamps = [t for t in sorted(told) if self.role(t) == "lamp"]
        stations = [t for t in sorted(told) if self.role(t) == "office"]
        out.append(
            Send(
                terminal,
                {
                    "type": "lamp_test_sent",
                    "departments": list(offered),
                    "lamps": lamps,
                    "stations": stations,
                },
            )
        )
        out.append(
            LogEvent("lamp_test", {"by": terminal, "lamps": ",".join(lamps), "stations": ",".join(stations)})
        )
        return out

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

    # -- call re-creation after a relay restart ('resume') -----------------------------------------
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

    def _listed_members(self, call: Call) -> list[str]:
        """The members as ``call_state`` lists them: those back and those expected back, in order."""
        if not call.pending:
            return list(call.members)
        listed = [m for m in call.order if m in call.members or m in call.pending]
        return listed + [m for m in call.members if m not in listed]

    def _remember_end(self, call: Call, ended: dict[str, Any]) -> None:
        self.ended_calls[call.id] = (ended, frozenset(call.members) | frozenset(call.pending))
        while len(self.ended_calls) > ENDED_REMEMBERED:
            del self.ended_calls[next(iter(self.ended_calls))]

    # -- helpers -----------------------------------------------------------------------------
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

    def _welcome(self, terminal: str, now: float) -> dict[str, Any]:
        t = self.config.terminals[terminal]
        ice: list[dict[str, Any]] = [dict(s) for s in self.config.ice_servers]
        if self.config.turn_secret:
            user, cred = turn_credentials(self.config.turn_secret, terminal, now, self.config.turn_ttl)
            ice.append({"urls": list(self.config.turn_urls), "username": user, "credential": cred})
        msg: dict[str, Any] = {
            "type": "welcome",
            "terminal": terminal,
            "role": t.role,
            "name": t.name,
            "protocol": 1,
            "departments": [self.config.departments[d].public() for d in t.departments],
            "ice_servers": ice,
            "time": now,
        }
        if t.role == "office":
            msg["stations"] = [
                {**self._station_cards[s], "status": self.station_status(s)}
                for s in self._colleagues[terminal]
            ]
            msg["status"] = "away" if self.online[terminal].away else "available"
        return msg

    def _reindex(self, terminal: str) -> None:
        """Bring the indexes in line with ``terminal``'s state (online, away, in a call); O(its departments)."""
        t = self.config.terminals[terminal]
        o = self.online.get(terminal)
        online = o is not None
        available = online and t.role == "office" and not (o.away if o else False)
        free = available and terminal not in self.call_of
        old = self._indexed.get(terminal, (False, False, False))
        if old == (online, available, free):
            return
        self._indexed[terminal] = (online, available, free)
        for d in t.departments:
            if online != old[0]:
                group = self._online_in[t.role, d]
                group.add(terminal) if online else group.discard(terminal)
            if available != old[1]:
                self._available[d].add(terminal) if available else self._available[d].discard(terminal)
            if free != old[2]:
                self._free[d] += 1 if free else -1
        if t.role == "office":
            self._dirty.update(t.departments)
            if (online, available) != old[:2]:  # not on every call: busy stations can be invited all the same
                self._station_dirty.add(terminal)

    def station_status(self, station: str) -> str:
        """``available``, ``away`` or ``offline``: what a colleague's invite list shows (a station in a call is
        ``available``: an invitation rings it all the same)."""
        online, available, _free = self._indexed.get(station, (False, False, False))
        return "available" if available else "away" if online else "offline"

    def _colleague_updates(self) -> list[Action]:
        """Tell the online colleagues of every station whose status changed (``colleagues`` message)."""
        if not self._station_dirty:
            return []
        changed = sorted(self._station_dirty)
        self._station_dirty.clear()
        told: dict[str, dict[str, str]] = {}
        for station in changed:
            status = self.station_status(station)
            for colleague in self._colleagues.get(station, ()):
                if colleague in self.online:
                    told.setdefault(colleague, {})[station] = status
        return [Send(c, {"type": "colleagues", "stations": stations}) for c, stations in sorted(told.items())]

    def _presence_updates(self, now: float, everything: bool = False) -> list[Action]:
        """Re-evaluate presence of the departments touched since last time; tell the counters that offer them."""
        depts = list(self.config.departments) if everything else sorted(self._dirty)
        self._dirty.clear()
        changed = []
        for d in depts:
            p = self.presence(d, now)
            if self._presence.get(d) != p:
                self._presence[d] = p
                changed.append(d)
        counters = sorted({c for d in changed for c in self._online_in["counter", d]})
        return [a for c in counters for a in self._send_presence(c, now)] + self._colleague_updates()

    def _send_presence(self, counter: str, now: float) -> list[Action]:
        current = self.presence_map(counter, now)
        if self.sent_presence.get(counter) == current:
            return []
        self.sent_presence[counter] = current
        return [Send(counter, {"type": "presence", "departments": current})]
