"""One type per protocol message: the single definition of every message's fields (pure: no I/O).

Each message type of protocol v1 (``docs/protocol.md``) is a :class:`~typing.TypedDict` here: required fields
as they are, optional ones marked ``NotRequired``. :mod:`common.protocol` derives the field schemas it validates
with (``CLIENT_MESSAGES``, ``SERVER_MESSAGES``) from these, and ``tests/test_protocol_docs.py`` checks
``docs/protocol.md`` against the same schemas, so the code, the validation and the docs cannot drift apart.

At run time a message stays a plain ``dict`` (what JSON gives); the types let a handler say which message it
takes (``def on_ringing(msg: Ringing)``) and let the type checker catch a misspelt field. The functional
``TypedDict`` form is used throughout because a field is called ``from`` (and so that ``NotRequired`` is seen
under ``from __future__ import annotations`` on Python 3.11, where the class form would read it as a string).
"""
# ruff: noqa: UP013

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = ["CLIENT_TYPES", "SERVER_TYPES", "ClientMessage", "ServerMessage"]

JsonObject = dict[str, Any]
JsonArray = list[Any]

# -- what a terminal sends -------------------------------------------------------------------------------------
Hello = TypedDict(
    "Hello", {"type": Literal["hello"], "token": str, "protocol": int, "client": NotRequired[str]}
)
PlaceCall = TypedDict("PlaceCall", {"type": Literal["call"], "department": str})
Cancel = TypedDict("Cancel", {"type": Literal["cancel"], "call": str})
Answer = TypedDict("Answer", {"type": Literal["answer"], "call": str})
Decline = TypedDict("Decline", {"type": Literal["decline"], "call": str})
Invite = TypedDict(
    "Invite",
    {"type": Literal["invite"], "call": str, "department": NotRequired[str], "terminal": NotRequired[str]},
)
Leave = TypedDict("Leave", {"type": Literal["leave"], "call": str})
Hangup = TypedDict("Hangup", {"type": Literal["hangup"], "call": str})
SendSignal = TypedDict("SendSignal", {"type": Literal["signal"], "call": str, "to": str, "data": JsonObject})
MediaPath = TypedDict("MediaPath", {"type": Literal["media_path"], "call": str, "to": str, "path": str})
Resume = TypedDict(
    "Resume", {"type": Literal["resume"], "call": str, "department": str, "members": list[str]}
)
SetStatus = TypedDict("SetStatus", {"type": Literal["status"], "status": str})
Ping = TypedDict("Ping", {"type": Literal["ping"], "id": NotRequired[str | int]})
AskLampTest = TypedDict("AskLampTest", {"type": Literal["lamp_test"]})
Health = TypedDict(
    "Health",
    {"type": Literal["health"], "version": str, "devices": JsonObject, "last_call": NotRequired[JsonObject]},
)

# -- what the relay sends ----------------------------------------------------------------------------------------
# Parts of messages (objects inside them; fields they do not list are accepted, for a newer relay).
Names = dict[str, str]  # {"ja": …, "en": …}
DepartmentInfo = TypedDict(
    "DepartmentInfo",
    {
        "id": str,
        "office": NotRequired[str],
        "name": NotRequired[Names],
        "office_name": NotRequired[Names],
        "fallback": NotRequired[dict[str, str]],  # phone, hours_ja, hours_en
    },
)
StationCard = TypedDict(
    "StationCard",
    {"id": str, "name": NotRequired[str], "departments": NotRequired[list[str]], "status": NotRequired[str]},
)

Welcome = TypedDict(
    "Welcome",
    {
        "type": Literal["welcome"],
        "terminal": str,
        "role": str,
        "departments": list[DepartmentInfo],
        "ice_servers": JsonArray,
        "name": NotRequired[str],  # where the terminal stands ([[terminal]] name)
        "protocol": NotRequired[int],
        "time": NotRequired[int | float],  # the relay's clock
        "stations": NotRequired[list[StationCard]],  # office: the colleagues of its office(s)
        "status": NotRequired[str],  # office: its own, available or away
    },
)
Error = TypedDict(
    "Error",
    {
        "type": Literal["error"],
        "code": str,
        "message": str,
        "ref": NotRequired[str | None],  # the type of the offending message (null when it had none)
        "call": NotRequired[str],  # already_answered, already_in_call
        "by": NotRequired[str | None],  # already_answered: who answered
        "department": NotRequired[str],  # closed, unavailable
        "fallback": NotRequired[dict[str, str]],  # closed, unavailable: phone and hours to show instead
    },
)
Presence = TypedDict("Presence", {"type": Literal["presence"], "departments": dict[str, str]})
Ringing = TypedDict("Ringing", {"type": Literal["ringing"], "call": str, "department": str})
Incoming = TypedDict(
    "Incoming",
    {
        "type": Literal["incoming"],
        "call": str,
        "department": str,
        "from": str,
        "from_name": NotRequired[str],  # the counter's name, when the relay config sets one
        "invited_by": NotRequired[str],  # an invitation: the station that invites
        "members": NotRequired[list[str]],  # an invitation: who is in the call
    },
)
Answered = TypedDict("Answered", {"type": Literal["answered"], "call": str, "by": str})
Taken = TypedDict("Taken", {"type": Literal["taken"], "call": str, "by": str})
Joined = TypedDict("Joined", {"type": Literal["joined"], "call": str, "terminal": str})
Left = TypedDict("Left", {"type": Literal["left"], "call": str, "terminal": str, "reason": str})
Declined = TypedDict("Declined", {"type": Literal["declined"], "call": str, "terminal": str})
InviteExpired = TypedDict("InviteExpired", {"type": Literal["invite_expired"], "call": str})
Ended = TypedDict("Ended", {"type": Literal["ended"], "call": str, "reason": str, "by": NotRequired[str]})
RelayedSignal = TypedDict(
    "RelayedSignal", {"type": Literal["signal"], "call": str, "from": str, "data": JsonObject}
)
CallState = TypedDict(
    "CallState",
    {
        "type": Literal["call_state"],
        "call": str,
        "state": str,
        "department": str,
        "counter": str,
        "members": list[str],
        "offline": NotRequired[list[str]],  # members in their grace period
    },
)
StatusSet = TypedDict("StatusSet", {"type": Literal["status"], "status": str})
Pong = TypedDict(
    "Pong", {"type": Literal["pong"], "id": NotRequired[str | int], "time": NotRequired[int | float]}
)
LampTest = TypedDict(
    "LampTest",
    {"type": Literal["lamp_test"], "by": str, "departments": list[str], "seconds": int | float},
)
LampTestSent = TypedDict(
    "LampTestSent",
    {
        "type": Literal["lamp_test_sent"],
        "departments": list[str],
        "lamps": list[str],
        "stations": list[str],
    },
)
Colleagues = TypedDict("Colleagues", {"type": Literal["colleagues"], "stations": dict[str, str]})
RingTest = TypedDict("RingTest", {"type": Literal["ring_test"], "by": str, "seconds": int | float})

# Message type (the ``type`` field) → its definition. Order is the order of docs/protocol.md's tables.
CLIENT_TYPES: dict[str, type] = {
    "hello": Hello,
    "call": PlaceCall,
    "cancel": Cancel,
    "answer": Answer,
    "decline": Decline,
    "invite": Invite,
    "leave": Leave,
    "hangup": Hangup,
    "signal": SendSignal,
    "media_path": MediaPath,
    "resume": Resume,
    "status": SetStatus,
    "ping": Ping,
    "lamp_test": AskLampTest,
    "health": Health,
}
SERVER_TYPES: dict[str, type] = {
    "welcome": Welcome,
    "error": Error,
    "presence": Presence,
    "ringing": Ringing,
    "incoming": Incoming,
    "answered": Answered,
    "taken": Taken,
    "joined": Joined,
    "left": Left,
    "declined": Declined,
    "invite_expired": InviteExpired,
    "ended": Ended,
    "signal": RelayedSignal,
    "call_state": CallState,
    "status": StatusSet,
    "pong": Pong,
    "lamp_test": LampTest,
    "lamp_test_sent": LampTestSent,
    "colleagues": Colleagues,
    "ring_test": RingTest,
}

# What :func:`common.protocol.parse` (relay side) and :func:`common.protocol.parse_server` (terminal side) return:
# one of the definitions above, told apart by ``type`` (the type checker narrows on ``msg["type"] == "…"``).
ClientMessage = (
    Hello
    | PlaceCall
    | Cancel
    | Answer
    | Decline
    | Invite
    | Leave
    | Hangup
    | SendSignal
    | MediaPath
    | SetStatus
    | Ping
    | AskLampTest
    | Health
)
ServerMessage = (
    Welcome
    | Error
    | Presence
    | Ringing
    | Incoming
    | Answered
    | Taken
    | Joined
    | Left
    | Declined
    | InviteExpired
    | Ended
    | RelayedSignal
    | CallState
    | StatusSet
    | Pong
    | LampTest
    | LampTestSent
    | Colleagues
    | RingTest
)
