"""What the terminals' state machines share: pure, no Kivy, no I/O.

:class:`~kiosk.counter_state.CounterMachine` (the resident's kiosk) and
:class:`~kiosk.office_state.OfficeMachine` (the staff station) both take :class:`Event` objects and
return :class:`Command` objects. The events and commands that mean the same thing to both live here
(the relay link and its messages, timers, sending, ringing); each machine module re-exports them next
to its own, so an app imports everything from its machine's module.

:func:`check_transition` is the one place a state change is checked against a machine's table and
logged as ``old -> new``; a change the table does not allow raises :class:`InvalidTransition`, naming
both states.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

__all__ = [
    "Event", "LinkChanged", "RelayMessage", "TimerFired",
    "Command", "Send", "StartTimer", "CancelTimer", "Ring",
    "InvalidTransition", "check_transition",
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
    msg: Mapping[str, Any]


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
class InvalidTransition(Exception):
    """A state change that the machine does not allow; names both states."""

    def __init__(self, old: Enum, new: Enum, why: str = "", *, machine: str) -> None:
        super().__init__(f"invalid {machine} transition {old.name} -> {new.name}" + (f" ({why})" if why else ""))
        self.machine = machine
        self.old = old
        self.new = new


def check_transition(machine: str, transitions: Mapping[S, frozenset[S]], old: S, new: S, why: str,
                     log: logging.Logger) -> bool:
    """Check a change from ``old`` to ``new`` against ``transitions`` and log it.

    Args:
        machine: the machine's name in the log line and the error (``counter``, ``office``).
        transitions: each state's allowed next states.
        old: the current state.
        new: the wanted state.
        why: the reason, for the log line and the error.
        log: the machine module's logger.

    Returns:
        False when ``new`` is ``old`` (nothing changes), True for an allowed change.

    Raises:
        InvalidTransition: ``transitions`` does not allow the change.
    """
    if new is old:
        return False
    if new not in transitions[old]:
        raise InvalidTransition(old, new, why, machine=machine)
    log.info("%s state %s -> %s%s", machine, old.name, new.name, f" ({why})" if why else "")
    return True
