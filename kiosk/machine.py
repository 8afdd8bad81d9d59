"""What the terminals' state machines share: pure, no Kivy, no I/O.

:class:`~kiosk.counter_state.CounterMachine` (the resident's kiosk) and
:class:`~kiosk.office_state.OfficeMachine` (the staff station) both take :class:`Event` objects and
return :class:`Command` objects. The events and commands that mean the same thing to both live here
(the relay link and its messages, timers, sending, ringing); each machine module re-exports them next
to its own, so an app imports everything from its machine's module.

:func:`check_transition` is the one place a state change is checked against a machine's table
(a :class:`common.transitions.TransitionTable`) and logged as ``old -> new``; a change the table does not
allow raises :class:`~common.transitions.InvalidTransition`, naming both states.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from common.messages import ServerMessage
from common.transitions import InvalidTransition, TransitionTable

__all__ = [
    "Event",
    "LinkChanged",
    "RelayMessage",
    "TimerFired",
    "Command",
    "Send",
    "StartTimer",
    "CancelTimer",
    "Ring",
    "InvalidTransition",
    "TransitionTable",
    "check_transition",
]

S = TypeVar("S", bound=Enum)


# -- events --------------------------------------------------------------------------------------
class Event:
    """Base of everything fed to a state machine's ``handle``."""


@dataclass(frozen=True)
class LinkChanged(Event):
    state: str  # connecting, up, down, unauthorized (see kiosk.client)
    detail: str = ""


@dataclass(frozen=True)
class RelayMessage(Event):
    """A message from the relay, parsed and validated once on arrival (:func:`common.protocol.parse_server`)."""

    msg: ServerMessage


@dataclass(frozen=True)
class TimerFired(Event):
    name: str


# -- commands ------------------------------------------------------------------------------------
class Command:
    """Base of everything a state machine's ``handle`` returns."""


@dataclass(frozen=True)
class Send(Command):
    msg: dict[str, Any]


@dataclass(frozen=True)
class StartTimer(Command):
    name: str
    seconds: float


@dataclass(frozen=True)
class CancelTimer(Command):
    name: str


@dataclass(frozen=True)
class Ring(Command):
    on: bool


# -- transitions ---------------------------------------------------------------------------------
def check_transition(table: TransitionTable[S], old: S, new: S, why: str, log: logging.Logger) -> bool:
    """Check a change from ``old`` to ``new`` against the machine's ``table`` and log it.

    Returns:
        False when ``new`` is ``old`` (nothing changes), True for an allowed change.

    Raises:
        InvalidTransition: ``table`` does not allow the change.
    """
    if new is old:
        return False
    table.move(old, new, log, why=why)
    return True
