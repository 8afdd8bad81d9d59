"""The relay's routing core: terminals, calls and their rules, with no I/O.

:class:`RelayCore` is fed events (a terminal connected, a message arrived, a timer fired, a
terminal dropped) with the current time, and returns a list of actions for the edge to carry out:
messages to send, connections to close, timers to start or cancel, call records to store and
events to log. It never touches a socket, a clock or a database, so every rule of
``docs/protocol.md`` is tested directly without an event loop.

It is built in layers, one module each: :mod:`relay_server.presence` (who is online, the indexes, ``presence`` and
``colleagues``), :mod:`relay_server.calls` (the call messages and their rules), :mod:`relay_server.resume` (calls
re-created after a relay restart); this module adds the terminals' life (connect, disconnect, timers, shutdown),
the one dispatch table and the messages that are not about a call. :mod:`relay_server.actions` holds the outputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from common import messages as msgs
from common.messages import ClientMessage
from common.protocol import CLIENT_ROLES, LAMP_TEST_SECONDS, ProtocolError
from relay_server.actions import (
    Action,
    CallRecord,
    CancelTimer,
    Close,
    HealthReport,
    Key,
    LogEvent,
    MessageHandler,
    Send,
    StartTimer,
)
from relay_server.calls import _TRANSITIONS, ENDED_REMEMBERED, Call, CallState, Invite
from relay_server.config import RelayConfig
from relay_server.presence import Online
from relay_server.resume import CallResumption, ResumeClaim

# What the rest of the relay and the tests import from here (the layers' names included).
__all__ = [
    "ENDED_REMEMBERED",
    "_TRANSITIONS",
    "Action",
    "Call",
    "CallRecord",
    "CallState",
    "CancelTimer",
    "Close",
    "HealthReport",
    "Invite",
    "Key",
    "LogEvent",
    "MessageHandler",
    "Online",
    "RelayCore",
    "ResumeClaim",
    "Send",
    "StartTimer",
    "turn_credentials",
]


def turn_credentials(secret: str, terminal: str, now: float, ttl: int) -> tuple[str, str]:
    """coturn REST-API credentials: ``username = "<expiry>:<terminal>"``, HMAC-SHA1 of it in base64."""
    username = f"{int(now) + ttl}:{terminal}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class RelayCore(CallResumption):
    """All relay rules, as a pure state machine.

    Args:
        config: the validated relay config (departments, terminals, timeouts).
        new_call_id: factory for call ids (injected so tests are deterministic).
    """

    def __init__(self, config: RelayConfig, new_call_id: Callable[[], str]) -> None:
        super().__init__(config, new_call_id)
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

    # -- authentication ------------------------------------------------------------------------------------
    def authenticate(self, token: str) -> str | None:
        """The terminal id a token belongs to, or None."""
        # A dict look-up of the digest is safe: tokens are long random strings, so timing reveals nothing useful.
        return self._by_hash.get("sha256:" + hashlib.sha256(token.encode()).hexdigest())

    # -- queries -------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        roles: dict[str, int] = {"counter": 0, "office": 0, "lamp": 0}
        for o in self.online.values():
            roles[o.role] += 1
        ringing = sum(1 for c in self.calls.values() if c.state is CallState.RINGING)
        return {"terminals": roles, "calls_ringing": ringing, "calls_active": len(self.calls) - ringing}

    # -- events from the edge ------------------------------------------------------------------------------
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

    # -- messages that are not about a call ---------------------------------------------------------------
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
