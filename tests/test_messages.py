"""The message definitions (common/messages.py) are the one source of the protocol's fields, checked on arrival."""

from __future__ import annotations

import json

import pytest

from common import messages, protocol
from common.protocol import Field, ProtocolError, parse_server


def test_the_validation_schemas_are_derived_from_the_message_types() -> None:
    """Every message type has one definition; required and optional fields and their JSON types come from it."""
    assert list(protocol.CLIENT_MESSAGES) == list(messages.CLIENT_TYPES)
    assert list(protocol.SERVER_MESSAGES) == list(messages.SERVER_TYPES)
    assert protocol.CLIENT_MESSAGES["hello"] == {
        "token": Field((str,)),
        "protocol": Field((int,)),
        "client": Field((str,), required=False),
    }
    assert protocol.CLIENT_MESSAGES["ping"] == {"id": Field((str, int), required=False)}
    assert protocol.SERVER_MESSAGES["incoming"] == {
        "call": Field((str,)),
        "department": Field((str,)),
        "from": Field((str,)),
    }
    assert protocol.SERVER_MESSAGES["lamp_test"]["seconds"] == Field((int, float))
    assert protocol.SERVER_MESSAGES["pong"] == {}
    for kind, definition in {**messages.CLIENT_TYPES, **messages.SERVER_TYPES}.items():
        assert definition.__annotations__["type"].__args__ == (kind,), (
            f"{definition.__name__} is not '{kind}'"
        )


def test_a_terminal_checks_a_known_relay_message_once_on_arrival() -> None:
    """A relay message of a known type with a field missing or of the wrong type is refused where it arrives."""
    with pytest.raises(ProtocolError, match="'ringing' needs field 'department'"):
        parse_server(json.dumps({"type": "ringing", "call": "c1"}))
    with pytest.raises(ProtocolError, match="field 'members' of 'call_state' must be array, got string"):
        parse_server(
            json.dumps(
                {
                    "type": "call_state",
                    "call": "c1",
                    "state": "active",
                    "department": "juumin",
                    "counter": "k",
                    "members": "k",
                }
            )
        )


def test_a_terminal_accepts_extra_fields_and_new_types_from_a_newer_relay() -> None:
    """Fields the definition does not list and types it does not know pass through (forward compatibility)."""
    incoming = {"type": "incoming", "call": "c1", "department": "juumin", "from": "k", "from_name": "札幌"}
    assert parse_server(json.dumps(incoming, ensure_ascii=False).encode()) == incoming
    assert parse_server('{"type": "weather", "sky": "blue"}') == {"type": "weather", "sky": "blue"}
