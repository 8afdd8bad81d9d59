"""The relay family: TCP, TLS, ``hello``/``welcome`` with this terminal's token, ``ping``/``pong`` round trips and
the clock (docs/protocol.md).

:func:`probe_relay` visits the relay once and records raw findings in a :class:`RelayProbe`, turning each
exception into a typed cause (:class:`TcpCause`, :class:`TlsCause`) where it is caught; the ``*_result``
functions of :mod:`kiosk.doctor.relay_judges` judge the probe without I/O and choose their advice from those causes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from common.messages import Welcome

__all__ = ["RelayProbe", "TcpCause", "TlsCause", "probe_relay"]


class TcpCause(enum.Enum):
    """Why the TCP connection to the relay failed."""

    BAD_URL = "bad_url"
    UNKNOWN_HOST = "unknown_host"
    REFUSED = "refused"
    NO_ANSWER = "no_answer"  # timeout, no route, network unreachable


class TlsCause(enum.Enum):
    """Why the TLS handshake with the relay failed."""

    UNTRUSTED = "untrusted"  # no trusted issuer, self-signed
    WRONG_NAME = "wrong_name"
    EXPIRED = "expired"
    NOT_TLS = "not_tls"  # the server does not speak TLS on this port
    HANDSHAKE = "handshake"  # anything else


# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) that have advice of their own.
_VERIFY_CAUSES = {
    10: TlsCause.EXPIRED,  # CERT_HAS_EXPIRED
    18: TlsCause.UNTRUSTED,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: TlsCause.UNTRUSTED,  # SELF_SIGNED_CERT_IN_CHAIN
    20: TlsCause.UNTRUSTED,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: TlsCause.UNTRUSTED,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    62: TlsCause.WRONG_NAME,  # HOSTNAME_MISMATCH
    64: TlsCause.WRONG_NAME,  # IP_ADDRESS_MISMATCH
}


@dataclass
class RelayProbe:
    """Raw findings of one visit to the relay (filled in by :func:`probe_relay`, judged by ``*_result``).

    Attributes:
        tcp_error: the TCP connection failed (refused, timeout, unknown host).
        tls_error: the TLS handshake failed (certificate not trusted, expired, wrong name, not TLS).
        ws_error: something answered, but no websocket handshake (not the relay, or a proxy in the way).
        auth_error: the relay refused the token (its ``unauthorized`` message, or close code 4401).
        welcome: the ``welcome`` message.
        rtts: seconds per ping/pong round trip.
        offsets: relay clock minus local clock, per ping (midpoint of the round trip).
        cert_subject, cert_not_after, tls_version: the relay's certificate (wss only).
        health: the relay's ``GET /healthz`` (status, call log state), or None when it could not be read.
        tcp_cause, tls_cause: the kind of ``tcp_error`` / ``tls_error``, set where the exception was caught.
    """

    url: str
    host: str = ""
    port: int = 0
    secure: bool = False
    tcp_error: str = ""
    tls_error: str = ""
    ws_error: str = ""
    auth_error: str = ""
    welcome: Welcome | None = None
    rtts: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)
    cert_subject: str = ""
    cert_not_after: float = 0.0
    tls_version: str = ""
    connect_s: float = 0.0
    health: dict[str, Any] | None = None  # the relay's /healthz, read after the websocket visit
    tcp_cause: TcpCause | None = None
    tls_cause: TlsCause | None = None


def _ssl_context(ca_file: str) -> ssl.SSLContext:
    """The system's CAs plus ``[relay] ca_file``: what the terminals themselves trust."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


async def probe_relay(
    url: str,
    token: str,
    *,
    ca_file: str = "",
    timeout: float = 5.0,
    pings: int = 3,
    now: Callable[[], float] = time.time,
) -> RelayProbe:
    """Connect, authenticate with ``hello``, and time ``pings`` ping/pong round trips (docs/protocol.md)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

    from common import protocol

    parts = urlsplit(url)
    probe = RelayProbe(url, secure=parts.scheme == "wss")
    try:
        probe.host = parts.hostname or ""
        probe.port = parts.port or (443 if probe.secure else 80)
    except ValueError as err:
        probe.tcp_error, probe.tcp_cause = f"bad URL: {err}", TcpCause.BAD_URL
        return probe
    started = time.perf_counter()
    if not await _probe_tcp(probe, timeout):
        return probe
    ctx = _ssl_context(ca_file) if probe.secure else None
    try:
        async with connect(
            url,
            ssl=ctx,
            open_timeout=timeout,
            ping_interval=None,
            close_timeout=1,
            max_size=protocol.MAX_MESSAGE_BYTES * 4,
        ) as ws:
            probe.connect_s = time.perf_counter() - started
            ssl_object = ws.transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                _read_cert(probe, ssl_object)
            await _hello_and_pings(ws, probe, token, pings, timeout, now)
    except ssl.SSLCertVerificationError as err:
        probe.tls_error = err.verify_message or str(err)
        probe.tls_cause = _VERIFY_CAUSES.get(err.verify_code, TlsCause.HANDSHAKE)
    except ssl.SSLError as err:
        probe.tls_error = err.reason or str(err)
        probe.tls_cause = TlsCause.NOT_TLS if err.reason == "WRONG_VERSION_NUMBER" else TlsCause.HANDSHAKE
    except ConnectionClosed as err:
        _closed(probe, err.rcvd.code if err.rcvd else None, err.rcvd.reason if err.rcvd else "")
    except TimeoutError:
        if probe.welcome is None and not probe.connect_s:
            probe.ws_error = f"no websocket handshake within {timeout:g} s"
        elif probe.welcome is None:
            probe.ws_error = f"no answer to hello within {timeout:g} s"
        else:
            probe.ws_error = f"no pong within {timeout:g} s"
    except (InvalidHandshake, InvalidURI) as err:
        probe.ws_error = str(err)
    except OSError as err:
        text = err.strerror or str(err) or type(err).__name__
        if probe.secure and not probe.connect_s:
            # A plain-HTTP server answers a TLS ClientHello with an error page and hangs up: a reset.
            probe.tls_error = f"TLS handshake failed ({text}): the server may not speak TLS on this port"
            probe.tls_cause = TlsCause.NOT_TLS
        else:
            probe.ws_error = text
    except ValueError as err:  # JSON that is not the relay's
        probe.ws_error = f"not a relay answer: {err}"
    if probe.welcome is not None:
        probe.health = await _read_health(probe, ctx, timeout)
    return probe


async def _probe_tcp(probe: RelayProbe, timeout: float) -> bool:
    """Whether a TCP connection to the relay's host and port opens; else the probe says why (typed cause)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(probe.host, probe.port), timeout)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    except socket.gaierror as err:
        probe.tcp_error = f"cannot resolve host name '{probe.host}': {err.strerror}"
        probe.tcp_cause = TcpCause.UNKNOWN_HOST
    except ConnectionRefusedError:
        probe.tcp_error, probe.tcp_cause = "connection refused", TcpCause.REFUSED
    except TimeoutError:
        probe.tcp_error, probe.tcp_cause = f"no answer within {timeout:g} s", TcpCause.NO_ANSWER
    except OSError as err:
        probe.tcp_error, probe.tcp_cause = err.strerror or str(err), TcpCause.NO_ANSWER
    return False


async def _hello_and_pings(
    ws: Any, probe: RelayProbe, token: str, pings: int, timeout: float, now: Callable[[], float]
) -> None:
    """``hello`` → ``welcome`` (or the refusal), then ``pings`` timed ping/pong round trips and clock offsets."""
    from common import protocol

    await ws.send(
        protocol.encode(
            {"type": "hello", "token": token, "protocol": protocol.PROTOCOL_VERSION, "client": "kiosk doctor"}
        )
    )
    t0 = now()
    p0 = time.perf_counter()
    try:  # checked as a terminal's relay client checks it: a malformed welcome is a relay problem to report
        first = protocol.parse_server(await asyncio.wait_for(ws.recv(), timeout))
    except protocol.ProtocolError as err:
        probe.ws_error = f"the relay's answer to hello is not a valid message: {err}"
        return
    p1 = time.perf_counter()
    if first["type"] == "error":
        probe.auth_error = first["message"] or first["code"]
        return
    if first["type"] != "welcome":
        probe.ws_error = f"expected 'welcome' after hello, got '{first['type']}'"
        return
    probe.welcome = first
    if "time" in first:
        probe.offsets.append(first["time"] - (t0 + (p1 - p0) / 2))
    for i in range(pings):
        ping_id = f"doctor-{i}"
        t0 = now()
        p0 = time.perf_counter()
        await ws.send(protocol.encode({"type": "ping", "id": ping_id}))
        while True:
            try:
                msg = protocol.parse_server(await asyncio.wait_for(ws.recv(), timeout))
            except protocol.ProtocolError:
                continue  # not the pong: whatever else the relay sends meanwhile is not measured
            if msg["type"] == "pong" and msg.get("id") == ping_id:
                break
        p1 = time.perf_counter()
        probe.rtts.append(p1 - p0)
        if "time" in msg:
            probe.offsets.append(msg["time"] - (t0 + (p1 - p0) / 2))


def _closed(probe: RelayProbe, code: int | None, reason: str) -> None:
    """What the relay closing the websocket (with ``code``) means for the check."""
    from common import protocol

    if code == protocol.CLOSE_UNAUTHORIZED:
        probe.auth_error = probe.auth_error or reason or "token rejected"
    elif probe.welcome is None:
        probe.ws_error = f"the relay closed the connection ({code} {reason})".strip()
    elif code == protocol.CLOSE_REPLACED:
        pass  # a running kiosk with this token took its connection back: what we measured stands
    else:
        probe.ws_error = f"the relay closed the connection during the check ({code} {reason})".strip()


async def _read_health(
    probe: RelayProbe, ctx: ssl.SSLContext | None, timeout: float
) -> dict[str, Any] | None:
    """``GET /healthz`` on the relay's port (docs/protocol.md, Transport); None if that fails."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                probe.host, probe.port, ssl=ctx, server_hostname=probe.host if ctx else None
            ),
            timeout,
        )
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {probe.host}\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        body = data.split(b"\r\n\r\n", 1)[1]
        health = json.loads(body)
        return health if isinstance(health, dict) else None
    except (OSError, TimeoutError, ValueError, IndexError):
        return None


def _read_cert(probe: RelayProbe, ssl_object: Any) -> None:
    probe.tls_version = ssl_object.version() or ""
    cert = ssl_object.getpeercert() or {}
    subject = dict(item[0] for item in cert.get("subject", ()) if item)
    probe.cert_subject = str(subject.get("commonName", ""))
    if cert.get("notAfter"):
        probe.cert_not_after = ssl.cert_time_to_seconds(cert["notAfter"])
