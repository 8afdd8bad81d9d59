"""Wire protocol v1: message schemas, parsing and encoding.

This module is the protocol shared by the relay and every terminal (``docs/protocol.md`` is its prose form);
the fields of each message type are defined once, in :mod:`common.messages`, and the schemas here derive from
them. It is pure: it turns text into validated messages and
messages into text, and raises :class:`ProtocolError` with the error code the relay sends back.

A message is a plain ``dict`` with a ``"type"`` key. Parsing checks that every required field is
present with the right JSON type and that no unexpected field is present; unknown types are rejected.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common import messages
from common.messages import ClientMessage, ServerMessage

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_SIGNAL_DATA_BYTES = 48 * 1024
LAMP_TEST_SECONDS = 3  # how long a lamp test from a counter lights the office lamps
MAX_NESTING = 32  # objects and arrays inside one another, at most (SDP payloads need 3)
MAX_ECHO_CHARS = 64  # text from a message quoted back in an error, at most
# A \uD800-\uDFFF escape in JSON text: the only way a lone surrogate (text that no UTF-8 can carry) gets in.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

ROLES = ("counter", "office", "lamp")

# WebSocket close codes used by the relay.
CLOSE_UNAUTHORIZED = 4401
CLOSE_REPLACED = 4409
CLOSE_RATE_LIMITED = 4429
CLOSE_SHUTDOWN = 1001
CLOSE_ADMIN = 4410  # disconnected from the fleet page; the terminal reconnects as usual

# Error codes (docs/protocol.md, "Errors").
ERROR_CODES = (
    "unauthorized",
    "bad_message",
    "unknown_type",
    "too_large",
    "rate_limited",
    "forbidden",
    "unknown_department",
    "closed",
    "unavailable",
    "unknown_call",
    "not_member",
    "not_ringing",
    "already_answered",
    "already_in_call",
    "call_full",
    "unknown_terminal",
    "member_offline",
)

# Reasons carried by ``ended`` and ``left``.
END_REASONS = ("hangup", "cancelled", "unanswered", "disconnected", "shutdown", "leave")


class ProtocolError(Exception):
    """A message that cannot be accepted; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str, ref: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.extra = extra

    def to_message(self) -> dict[str, Any]:
        """The ``error`` message the relay sends for this problem."""
        return error(self.code, self.message, self.ref, **self.extra)


_JSON_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    dict: "object",
    list: "array",
    bool: "boolean",
    float: "number",
    type(None): "null",
}


@dataclass(frozen=True)
class Field:
    """One field of a message schema: its JSON type(s) and whether it must be present.

    ``items`` is the field every element of an array (or every value of an object used as a map) must match;
    ``fields`` the schema of an object with named fields (a nested ``TypedDict``; fields it does not list are
    accepted there).
    """

    types: tuple[type, ...]
    required: bool = True
    items: Field | None = None
    fields: Mapping[str, Field] | None = None

    def describe(self) -> str:
        text = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in self.types)
        if self.items is not None:
            text += f" of {self.items.describe()}"
        return text


def _f(*types: type, required: bool = True) -> Field:
    return Field(types, required)


STR = _f(str)
INT = _f(int)
OBJ = _f(dict)
OPT_STR = _f(str, required=False)


def field_of(hint: Any, required: bool = True) -> Field:
    """The JSON field for one annotation of :mod:`common.messages`: ``str | int`` → ``(str, int)``,
    ``list[str]`` → an array of strings, ``dict[str, str]`` → an object of strings, a ``TypedDict`` → an object
    with those fields, ``dict[str, Any]`` → any object, ``None`` → null."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [field_of(arg) for arg in typing.get_args(hint)]
        nested = [a for a in arms if a.items is not None or a.fields is not None]
        if len(nested) > 1:
            raise TypeError(f"{hint}: at most one array or object arm in a union")
        inner = nested[0] if nested else None
        return Field(
            tuple(t for a in arms for t in a.types),
            required,
            inner.items if inner else None,
            inner.fields if inner else None,
        )
    if hint is None or hint is type(None):
        return Field((type(None),), required)
    if typing.is_typeddict(hint):
        return Field((dict,), required, fields=schema_of(hint))
    if origin in (list, dict):
        args = typing.get_args(hint)
        item = args[-1] if args else Any
        return Field((origin,), required, None if item is Any else field_of(item))
    return Field((origin or hint,), required)


def schema_of(definition: type) -> dict[str, Field]:
    """The field schema of one message definition of :mod:`common.messages` (its ``type`` field left out)."""
    required: frozenset[str] = getattr(definition, "__required_keys__", frozenset())
    return {
        name: field_of(hint, name in required)
        for name, hint in typing.get_type_hints(definition).items()
        if name != "type"
    }


# Messages a client may send to the relay (their fields from common.messages), with the roles allowed to send each.
CLIENT_MESSAGES: dict[str, dict[str, Field]] = {
    kind: schema_of(d) for kind, d in messages.CLIENT_TYPES.items()
}

CLIENT_ROLES: dict[str, tuple[str, ...]] = {
    "hello": ROLES,
    "call": ("counter",),
    "cancel": ("counter",),
    "answer": ("office",),
    "decline": ("office",),
    "invite": ("office",),
    "leave": ("office",),
    "hangup": ("counter", "office"),
    "signal": ("counter", "office"),
    "media_path": ("counter", "office"),
    "resume": ("counter", "office"),
    "status": ("office",),
    "ping": ROLES,
    "lamp_test": ("counter",),
    "health": ROLES,
}

# Messages the relay sends: terminals check what they receive against these (parse_server).
SERVER_MESSAGES: dict[str, dict[str, Field]] = {
    kind: schema_of(d) for kind, d in messages.SERVER_TYPES.items()
}

STATION_STATUSES = ("available", "away")

# ``health``: each device's state, and the limits that keep a report small.
HEALTH_STATES = ("ok", "missing", "failing")
HEALTH_MAX_DEVICES = 16
HEALTH_MAX_TEXT = 200
RING_TEST_SECONDS = 3  # how long a "ring this station" test from the fleet page rings


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "number", dict: "object", list: "array"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def check_fields(
    msg: Mapping[str, Any],
    schema: Mapping[str, Field],
    kind: str,
    *,
    extra_ok: bool = False,
    prefix: str = "",
) -> None:
    """Raise ``ProtocolError('bad_message')`` naming the message type and the field unless ``msg`` matches
    ``schema`` (fields it does not list are an error too, unless ``extra_ok``); ``prefix`` is the path of a nested
    object (``departments[0].``)."""
    for name, field in schema.items():
        if name not in msg:
            if field.required:
                raise ProtocolError(
                    "bad_message", f"'{kind}' needs field '{prefix}{name}' ({field.describe()})", kind
                )
            continue
        _check_value(msg[name], field, kind, prefix + name)
    extra = sorted(set(msg) - set(schema) - {"type"})
    if extra and not extra_ok:
        raise ProtocolError(
            "bad_message", f"unexpected field(s) in '{kind}': {shorten(', '.join(extra))}", kind
        )


def _check_value(value: Any, field: Field, kind: str, where: str) -> None:
    # bool is an int subclass in Python but never a valid integer on the wire.
    if isinstance(value, bool) and bool not in field.types or not isinstance(value, field.types):
        raise ProtocolError(
            "bad_message",
            f"field '{where}' of '{kind}' must be {field.describe()}, got {_type_name(value)}",
            kind,
        )
    if field.fields is not None and isinstance(value, dict):
        check_fields(value, field.fields, kind, extra_ok=True, prefix=where + ".")
    elif field.items is not None and isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, field.items, kind, f"{where}[{i}]")
    elif field.items is not None and isinstance(value, dict):
        for key, item in value.items():
            _check_value(item, field.items, kind, f"{where}.{shorten(key)}")


def parse(
    raw: str | bytes,
    schemas: Mapping[str, Mapping[str, Field]] = CLIENT_MESSAGES,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> ClientMessage:
    """Parse one text frame into a validated message (the relay's one check of what a terminal sends).

    Args:
        raw: the frame as received.
        schemas: message type → its fields.
        max_bytes: the largest accepted message, in UTF-8 bytes (``[server] max_message_bytes``).

    Raises:
        ProtocolError: binary frame, too large, invalid JSON, not an object, missing or unknown type, wrong fields.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        raise ProtocolError("bad_message", "binary frames are not accepted; send JSON text frames")
    # A character is 1 to 4 UTF-8 bytes: encode only when the length alone does not decide.
    size = (
        len(raw) if len(raw) > max_bytes or 4 * len(raw) <= max_bytes else len(raw.encode(errors="replace"))
    )
    if size > max_bytes:
        raise ProtocolError("too_large", f"message is {size} bytes or more, the limit is {max_bytes}")
    msg = load_json(raw, check=False)
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", f"a message must be a JSON object, got {_type_name(msg)}")
    kind = msg.get("type")
    check_json(raw, msg, shorten(kind) if isinstance(kind, str) else None)
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "a message needs a string field 'type'")
    schema = schemas.get(kind)
    if schema is None:
        kind = shorten(kind)
        raise ProtocolError("unknown_type", f"unknown message type '{kind}'", kind)
    check_fields(msg, schema, kind)
    if kind == "signal" and "data" in msg:
        size = len(encode(msg["data"]))
        if size > MAX_SIGNAL_DATA_BYTES:
            raise ProtocolError(
                "too_large", f"signal data is {size} bytes, the limit is {MAX_SIGNAL_DATA_BYTES}", kind
            )
    if kind == "invite" and ("department" in msg) == ("terminal" in msg):
        raise ProtocolError("bad_message", "'invite' needs exactly one of 'department' or 'terminal'", kind)
    if kind == "health":
        _check_health(msg)
    if kind == "status" and msg["status"] not in STATION_STATUSES:
        raise ProtocolError(
            "bad_message",
            f"'status' must be one of {', '.join(STATION_STATUSES)}, got '{shorten(msg['status'])}'",
            kind,
        )
    return typing.cast(ClientMessage, msg)


def _check_part(part: Mapping[str, Any], schema: Mapping[str, Field], where: str) -> None:
    try:
        check_fields({**part, "type": None}, schema, where)
    except ProtocolError as err:
        raise ProtocolError(err.code, err.message, "health") from None


def _check_health(msg: Mapping[str, Any]) -> None:
    """``devices`` is ``{name: {"state": HEALTH_STATES, "reason": str?}}``; ``last_call`` ``{"path": str?,
    "quality": str?}``; every text short (a report is small and shown as is on the fleet page)."""
    devices = msg["devices"]
    if len(devices) > HEALTH_MAX_DEVICES:
        raise ProtocolError(
            "bad_message",
            f"'health' lists {len(devices)} devices, the limit is {HEALTH_MAX_DEVICES}",
            "health",
        )
    texts = [msg["version"]]
    for name, dev in devices.items():
        if not isinstance(dev, dict):
            raise ProtocolError(
                "bad_message", f"device '{name}' of 'health' must be object, got {_type_name(dev)}", "health"
            )
        _check_part(dev, {"state": STR, "reason": OPT_STR}, f"health.devices.{name}")
        if dev["state"] not in HEALTH_STATES:
            raise ProtocolError(
                "bad_message",
                f"device '{name}' state must be one of {', '.join(HEALTH_STATES)}, got '{dev['state']}'",
                "health",
            )
        texts += [name, dev.get("reason", "")]
    if "last_call" in msg:
        _check_part(msg["last_call"], {"path": OPT_STR, "quality": OPT_STR}, "health.last_call")
        texts += list(msg["last_call"].values())
    if any(len(t) > HEALTH_MAX_TEXT for t in texts):
        raise ProtocolError(
            "bad_message", f"'health' texts are at most {HEALTH_MAX_TEXT} characters", "health"
        )


def parse_server(raw: str | bytes) -> ServerMessage:
    """Parse and check a message received from the relay: the one place a terminal validates what arrives.

    The message's type must be one of :data:`SERVER_MESSAGES`, with its required fields present and every field
    it declares (nested arrays and objects included) of the right JSON type; fields it does not list are accepted
    (a newer relay may add some). Past this point handlers read fields without checking them again.

    Raises:
        ProtocolError: not UTF-8, not JSON, nested too deeply, not an object with a string ``type``, a type no
            definition has (``unknown_type``), a field missing or of the wrong type (naming type and field).
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = bytes(raw).decode()
        except UnicodeDecodeError as err:
            raise ProtocolError(
                "bad_message", f"relay sent a frame that is not UTF-8 ({err.reason} at byte {err.start})"
            ) from err
    msg = load_json(raw)
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("bad_message", "relay sent something that is not a message")
    kind = shorten(msg["type"])
    schema = SERVER_MESSAGES.get(msg["type"])
    if schema is None:
        raise ProtocolError("unknown_type", f"unknown message type '{kind}'", kind)
    check_fields(msg, schema, kind, extra_ok=True)
    return typing.cast(ServerMessage, msg)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(raw: str, *, check: bool = True) -> Any:
    """``json.loads`` for text from the network: no NaN/Infinity, no lone surrogates, nesting bounded.

    Every value it returns can be encoded back to UTF-8 JSON, so nothing accepted here can make a later
    :func:`encode` or a websocket send fail.

    Raises:
        ProtocolError: ``bad_message`` naming the problem.
    """
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError as err:
        raise ProtocolError("bad_message", f"JSON nested more than {MAX_NESTING} levels deep") from err
    except ValueError as err:  # JSONDecodeError, NaN, an integer of more than 4300 digits
        raise ProtocolError("bad_message", f"not valid JSON: {shorten(str(err))}") from err
    if check:
        check_json(raw, value)
    return value


def check_json(raw: str, value: Any, ref: str | None = None) -> None:
    """Raise ``bad_message`` (with ``ref``) if ``value``, parsed from ``raw``, holds a lone surrogate or nests
    more than :data:`MAX_NESTING` deep."""
    if _SURROGATE_ESCAPE.search(raw) is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError as err:
            raise ProtocolError(
                "bad_message",
                "text with a lone surrogate escape (\\ud800-\\udfff) cannot be carried as UTF-8",
                ref,
            ) from err
    if raw.count("{") + raw.count("[") > MAX_NESTING and _depth(value) > MAX_NESTING:
        raise ProtocolError("bad_message", f"JSON nested more than {MAX_NESTING} levels deep", ref)


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in ``value`` (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        deepest = max(deepest, d)
        if d <= MAX_NESTING:
            stack.extend((x, d + 1) for x in v if isinstance(x, dict | list))
    return deepest


def shorten(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """``value`` as text of at most ``limit`` characters, for quoting a sender's text back in an error."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"…(+{len(text) - limit})"


def encode(msg: Mapping[str, Any]) -> str:
    """Encode a message as compact JSON text (UTF-8 kept readable).

    Never fails for a message built from parsed input: text that UTF-8 cannot carry (a lone surrogate) falls
    back to ASCII escapes, which every JSON reader accepts.
    """
    text = json.dumps(msg, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = json.dumps(msg, ensure_ascii=True, separators=(",", ":"))
    return text


def error(code: str, message: str, ref: str | None = None, **extra: Any) -> dict[str, Any]:
    """Build an ``error`` message; ``ref`` is the type of the offending message."""
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message, "ref": ref}
    msg.update(extra)
    return msg
