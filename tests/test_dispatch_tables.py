"""The state machines dispatch through explicit tables that match the protocol's message types."""

from __future__ import annotations

import inspect
from types import ModuleType

from helpers import make_relay_config

from common.protocol import CLIENT_MESSAGES, SERVER_MESSAGES
from kiosk import counter_state, machine, office_state
from kiosk.counter_state import CounterMachine
from kiosk.office_state import OfficeMachine
from relay_server.core import RelayCore


def _event_types(module: ModuleType) -> set[type]:
    """Every concrete event class a machine's module defines or re-exports."""
    return {
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, machine.Event) and obj is not machine.Event
    }


def test_the_relay_core_has_one_handler_per_client_message_type() -> None:
    """Every message a client may send has exactly one handler, and no handler waits for a type nobody sends."""
    core = RelayCore(make_relay_config(), lambda: "c-1")
    assert set(core.handlers) == set(CLIENT_MESSAGES)


def test_the_counter_machine_handles_every_event_and_only_server_messages() -> None:
    """A new counter event without a handler fails here, not at run time; message handlers are for relay types."""
    counter = CounterMachine()
    assert set(counter.event_handlers) == _event_types(counter_state)
    assert set(counter.message_handlers) <= set(SERVER_MESSAGES)


def test_the_office_machine_handles_every_event_and_only_server_messages() -> None:
    """The station's events and the relay messages it reacts to are listed in its tables, each once."""
    office = OfficeMachine()
    assert set(office.event_handlers) == _event_types(office_state)
    handled = set(office.message_handlers) | set(office.call_message_handlers)
    assert not set(office.message_handlers) & set(office.call_message_handlers)
    assert handled <= set(SERVER_MESSAGES)
