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
        "from_name": Field((str,), required=False),
        "invited_by": Field((str,), required=False),
        "members": Field((list,), required=False, items=Field((str,))),
    }
    welcome = protocol.SERVER_MESSAGES["welcome"]["departments"]
    assert welcome.items is not None and welcome.items.fields is not None
    assert welcome.items.fields["id"] == Field((str,))
    assert protocol.SERVER_MESSAGES["error"]["ref"] == Field((str, type(None)), required=False)
    assert protocol.SERVER_MESSAGES["lamp_test"]["seconds"] == Field((int, float))
    assert set(protocol.SERVER_MESSAGES["pong"]) == {"id", "time"}
    for kind, definition in {**messages.CLIENT_TYPES, **messages.SERVER_TYPES}.items():
        assert definition.__annotations__["type"].__args__ == (kind,), (
            f"{definition.__name__} is not '{kind}'"
        )


def test_a_terminal_checks_a_known_relay_message_once_on_arrival() -> None:
    """A relay message of a known type with a field missing or of the wrong type is refused where it arrives."""
    with pytest.raises(ProtocolError, match="'ringing' needs field 'department'"):
        parse_server(json.dumps({"type": "ringing", "call": "c1"}))
    with pytest.raises(
        ProtocolError, match="field 'members' of 'call_state' must be array of string, got string"
    ):
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


def test_a_terminal_accepts_extra_fields_but_refuses_unknown_types() -> None:
    """Fields a definition does not list pass through (a newer relay may add some); a type no definition has is
    refused where it arrives, like a malformed message (the relay client logs and skips it)."""
    incoming = {"type": "incoming", "call": "c1", "department": "juumin", "from": "k", "colour": "red"}
    assert parse_server(json.dumps(incoming, ensure_ascii=False).encode()) == incoming
    with pytest.raises(ProtocolError, match="unknown message type 'weather'") as err:
        parse_server('{"type": "weather", "sky": "blue"}')
    assert err.value.code == "unknown_type" and err.value.ref == "weather"


def test_nested_fields_are_checked_with_their_path() -> None:
    """Arrays and objects inside a message are checked too: the error names the element that is wrong."""
    base = {"type": "welcome", "terminal": "k", "role": "counter", "ice_servers": []}
    with pytest.raises(
        ProtocolError, match=r"field 'departments\[1\]\.id' of 'welcome' must be string, got integer"
    ):
        parse_server(json.dumps({**base, "departments": [{"id": "a"}, {"id": 7}]}))
    with pytest.raises(ProtocolError, match=r"'welcome' needs field 'departments\[0\]\.id' \(string\)"):
        parse_server(json.dumps({**base, "departments": [{"name": {"ja": "x"}}]}))
    with pytest.raises(
        ProtocolError, match=r"field 'departments\.juumin' of 'presence' must be string, got null"
    ):
        parse_server(json.dumps({"type": "presence", "departments": {"juumin": None}}))
    with pytest.raises(
        ProtocolError, match=r"field 'members\[0\]' of 'incoming' must be string, got integer"
    ):
        parse_server(
            json.dumps({"type": "incoming", "call": "c", "department": "d", "from": "k", "members": [1]})
        )
