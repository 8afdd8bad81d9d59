"""The shared transition table (common/transitions.py): allowed moves, the one log line, the one error."""

from __future__ import annotations

import enum
import logging

import pytest

from common.transitions import InvalidTransition, TransitionTable, by_value

log = logging.getLogger("test.transitions")


class Door(enum.Enum):
    SHUT = "shut"
    OPEN = "open"
    GONE = "gone"


DOOR = TransitionTable("door", {Door.SHUT: {Door.OPEN, Door.GONE}, Door.OPEN: {Door.SHUT}, Door.GONE: set()})


def test_an_allowed_move_returns_the_new_state_and_logs_old_to_new(caplog: pytest.LogCaptureFixture) -> None:
    """A move the table allows is logged once as 'old -> new' with the reason, and gives the new state."""
    with caplog.at_level(logging.INFO, logger="test.transitions"):
        assert DOOR.move(Door.SHUT, Door.OPEN, log, why="key turned") is Door.OPEN
    assert [r.getMessage() for r in caplog.records] == [
        'event=transition machine=door move=SHUT->OPEN why="key turned"'
    ]


def test_a_move_the_table_does_not_allow_names_the_machine_and_both_states() -> None:
    """An impossible move raises InvalidTransition carrying the machine, both states and the reason."""
    with pytest.raises(
        InvalidTransition, match=r"^invalid door c-7 transition GONE -> OPEN \(reopened\)$"
    ) as info:
        DOOR.move(Door.GONE, Door.OPEN, log, why="reopened", subject="c-7")
    assert (info.value.machine, info.value.old, info.value.new, info.value.why) == (
        "door c-7",
        Door.GONE,
        Door.OPEN,
        "reopened",
    )


def test_staying_in_a_state_is_a_move_like_any_other() -> None:
    """The table decides whether staying put is allowed: a final state cannot 'move' to itself."""
    assert not DOOR.allows(Door.GONE, Door.GONE)
    with pytest.raises(InvalidTransition):
        DOOR.move(Door.GONE, Door.GONE, log)


def test_states_can_be_written_as_their_wire_values(caplog: pytest.LogCaptureFixture) -> None:
    """The relay and the call session write states as their values; the level of the log line is chosen too."""
    table = TransitionTable(
        "call",
        {Door.SHUT: {Door.OPEN}, Door.OPEN: set(), Door.GONE: set()},
        label=by_value,
        level=logging.DEBUG,
    )
    with caplog.at_level(logging.DEBUG, logger="test.transitions"):
        table.move(Door.SHUT, Door.OPEN, log)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "event=transition machine=call move=shut->open")
    ]
    with pytest.raises(InvalidTransition, match="open -> shut"):
        table.move(Door.OPEN, Door.SHUT, log)


def test_a_table_missing_a_state_or_mixing_enums_is_refused_when_built() -> None:
    """A state with no row (a forgotten final state) or a row from another enum is a bug found at import time."""
    with pytest.raises(ValueError, match="no entry for GONE"):
        TransitionTable("door", {Door.SHUT: {Door.OPEN}, Door.OPEN: set()})

    class Other(enum.Enum):
        X = 1

    with pytest.raises(ValueError, match="mixes enums"):
        TransitionTable("door", {Door.SHUT: {Other.X}, Door.OPEN: set(), Door.GONE: set()})  # type: ignore[misc]  # mixing enums on purpose


def test_every_machine_of_the_project_uses_a_complete_table() -> None:
    """The counter, the station, the call session and the relay call all check moves through a TransitionTable."""
    from kiosk import counter_state, office_state
    from kiosk.video import events
    from relay_server import core

    for table, states in (
        (counter_state.TRANSITIONS, counter_state.State),
        (office_state.TRANSITIONS, office_state.State),
        (events.SESSION_TRANSITIONS, events.SessionState),
        (core._TRANSITIONS, core.CallState),
    ):
        assert isinstance(table, TransitionTable)
        assert set(table.allowed) == set(states)
