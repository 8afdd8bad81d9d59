"""What the staff station's state machine (:mod:`kiosk.office_state`) speaks: its states, the data it keeps (ringing
calls, missed calls, the call with its invitations, notices), the events it takes and the commands it returns (pure:
no Kivy, no I/O).

The machine re-exports every name here, so ``from kiosk.office_state import InvitePressed`` keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from kiosk.machine import (
    Command,
    Event,
)


class State(Enum):
    """What the station is doing; the screens follow it."""

    CONNECTING = "connecting"  # no relay link (at start or after losing it outside a call)
    WAITING = "waiting"  # idle: ringing calls are listed and ring
    ANSWERING = "answering"  # 'answer' sent, waiting for the relay's call_state
    IN_CALL = "in_call"


class InviteStatus(Enum):
    PENDING = "pending"
    JOINED = "joined"
    DECLINED = "declined"
    EXPIRED = "expired"
    FAILED = "failed"


# -- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DepartmentInfo:
    id: str
    name_ja: str
    name_en: str
    phone: str = ""

    def name(self, lang: str) -> str:
        return self.name_ja if lang == "ja" else self.name_en


@dataclass(frozen=True)
class StationInfo:
    """Another staff station (from ``welcome.stations``; its status follows ``colleagues``)."""

    id: str
    name: str
    departments: tuple[str, ...] = ()
    status: str = "available"  # available, away, offline

    @property
    def can_be_invited(self) -> bool:
        """Away and offline stations are not rung (the relay would refuse)."""
        return self.status == "available"


@dataclass
class Ringing:
    """A call ringing at this station: a resident's call, or an invitation into a colleague's call."""

    call: str
    department: str
    counter: str
    since: float  # machine clock when it first rang here
    counter_name: str = ""
    invited_by: str | None = None
    members: tuple[str, ...] = ()
    taken_by: str | None = None  # a colleague answered it (shown for a few seconds)

    @property
    def is_invite(self) -> bool:
        return self.invited_by is not None


@dataclass(frozen=True)
class Missed:
    """A call that rang here and was never answered (today's list)."""

    call: str
    department: str
    counter: str
    at: float  # wall-clock time (Unix seconds) when it rang
    waited: float  # seconds it rang
    reason: str  # 'unanswered' (ring timeout) or 'cancelled' (the resident gave up)
    counter_name: str = ""


@dataclass
class Invite:
    """An invitation this station sent during the current call."""

    kind: str  # 'department' or 'terminal'
    target: str
    status: InviteStatus = InviteStatus.PENDING
    by: str = ""  # who joined or declined
    detail: str = ""  # error code when FAILED


@dataclass
class StationCall:
    """The call this station is in: counter, members, invitations (dropped as a whole when it ends). The
    counter's side of a call is :class:`kiosk.counter_state.CounterCall`."""

    id: str
    department: str
    counter: str
    members: list[str] = field(default_factory=list)  # join order, counter first, this station included
    answered_at: float = 0.0
    invites: list[Invite] = field(default_factory=list)
    counter_name: str = ""


@dataclass(frozen=True)
class Notice:
    """A one-line message for the staff member: ``kind`` is a string key suffix, ``fields`` fill it."""

    kind: str  # taken, ended, ended_by_you, left, failed, answer_failed, media_failed, invite_failed
    fields: Mapping[str, str] = field(default_factory=dict)
    at: float = 0.0


# -- events --------------------------------------------------------------------------------------
# LinkChanged, RelayMessage and TimerFired come from kiosk.machine.
@dataclass(frozen=True)
class AnswerPressed(Event):
    call: str


@dataclass(frozen=True)
class DeclinePressed(Event):
    call: str


@dataclass(frozen=True)
class AwayToggled(Event):
    away: bool


@dataclass(frozen=True)
class InvitePressed(Event):
    department: str | None = None
    terminal: str | None = None


@dataclass(frozen=True)
class LeavePressed(Event):
    pass


@dataclass(frozen=True)
class HangUpPressed(Event):
    pass


@dataclass(frozen=True)
class MediaEnded(Event):
    """The media session of ``call`` ended by itself (peer connection failed, bye from a member)."""

    call: str
    reason: str = ""


# -- commands ------------------------------------------------------------------------------------
# Send, Ring, StartTimer and CancelTimer come from kiosk.machine.
@dataclass(frozen=True)
class StartMedia(Command):
    """Open the media session for ``call`` (before 'answer' goes out, so no offer is missed)."""

    call: str


@dataclass(frozen=True)
class StopMedia(Command):
    """Close the media session: ``how`` is ``hangup`` (end for everyone), ``leave`` or ``close`` (local only)."""

    how: str
