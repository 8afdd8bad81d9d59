"""What the counter kiosk's state machine (:mod:`kiosk.counter_state`) speaks: its states, the data it keeps, the
events it takes and the commands it returns (pure: no Kivy, no I/O).

The machine re-exports every name here, so ``from kiosk.counter_state import DepartmentChosen`` keeps working; the
screens and the app need only this vocabulary and the machine's public attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from common import messages as msgs
from kiosk.machine import (
    Command,
    Event,
)


class State(Enum):
    """What the kiosk is doing; each state has one screen."""

    STARTING = "starting"  # connecting to the relay and checking cameras
    OUT_OF_SERVICE = "out_of_service"  # relay unreachable or a camera missing; retried by itself
    START = "start"  # choose a department
    CALLING = "calling"  # ringing at the office
    IN_CALL = "in_call"
    RESULT = "result"  # unanswered, closed, unavailable, busy or failed: fallback phone
    THANKS = "thanks"  # after hang-up
    PIN = "pin"  # technician PIN entry
    TECH = "tech"  # technician menu


class Outcome(Enum):
    """Why a call could not take place (shown on the RESULT screen)."""

    UNANSWERED = "unanswered"
    CLOSED = "closed"
    UNAVAILABLE = "unavailable"
    BUSY = "busy"
    FAILED = "failed"


# -- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfferedDepartment:
    """A department offered at this counter, as the counter shows it (from ``welcome``).

    Not the relay's :class:`relay_server.config.Department` (a ``relay.toml`` entry with office hours): this is
    what the relay tells a counter about one, flattened for the screens, with the fallback phone and hours.
    """

    id: str
    name_ja: str
    name_en: str
    phone: str = ""
    hours_ja: str = ""
    hours_en: str = ""
    office: str = (
        ""  # the town ([[office]]) it belongs to: a counter of several towns asks for the town first
    )
    office_name_ja: str = ""
    office_name_en: str = ""

    @classmethod
    def from_message(cls, d: msgs.DepartmentInfo) -> OfferedDepartment:
        """One entry of ``welcome``'s ``departments`` (validated on arrival: the fields present have their types)."""
        name = d.get("name", {})
        fb = d.get("fallback", {})
        office = d.get("office", "")
        office_name = d.get("office_name", {})
        return cls(
            id=d["id"],
            name_ja=name.get("ja", d["id"]),
            name_en=name.get("en", d["id"]),
            phone=fb.get("phone", ""),
            hours_ja=fb.get("hours_ja", ""),
            hours_en=fb.get("hours_en", ""),
            office=office,
            office_name_ja=office_name.get("ja", office),
            office_name_en=office_name.get("en", office),
        )

    def with_fallback(self, fb: Mapping[str, str] | None) -> OfferedDepartment:
        """This department with the fallback phone/hours of an error message, when it carries one."""
        if not fb:
            return self
        return replace(
            self,
            phone=fb.get("phone", self.phone),
            hours_ja=fb.get("hours_ja", self.hours_ja),
            hours_en=fb.get("hours_en", self.hours_en),
        )

    def name(self, lang: str) -> str:
        return self.name_ja if lang == "ja" else self.name_en

    def hours(self, lang: str) -> str:
        return self.hours_ja if lang == "ja" else self.hours_en


@dataclass
class CounterCall:
    """The counter's call in progress (the department chosen, the staff who joined); dropped as a whole when it
    ends. The station's side of a call is :class:`kiosk.office_state.StationCall`."""

    department: OfferedDepartment
    id: str = ""
    started_at: float = 0.0
    answered_at: float = 0.0
    members: list[str] = field(default_factory=list)  # staff members, in join order
    retried: bool = False  # 'call' sent again after crossing the cancel of the previous call


@dataclass(frozen=True)
class Timeouts:
    """Seconds for the machine's timers (from ``[terminal]``)."""

    idle: float = 60.0
    result: float = 20.0
    thanks: float = 8.0
    link_grace: float = 2.0  # a relay blip shorter than this does not show "out of service"
    device_retry: float = 5.0  # re-check missing cameras this often while out of service
    startup: float = 8.0  # give up waiting for the relay at start-up after this
    call_lost: float = 20.0  # ringing with the relay away this long: the call is lost (relay grace period)
    resume: float = 3.0  # after reconnecting while ringing, wait this long for the relay's call_state


# -- events --------------------------------------------------------------------------------------
# LinkChanged, RelayMessage and TimerFired come from kiosk.machine.
@dataclass(frozen=True)
class DevicesChecked(Event):
    problems: tuple[str, ...] = ()  # "camera: /dev/video0 not found", … ; empty = all present


@dataclass(frozen=True)
class Touched(Event):
    """Any touch anywhere: restarts the idle timer."""


@dataclass(frozen=True)
class DepartmentChosen(Event):
    department: str


@dataclass(frozen=True)
class CancelPressed(Event):
    pass


@dataclass(frozen=True)
class HangUpPressed(Event):
    pass


@dataclass(frozen=True)
class BackPressed(Event):
    pass


@dataclass(frozen=True)
class TechGesture(Event):
    pass


@dataclass(frozen=True)
class PinEntered(Event):
    pin: str


@dataclass(frozen=True)
class TechClosed(Event):
    pass


@dataclass(frozen=True)
class SendFailed(Event):
    """A message to the relay could not be sent (link down)."""

    msg_type: str
    detail: str = ""


@dataclass(frozen=True)
class MediaEnded(Event):
    """The media session ended the call by itself (e.g. the peer connection failed)."""

    reason: str = ""


@dataclass(frozen=True)
class MediaReconnecting(Event):
    """The media to the staff stopped and is being rebuilt (``active``), or flows again (not ``active``)."""

    active: bool


# -- commands ------------------------------------------------------------------------------------
# Send, StartTimer, CancelTimer and Ring come from kiosk.machine.
@dataclass(frozen=True)
class StartMedia(Command):
    """Open the media session for ``call`` and make the offer to ``offer_to``."""

    call: str
    offer_to: str


@dataclass(frozen=True)
class StopMedia(Command):
    """Close every peer connection and drop every remote frame."""


@dataclass(frozen=True)
class CheckDevices(Command):
    pass


@dataclass(frozen=True)
class ResetLanguage(Command):
    pass


@dataclass(frozen=True)
class ExitApp(Command):
    pass


@dataclass(frozen=True)
class ReloadConfig(Command):
    pass
