"""State transitions checked against a table, in one place (pure: no I/O).

Every state machine of the project (the counter and the staff station in ``kiosk/``, a call session's life in
``kiosk/video/session.py``, a call in the relay core) keeps its state as an enum and a :class:`TransitionTable`
of the moves it allows. :meth:`TransitionTable.move` is the one place a move is checked and logged as
``old -> new``; a move the table does not allow raises :class:`InvalidTransition`, which names the machine and
both states.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Generic, TypeVar

from common.logs import event

__all__ = ["InvalidTransition", "TransitionTable", "by_name", "by_value"]

S = TypeVar("S", bound=Enum)


def by_name(state: Enum) -> str:
    """A state as its enum name (``IN_CALL``): how the terminals' machines write states."""
    return state.name


def by_value(state: Enum) -> str:
    """A state as its value (``active``): how the relay and the call session write states (as on the wire)."""
    return str(state.value)


class InvalidTransition(RuntimeError):
    """A state change the machine's table does not allow.

    Attributes:
        machine: which machine (``counter``, ``office``, ``call session c-12``, ``call c-12``).
        old: the state it was in.
        new: the state it was asked to move to.
        why: the reason given for the move, if any.
    """

    def __init__(
        self, machine: str, old: Enum, new: Enum, why: str = "", *, label: Callable[[Enum], str] = by_name
    ) -> None:
        super().__init__(
            f"invalid {machine} transition {label(old)} -> {label(new)}" + (f" ({why})" if why else "")
        )
        self.machine = machine
        self.old = old
        self.new = new
        self.why = why


class TransitionTable(Generic[S]):
    """The moves a state machine allows, each state to its allowed next states.

    Args:
        machine: the machine's name in log lines and errors.
        allowed: every state of the enum to the states it may move to (a final state maps to nothing). A state
            missing from the table is a programming error and raises :class:`ValueError` here, at import time.
        label: how a state is written in log lines and errors (:func:`by_name` or :func:`by_value`).
        level: the logging level of the ``old -> new`` line.
    """

    def __init__(
        self,
        machine: str,
        allowed: Mapping[S, Iterable[S]],
        *,
        label: Callable[[Enum], str] = by_name,
        level: int = logging.INFO,
    ) -> None:
        self.machine = machine
        self.allowed: dict[S, frozenset[S]] = {old: frozenset(new) for old, new in allowed.items()}
        self.label = label
        self.level = level
        states = {s for targets in self.allowed.values() for s in targets} | set(self.allowed)
        enums = {type(s) for s in states}
        if len(enums) > 1:
            raise ValueError(f"{machine} transition table mixes enums: {sorted(e.__name__ for e in enums)}")
        if enums:
            missing = [s.name for s in next(iter(enums)) if s not in self.allowed]
            if missing:
                raise ValueError(f"{machine} transition table has no entry for {', '.join(missing)}")

    def __getitem__(self, old: S) -> frozenset[S]:
        return self.allowed[old]

    def allows(self, old: S, new: S) -> bool:
        """Whether the table allows moving from ``old`` to ``new``."""
        return new in self.allowed[old]

    def move(self, old: S, new: S, log: logging.Logger, *, why: str = "", subject: str = "") -> S:
        """Check a move from ``old`` to ``new``, log it as ``old -> new`` and return ``new``.

        Args:
            old: the current state.
            new: the wanted state.
            log: the calling module's logger (so the line says which module moved).
            why: the reason, for the log line and the error.
            subject: which machine, when the name alone does not say (``c-12 (counter-a)``); appended to the name.

        Raises:
            InvalidTransition: the table does not allow the move (staying in the same state included, unless the
                table lists it).
        """
        name = f"{self.machine} {subject}" if subject else self.machine
        if new not in self.allowed[old]:
            raise InvalidTransition(name, old, new, why, label=self.label)
        event(
            log,
            "transition",
            self.level,
            machine=name,
            move=f"{self.label(old)}->{self.label(new)}",
            why=why or None,
        )
        return new
