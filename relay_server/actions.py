"""What the relay core returns: the actions the edge (``relay_server/server.py``) carries out.

Messages to send, connections to close, timers to start or cancel, call records to store, events to log and health
reports for the fleet page. Pure data, no I/O: :class:`relay_server.core.RelayCore` returns lists of these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Key = tuple[
    str, str
]  # timer keys: ("ring", call), ("invite", "call/n"), ("grace", terminal), ("resume", call)


# -- actions ---------------------------------------------------------------------------------------------------
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
