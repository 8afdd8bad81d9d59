"""The STUN/TURN family: does each ICE server that the relay hands out (``welcome.ice_servers``) answer?

Each URL is probed on its own: a STUN URL with a Binding request (:func:`stun_ping`), a TURN URL with a real
allocation using the relay's credentials, over the URL's own transport (UDP, TCP or TLS verified with the system's
CAs plus ``[relay] ca_file``) — exactly what a call does (:func:`turn_allocate`, on
:func:`kiosk.video.turnprobe.probe_path`). The probe's failure becomes an :class:`IceCause` where it is caught, and
:func:`ice_server_result` picks the advice from that cause: a closed port, dropped traffic, an untrusted
certificate, a certificate for another name and refused credentials each get their own. :func:`turn_paths_result`
then says which path calls will take (the first that works, UDP before TCP before TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kiosk.doctor.report import CheckResult
from kiosk.doctor.stun import StunErrorResponse, parse_ice_url, parse_stun_response, stun_binding_request

__all__ = [
    "IceCause",
    "IceProbe",
    "check_ice_servers",
    "ice_server_result",
    "ice_urls",
    "stun_ping",
    "turn_allocate",
    "turn_paths_result",
]


class IceCause(enum.Enum):
    """Why an ICE server probe failed."""

    BAD_URL = "bad_url"  # not a stun:/turn: URL the doctor can read
    NO_ANSWER = "no_answer"  # nothing came back within the timeout (UDP lost or filtered, TCP SYN unanswered)
    UNREACHABLE = "unreachable"  # refused, ICMP unreachable, no route, unknown host
    TLS = "tls"  # the TLS handshake of a turns:/stuns: URL failed (other than the two below)
    TLS_UNTRUSTED = "tls_untrusted"  # the server's certificate chains to no CA this PC trusts (a private CA)
    TLS_NAME = "tls_name"  # the certificate is for another host name than the URL's
    REFUSED = "refused"  # TCP connection refused: nothing listens on that port
    UNAUTHORIZED = "unauthorized"  # the TURN server refused the credentials (secret or clock)
    ERROR_RESPONSE = "error_response"  # the server answered with a STUN error


# kiosk.video.paths.FAILURES keys (what a TURN allocation probe found) → the doctor's causes.
_PROBE_CAUSES = {
    "timeout": IceCause.NO_ANSWER,
    "refused": IceCause.REFUSED,
    "unreachable": IceCause.UNREACHABLE,
    "dns": IceCause.UNREACHABLE,
    "unauthorized": IceCause.UNAUTHORIZED,
    "tls_untrusted": IceCause.TLS_UNTRUSTED,
    "tls_name": IceCause.TLS_NAME,
    "tls_error": IceCause.TLS,
    "error": IceCause.ERROR_RESPONSE,
}


@dataclass(frozen=True)
class IceProbe:
    """The outcome of contacting one STUN/TURN URL: ``mapped`` is how the server sees this PC (UDP only)."""

    url: str
    host: str
    port: int
    transport: str  # udp, tcp or tls
    ok: bool
    rtt: float = 0.0
    mapped: str = ""
    error: str = ""
    cause: IceCause | None = None


def _ssl_context(ca_file: str) -> ssl.SSLContext:
    """The system's CAs plus ``[relay] ca_file``: what the terminals themselves trust."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


async def stun_ping(url: str, *, timeout: float = 1.5, ca_file: str = "") -> IceProbe:
    """Contact one ICE server: a STUN Binding request over UDP, or a TCP (TLS) connection for tcp/tls URLs."""
    try:
        host, port, transport = parse_ice_url(url)
    except ValueError as err:
        return IceProbe(url, "", 0, "", False, error=str(err), cause=IceCause.BAD_URL)
    started = time.perf_counter()
    if transport != "udp":
        return await _connect_probe(
            url, host, port, transport, timeout=timeout, ca_file=ca_file, started=started
        )
    loop = asyncio.get_running_loop()
    tid = secrets.token_bytes(12)
    answer: asyncio.Future[bytes] = loop.create_future()

    class _Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not answer.done():
                with contextlib.suppress(ValueError):
                    if parse_stun_response(data, tid) is None:
                        return
                answer.set_result(data)

        def error_received(self, exc: Exception) -> None:
            if not answer.done():
                answer.set_exception(exc)

    def failed(cause: IceCause, error: str) -> IceProbe:
        return IceProbe(url, host, port, "udp", False, error=error, cause=cause)

    try:
        transport_obj, _ = await loop.create_datagram_endpoint(_Client, remote_addr=(host, port))
    except OSError as err:
        return failed(IceCause.UNREACHABLE, err.strerror or str(err))
    try:
        request = stun_binding_request(tid)
        # UDP may lose a packet: resend a few times within the timeout (RFC 5389 §7.2.1, shortened).
        deadline = loop.time() + timeout
        interval = timeout / 4
        while True:
            transport_obj.sendto(request)
            try:
                data = await asyncio.wait_for(asyncio.shield(answer), min(interval, deadline - loop.time()))
                break
            except TimeoutError:
                if loop.time() >= deadline - 0.001:
                    return failed(IceCause.NO_ANSWER, f"no answer within {timeout:g} s")
                interval *= 2
            except OSError as err:  # ICMP port unreachable
                return failed(IceCause.UNREACHABLE, err.strerror or str(err))
        try:
            mapped = parse_stun_response(data, tid) or ""
        except StunErrorResponse as err:
            return failed(IceCause.ERROR_RESPONSE, str(err))
        return IceProbe(url, host, port, "udp", True, rtt=time.perf_counter() - started, mapped=mapped)
    finally:
        transport_obj.close()


async def _connect_probe(
    url: str, host: str, port: int, transport: str, *, timeout: float, ca_file: str, started: float
) -> IceProbe:
    """A TCP (or TLS) connection to a ``?transport=tcp`` or ``turns:`` URL: does anything listen there?"""
    ctx = _ssl_context(ca_file) if transport == "tls" else None
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None), timeout
        )
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except TimeoutError:
        return IceProbe(
            url,
            host,
            port,
            transport,
            False,
            error=f"no answer within {timeout:g} s",
            cause=IceCause.NO_ANSWER,
        )
    except ssl.SSLError as err:
        return IceProbe(url, host, port, transport, False, error=str(err), cause=IceCause.TLS)
    except OSError as err:
        return IceProbe(url, host, port, transport, False, error=str(err), cause=IceCause.UNREACHABLE)
    return IceProbe(url, host, port, transport, True, rtt=time.perf_counter() - started)


async def turn_allocate(
    url: str, *, username: str | None, credential: str | None, timeout: float = 1.5, ca_file: str = ""
) -> IceProbe:
    """Make (and release) a TURN allocation on ``url`` with the relay's credentials, as a call would."""
    from kiosk.video.paths import parse_url
    from kiosk.video.turnprobe import probe_path, tls_context

    try:
        path = parse_url(url, username, credential)
    except ValueError as err:
        return IceProbe(url, "", 0, "", False, error=str(err), cause=IceCause.BAD_URL)
    r = await probe_path(path, context=tls_context(ca_file or None), timeout=timeout)
    if r.ok:
        return IceProbe(url, path.host, path.port, path.kind, True, rtt=r.seconds, mapped=r.mapped or "")
    return IceProbe(
        url,
        path.host,
        path.port,
        path.kind,
        False,
        rtt=r.seconds,
        error=r.detail,
        cause=_PROBE_CAUSES.get(r.failure or "error", IceCause.ERROR_RESPONSE),
    )


def ice_server_result(probe: IceProbe) -> CheckResult:
    """Judge one ICE server probe: the advice follows the probe's cause and transport."""
    name = f"ICE server {probe.url}"
    if probe.ok:
        detail = f"answered in {probe.rtt * 1000:.0f} ms over {probe.transport.upper()}"
        if probe.mapped:
            detail += f"; it sees this PC as {probe.mapped}"
        return CheckResult(name, True, detail)
    if probe.cause is IceCause.BAD_URL:
        return CheckResult(
            name,
            False,
            probe.error,
            "fix this entry of relay.toml [ice] servers or turn_urls (stun:HOST:PORT or "
            "turn:HOST:PORT?transport=udp)",
        )
    where = f"{probe.host} {probe.transport.upper()} port {probe.port}"
    if probe.cause is IceCause.TLS_UNTRUSTED:
        advice = (
            f"the certificate of {probe.host} is not trusted by this PC (signed by a private CA?): put that CA "
            "(PEM) in [relay] ca_file — it is used for the relay and for turns: — or into the system store "
            "(update-ca-certificates)"
        )
    elif probe.cause is IceCause.TLS_NAME:
        advice = (
            f"the certificate on {where} is for another name than '{probe.host}': write the certificate's "
            "name in relay.toml [ice] turn_urls, or give coturn a certificate for this name (cert=, pkey=)"
        )
    elif probe.cause is IceCause.TLS:
        advice = f"the TLS handshake on {where} failed: check cert= and pkey= in coturn's turnserver.conf"
    elif probe.cause is IceCause.UNAUTHORIZED:
        advice = (
            "coturn refused the relay's credentials: relay.toml [ice] turn_secret must equal coturn's "
            "static-auth-secret (with use-auth-secret), and the clocks of relay and TURN host must be right"
        )
    elif probe.cause is IceCause.REFUSED:
        advice = (
            f"connection refused on {where}: coturn is not running (systemctl status coturn) or does not "
            "listen on that port (listening-port / tls-listening-port; port 443 needs CAP_NET_BIND_SERVICE)"
        )
    elif probe.transport == "udp":
        advice = (
            f"{probe.host} UDP port {probe.port} does not answer: is the STUN/TURN server (coturn) running, "
            "and does the firewall let UDP through? Calls fall back to a TCP or TLS path that works; on "
            "networks that block UDP, make sure a turns: URL on TCP 443 is in [ice] turn_urls"
        )
    else:
        advice = (
            f"nothing answers on {where}: the firewall drops it, or coturn does not listen there; check that "
            "coturn listens there and the firewall allows it"
        )
    return CheckResult(
        name, False, f"{probe.transport.upper()} {probe.host}:{probe.port}: {probe.error}", advice
    )


def turn_paths_result(probes: Iterable[IceProbe]) -> CheckResult | None:
    """Which TURN path calls from this PC will take (UDP before TCP before TLS), or that none works."""
    turn = [p for p in probes if p.url.startswith("turn")]
    if not turn:
        return None
    rank = {"udp": 0, "tcp": 1, "tls": 2}
    working = sorted((p for p in turn if p.ok), key=lambda p: rank.get(p.transport, 3))
    if not working:
        return CheckResult(
            "TURN paths",
            False,
            f"none of {len(turn)} TURN URL(s) works from this PC",
            "calls across NAT or a strict firewall will ring but show no picture: fix the first "
            "failing TURN URL above (its advice names the cause)",
        )
    first = working[0]
    detail = f"calls relay media via {first.url} ({first.transport.upper()})"
    if first.transport != "udp" and any(p.transport == "udp" for p in turn):
        detail += "; UDP is blocked here, so media goes over TCP/TLS (a little more delay)"
    return CheckResult("TURN paths", True, detail)


def ice_urls(servers: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every URL of ``welcome.ice_servers`` (each entry's ``urls`` is a string or a list), in order."""
    urls: list[str] = []
    for entry in servers:
        raw = entry.get("urls")
        urls += [raw] if isinstance(raw, str) else [u for u in raw or () if isinstance(u, str)]
    return urls


async def check_ice_servers(
    servers: Iterable[Mapping[str, Any]],
    *,
    timeout: float = 1.5,
    probe: Callable[..., Awaitable[IceProbe]] = stun_ping,
    ca_file: str = "",
) -> list[CheckResult]:
    """Probe every URL of ``welcome.ice_servers``, all at once (TURN URLs by allocation), then say which TURN path
    calls will take; contacts nothing else. ``ca_file``: the private CA of ``[relay] ca_file``."""
    servers = list(servers)
    urls = ice_urls(servers)
    if not urls:
        return [
            CheckResult(
                "ICE servers",
                True,
                "none configured: media uses host candidates only, so both ends "
                "must reach each other directly (one network or VPN)",
            )
        ]
    if probe is not stun_ping:
        probes = await asyncio.gather(*(probe(u, timeout=timeout) for u in urls))
        return [ice_server_result(p) for p in probes]
    creds = {
        u: (entry.get("username"), entry.get("credential")) for entry in servers for u in ice_urls([entry])
    }
    probes = await asyncio.gather(
        *(
            turn_allocate(u, username=creds[u][0], credential=creds[u][1], timeout=timeout, ca_file=ca_file)
            if u.startswith("turn")
            else stun_ping(u, timeout=timeout, ca_file=ca_file)
            for u in urls
        )
    )
    results = [ice_server_result(p) for p in probes]
    summary = turn_paths_result(probes)
    return results + ([summary] if summary is not None else [])
