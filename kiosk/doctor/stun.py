"""STUN message codec and ICE server URLs (RFC 5389, RFC 7064/7065): pure bytes in, values out, no I/O.

The doctor's ICE checks (:mod:`kiosk.doctor.ice`) send what :func:`encode_message` builds and read what
:func:`decode_message` finds. A TURN check adds its methods (Allocate, RFC 5766 §6) and attributes as constants
here and builds on the same two functions; attributes stay raw ``(type, value)`` pairs so that new ones need no
change to the codec.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from urllib.parse import parse_qs

__all__ = [
    "BINDING_ERROR",
    "BINDING_REQUEST",
    "BINDING_SUCCESS",
    "IceUrl",
    "STUN_MAGIC",
    "StunErrorResponse",
    "StunMessage",
    "decode_address",
    "decode_error_code",
    "decode_message",
    "encode_message",
    "parse_ice_url",
    "parse_stun_response",
    "stun_binding_request",
]

STUN_MAGIC = 0x2112A442  # RFC 5389 §6: the magic cookie
HEADER = struct.Struct("!HHI12s")

# Message types (method | class bits, RFC 5389 §6).
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111

# Attributes (RFC 5389 §18.2).
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_ERROR_CODE = 0x0009
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_XOR_MAPPED_ADDRESS_OLD = 0x8020  # the pre-RFC number some servers still send


class StunErrorResponse(ValueError):
    """A STUN error response (class 0x11x): ``code`` and ``reason`` from its ERROR-CODE (RFC 5389 §15.6)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"STUN error {code} {reason}".strip())
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class StunMessage:
    """One decoded STUN message: its type, transaction id and attributes in the order they came."""

    kind: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...] = ()

    def attribute(self, atype: int) -> bytes | None:
        """The first attribute of type ``atype`` (later duplicates are ignored, RFC 5389 §15), or None."""
        for t, value in self.attributes:
            if t == atype:
                return value
        return None

    @property
    def is_error(self) -> bool:
        """An error response of any method (class bits 0b11)."""
        return self.kind & 0x0110 == 0x0110


def encode_message(kind: int, transaction_id: bytes, attributes: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    """A STUN message: the 20-byte header then each attribute padded to 4 bytes (RFC 5389 §6, §15)."""
    if len(transaction_id) != 12:
        raise ValueError(f"a STUN transaction id has 12 bytes, got {len(transaction_id)}")
    body = b"".join(
        struct.pack("!HH", atype, len(value)) + value + b"\0" * (-len(value) % 4)
        for atype, value in attributes
    )
    return HEADER.pack(kind, len(body), STUN_MAGIC, transaction_id) + body


def decode_message(data: bytes) -> StunMessage | None:
    """The STUN message in ``data``, or None if it is not one (too short, no magic cookie, truncated)."""
    if len(data) < HEADER.size:
        return None
    kind, length, magic, tid = HEADER.unpack(data[: HEADER.size])
    if magic != STUN_MAGIC or len(data) < HEADER.size + length:
        return None
    attrs: list[tuple[int, bytes]] = []
    pos = HEADER.size
    while pos + 4 <= HEADER.size + length:
        atype, alen = struct.unpack("!HH", data[pos : pos + 4])
        attrs.append((atype, data[pos + 4 : pos + 4 + alen]))
        pos += 4 + alen + (-alen % 4)
    return StunMessage(kind, tid, tuple(attrs))


def decode_address(value: bytes, transaction_id: bytes, *, xor: bool) -> str | None:
    """``ip:port`` (``[ip]:port`` for IPv6) from a (XOR-)MAPPED-ADDRESS value (RFC 5389 §15.1, §15.2)."""
    if len(value) < 8:
        return None
    family, port = value[1], struct.unpack("!H", value[2:4])[0]
    raw = value[4:8] if family == 0x01 else value[4:20]
    if xor:
        port ^= STUN_MAGIC >> 16
        mask = struct.pack("!I", STUN_MAGIC) + transaction_id
        raw = bytes(b ^ mask[i] for i, b in enumerate(raw))
    if family == 0x01:
        return f"{ipaddress.IPv4Address(raw)}:{port}"
    if len(raw) < 16:
        return None
    return f"[{ipaddress.IPv6Address(raw)}]:{port}"


def decode_error_code(value: bytes) -> tuple[int, str]:
    """``(code, reason)`` from an ERROR-CODE value (RFC 5389 §15.6); code 0 when it is too short."""
    code = (value[2] & 0x07) * 100 + value[3] if len(value) >= 4 else 0
    return code, value[4:].decode("utf-8", "replace")


def stun_binding_request(transaction_id: bytes) -> bytes:
    """A STUN Binding request (RFC 5389 §6): type 0x0001, no attributes, the magic cookie, 12-byte id."""
    return encode_message(BINDING_REQUEST, transaction_id)


def parse_stun_response(data: bytes, transaction_id: bytes) -> str | None:
    """The mapped address (``ip:port``) from a Binding success response, ``""`` if it has none.

    Returns None for datagrams that are not a response to ``transaction_id`` (stray packets are ignored).

    Raises:
        StunErrorResponse: a Binding error response (0x0111), with its error code (RFC 5389 §15.6).
    """
    msg = decode_message(data)
    if msg is None or msg.transaction_id != transaction_id:
        return None
    if msg.kind == BINDING_ERROR:
        raise StunErrorResponse(*decode_error_code(msg.attribute(ATTR_ERROR_CODE) or b""))
    if msg.kind != BINDING_SUCCESS:
        return None
    for atype, xor in (
        (ATTR_XOR_MAPPED_ADDRESS, True),
        (ATTR_XOR_MAPPED_ADDRESS_OLD, True),
        (ATTR_MAPPED_ADDRESS, False),
    ):
        value = msg.attribute(atype)
        if value is None:
            continue
        address = decode_address(value, transaction_id, xor=xor)
        if address is not None:
            return address
    return ""


@dataclass(frozen=True)
class IceUrl:
    """A parsed ``stun:``/``stuns:``/``turn:``/``turns:`` URL (RFC 7064, RFC 7065)."""

    url: str
    scheme: str  # stun, stuns, turn, turns
    host: str
    port: int
    transport: str  # udp, tcp or tls

    @property
    def is_turn(self) -> bool:
        """A TURN server (relays media), not only STUN."""
        return self.scheme.startswith("turn")


def parse_ice_url(url: str) -> tuple[str, int, str]:
    """``stun:host[:port]``, ``turn:host[:port][?transport=udp|tcp]``, ``stuns:``/``turns:`` → (host, port, transport).

    Raises:
        ValueError: not a stun:/stuns:/turn:/turns: URL.
    """
    parsed = parse_ice_url_full(url)
    return parsed.host, parsed.port, parsed.transport


def parse_ice_url_full(url: str) -> IceUrl:
    """Like :func:`parse_ice_url`, with the scheme (to tell STUN from TURN).

    Raises:
        ValueError: not a stun:/stuns:/turn:/turns: URL.
    """
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in ("stun", "stuns", "turn", "turns"):
        raise ValueError(f"'{url}' is not a stun:, stuns:, turn: or turns: URL")
    rest, _, query = rest.partition("?")
    transport = parse_qs(query).get("transport", ["udp"])[0].lower()
    secure = scheme.endswith("s")
    if secure:
        transport = "tls"
    elif transport not in ("udp", "tcp"):
        raise ValueError(f"'{url}': transport must be udp or tcp")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = rest.partition(":")
    if not host:
        raise ValueError(f"'{url}' has no host")
    try:
        port = int(port_text) if port_text else (5349 if secure else 3478)
    except ValueError:
        raise ValueError(f"'{url}': port must be a number, got '{port_text}'") from None
    return IceUrl(url, scheme, host, port, transport)
