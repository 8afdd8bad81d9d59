"""The relay family: TCP, TLS, ``hello``/``welcome`` with this terminal's token, ``ping``/``pong`` round trips and
the clock (docs/protocol.md).

:func:`probe_relay` visits the relay once and records raw findings in a :class:`RelayProbe`, turning each
exception into a typed cause (:class:`TcpCause`, :class:`TlsCause`) where it is caught; the ``*_result``
functions judge the probe without I/O and choose their advice from those causes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import socket
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.messages import Welcome
from kiosk.doctor.report import CheckResult
from kiosk.doctor.report import skip as _skip

__all__ = [
    "CERT_MIN_DAYS",
    "CLOCK_LIMIT_S",
    "RTT_LIMIT_S",
    "RelayProbe",
    "TcpCause",
    "TlsCause",
    "calllog_result",
    "clock_result",
    "probe_relay",
    "reachable_result",
    "role_result",
    "rtt_result",
    "tls_result",
    "token_result",
]

RTT_LIMIT_S = 0.3  # a round trip to the relay above this makes calls sluggish
CLOCK_LIMIT_S = 2.0  # clock offset to the relay above this is a problem (logs, TURN credentials, TLS)
CERT_MIN_DAYS = 14  # warn this long before the relay's certificate expires


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


def _tls_advice(cause: TlsCause | None, host: str) -> str:
    if cause is TlsCause.UNTRUSTED:
        return (
            "the relay's certificate is not trusted here: set [relay] ca_file to the CA certificate "
            "that signed it (for a self-signed certificate, the certificate file itself)"
        )
    if cause is TlsCause.WRONG_NAME:
        return (
            f"the certificate is not for '{host}': use the name on the certificate in [relay] url, or "
            "issue a certificate for this name"
        )
    if cause is TlsCause.EXPIRED:
        return (
            "the relay's certificate has expired: renew it ([server] tls_cert) and restart relay-server; "
            "also check this PC's clock (`timedatectl`)"
        )
    if cause is TlsCause.NOT_TLS:
        return (
            "the relay does not speak TLS on this port: use ws:// in [relay] url, or give the relay "
            "[server] tls_cert and tls_key"
        )
    return "TLS handshake failed: check [relay] ca_file and the relay's certificate"


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


def reachable_result(p: RelayProbe) -> CheckResult:
    """TCP and the websocket handshake."""
    where = f"{p.host}:{p.port}"
    if p.tcp_error:
        if p.tcp_cause is TcpCause.UNKNOWN_HOST:
            advice = (
                f"cannot find {p.host}: check the host name in [relay] url and this PC's DNS "
                "(`resolvectl query HOST`)"
            )
        elif p.tcp_cause is TcpCause.BAD_URL:
            advice = "fix [relay] url: ws://HOST:PORT or wss://HOST:PORT"
        elif p.tcp_cause is TcpCause.REFUSED:
            advice = (
                f"relay unreachable at {p.url}: is relay-server running on {p.host}? "
                f"(`systemctl status relay-server`) check firewall port {p.port}"
            )
        else:
            advice = (
                f"no answer from {where}: check the network cable or VPN, and that the firewall lets "
                f"TCP port {p.port} through"
            )
        return CheckResult("relay reachable", False, f"{p.url}: {p.tcp_error}", advice)
    if p.ws_error and p.welcome is None and not p.tls_error and not p.auth_error:
        return CheckResult(
            "relay reachable",
            False,
            f"{p.url}: TCP {where} open, but {p.ws_error}",
            f"something answers on {where} but not like the relay: check the port in [relay] url "
            "(relay.toml [server] port, 8765 by default), ws:// vs wss://, and any proxy in between",
        )
    return CheckResult(
        "relay reachable",
        True,
        f"{p.url}: TCP {where} open" + (f", websocket in {p.connect_s * 1000:.0f} ms" if p.connect_s else ""),
    )


def tls_result(p: RelayProbe, now: float | None = None) -> CheckResult:
    """For ``wss://``: the certificate is trusted, matches the name, and is not about to expire."""
    name = "relay TLS"
    if p.tcp_error:
        return _skip(name, "relay unreachable")
    if not p.secure:
        return CheckResult(
            name, True, "not used (ws://): fine inside a closed network; use wss:// across the internet"
        )
    if p.tls_error:
        return CheckResult(name, False, f"{p.url}: {p.tls_error}", _tls_advice(p.tls_cause, p.host))
    if p.ws_error and not p.cert_subject:
        return _skip(name, "no TLS connection was made")
    detail = f"{p.tls_version} certificate for '{p.cert_subject}'"
    if p.cert_not_after:
        days = (p.cert_not_after - (time.time() if now is None else now)) / 86400
        until = datetime.fromtimestamp(p.cert_not_after, UTC).strftime("%Y-%m-%d")
        detail += f", valid until {until} ({days:.0f} days)"
        if days < CERT_MIN_DAYS:
            return CheckResult(
                name,
                False,
                detail,
                f"the relay's certificate expires in {days:.0f} days: renew it ([server] tls_cert, "
                "e.g. `certbot renew`) and restart relay-server",
            )
    return CheckResult(name, True, detail)


def token_result(p: RelayProbe, config_path: str | Path = "", role: str = "") -> CheckResult:
    """``hello`` is answered with ``welcome``; ``unauthorized`` means a wrong token."""
    name = "relay token"
    if p.tcp_error or p.tls_error or (p.ws_error and p.welcome is None and not p.auth_error):
        return _skip(name, "no connection to the relay")
    if p.auth_error:
        where = f" of {config_path}" if config_path else ""
        return CheckResult(
            name,
            False,
            f"token rejected by the relay: {p.auth_error}",
            "token rejected: run `relay-server token TERMINAL_ID` on the relay (TERMINAL_ID: the id of this "
            f"{role or 'terminal'}'s [[terminal]] entry in relay.toml) and paste its token line into [relay]{where}, "
            "its token_hash line into that [[terminal]], then restart relay-server",
        )
    assert p.welcome is not None
    w = p.welcome
    depts = ", ".join(d["id"] for d in w["departments"])
    label = f' "{w["name"]}"' if w.get("name") else ""
    return CheckResult(
        name, True, f"accepted as {w['terminal']}{label} ({w['role']}); departments: {depts or 'none'}"
    )


def role_result(p: RelayProbe, role: str) -> CheckResult:
    """The relay knows this token as a terminal of the role the config was checked as."""
    name = "terminal role"
    if p.welcome is None:
        return _skip(name, "not logged in to the relay")
    actual = p.welcome["role"]
    if actual != role:
        return CheckResult(
            name,
            False,
            f"the config was checked as {role}, but the relay knows {p.welcome['terminal']} as {actual}",
            f"use the {actual} terminal's config on this PC, or the token of a {role} terminal "
            f"(or pass --role {actual} if the guess was wrong)",
        )
    return CheckResult(name, True, f"{role}, as in relay.toml")


def rtt_result(p: RelayProbe) -> CheckResult:
    """The median ping/pong round trip is below :data:`RTT_LIMIT_S`."""
    name = "relay round trip"
    if p.welcome is None:
        return _skip(name, "not logged in to the relay")
    if not p.rtts:
        return CheckResult(
            name,
            False,
            f"no pong from the relay ({p.ws_error or 'connection closed'})",
            "the relay accepted the token but does not answer pings: restart relay-server and "
            "check its log (`journalctl -u relay-server`)",
        )
    median = statistics.median(p.rtts)
    detail = (
        f"{median * 1000:.1f} ms median of {len(p.rtts)} "
        f"(min {min(p.rtts) * 1000:.1f}, max {max(p.rtts) * 1000:.1f})"
    )
    if median > RTT_LIMIT_S:
        return CheckResult(
            name,
            False,
            detail,
            f"round trips over {RTT_LIMIT_S * 1000:.0f} ms make calls lag: look for a congested or "
            f"mobile link (`mtr {p.host}`) and check the relay host's load",
        )
    return CheckResult(name, True, detail)


def clock_result(p: RelayProbe) -> CheckResult:
    """This PC's clock is within :data:`CLOCK_LIMIT_S` of the relay's (``welcome.time``, ``pong.time``)."""
    name = "clock offset"
    if p.welcome is None:
        return _skip(name, "not logged in to the relay")
    if not p.offsets:
        return CheckResult(
            name,
            False,
            "the relay sent no time",
            "update relay-server: it should send its time in welcome and pong",
        )
    # The sample with the shortest round trip has the smallest error; welcome (index 0) has no rtt of its own.
    best = (
        p.offsets[1 + p.rtts.index(min(p.rtts))] if p.rtts and len(p.offsets) > len(p.rtts) else p.offsets[-1]
    )
    side = "behind" if best > 0 else "ahead of"
    detail = f"this PC is {abs(best):.3f} s {side} the relay"
    if abs(best) > CLOCK_LIMIT_S:
        return CheckResult(
            name,
            False,
            detail,
            "turn on time sync on this PC (`sudo timedatectl set-ntp true`, then `timedatectl` shows "
            "'System clock synchronized: yes'), or fix the relay's clock if that one is wrong",
        )
    return CheckResult(name, True, detail)


def calllog_result(p: RelayProbe) -> CheckResult:
    """The relay writes its call log (``/healthz`` ``calllog.state``); a degraded one is a warning: calls work."""
    name = "relay call log"
    if p.welcome is None:
        return _skip(name, "not logged in to the relay")
    log = (p.health or {}).get("calllog")
    if not isinstance(log, dict):
        return _skip(name, "the relay's /healthz did not say (an older relay-server?)")
    if log.get("state") == "ok":
        return CheckResult(name, True, "written normally")
    detail = (
        f"degraded: {log.get('pending', '?')} record(s) waiting in the relay's memory; "
        f"{log.get('last_error') or 'no error text'}"
    )
    if log.get("moved_aside"):
        detail += f"; a damaged file was moved aside to {', '.join(map(str, log['moved_aside']))}"
    return CheckResult(
        name,
        False,
        detail,
        "calls work; on the relay host fix the call-log file or disk (docs/operations.md, "
        "'A damaged call log')",
        warning=True,
    )
