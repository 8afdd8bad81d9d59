"""The STUN/TURN family: does each ICE server that the relay hands out (``welcome.ice_servers``) answer?

Each URL is probed on its own (:func:`stun_ping`: a Binding request over UDP, a TCP or TLS connection for
``?transport=tcp`` and ``turns:``), the probe's failure becomes an :class:`IceCause` where the exception is caught,
and :func:`ice_server_result` picks the advice from that cause. A new kind of probe (a TURN Allocate with the
relay's credentials, say) returns the same :class:`IceProbe`, with a new cause if it needs new advice; the
message bytes belong in :mod:`kiosk.doctor.stun`.
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

__all__ = ["IceCause", "IceProbe", "check_ice_servers", "ice_server_result", "ice_urls", "stun_ping"]


class IceCause(enum.Enum):
    """Why an ICE server probe failed."""

    BAD_URL = "bad_url"  # not a stun:/turn: URL the doctor can read
    NO_ANSWER = "no_answer"  # nothing came back within the timeout (UDP lost or filtered, TCP SYN unanswered)
    UNREACHABLE = "unreachable"  # refused, ICMP unreachable, no route, unknown host
    TLS = "tls"  # the TLS handshake of a turns:/stuns: URL failed
    ERROR_RESPONSE = "error_response"  # the server answered with a STUN error


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
    return ssl.create_default_context(cafile=ca_file or None)


async def stun_ping(url: str, *, timeout: float = 1.5, ca_file: str = "") -> IceProbe:
    """Contact one ICE server: a STUN Binding request over UDP, or a TCP (TLS) connection for tcp/tls URLs."""
    try:
        host, port, transport = parse_ice_url(url)
    except ValueError as err:
        return IceProbe(url, "", 0, "", False, error=str(err), cause=IceCause.BAD_URL)
    started = time.perf_counter()
    if transport != "udp":
        return await _connect_probe(url, host, port, transport, timeout=timeout, ca_file=ca_file, started=started)
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


async def _connect_probe(url: str, host: str, port: int, transport: str, *, timeout: float, ca_file: str,
                         started: float) -> IceProbe:
    """A TCP (or TLS) connection to a ``?transport=tcp`` or ``turns:`` URL: does anything listen there?"""
    ctx = _ssl_context(ca_file) if transport == "tls" else None
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None), timeout)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except TimeoutError:
        return IceProbe(url, host, port, transport, False, error=f"no answer within {timeout:g} s",
                        cause=IceCause.NO_ANSWER)
    except ssl.SSLError as err:
        return IceProbe(url, host, port, transport, False, error=str(err), cause=IceCause.TLS)
    except OSError as err:
        return IceProbe(url, host, port, transport, False, error=str(err), cause=IceCause.UNREACHABLE)
    return IceProbe(url, host, port, transport, True, rtt=time.perf_counter() - started)


def ice_server_result(probe: IceProbe) -> CheckResult:
    """Judge one ICE server probe: the advice follows the probe's cause and transport."""
    name = f"ICE server {probe.url}"
    if probe.ok:
        detail = f"answered in {probe.rtt * 1000:.0f} ms over {probe.transport.upper()}"
        if probe.mapped:
            detail += f"; it sees this PC as {probe.mapped}"
        return CheckResult(name, True, detail)
    if probe.cause is IceCause.BAD_URL:
        return CheckResult(name, False, probe.error,
                           "fix this entry of relay.toml [ice] servers or turn_urls (stun:HOST:PORT or "
                           "turn:HOST:PORT?transport=udp)")
    if probe.transport == "udp":
        advice = (f"{probe.host} UDP port {probe.port} does not answer: is the STUN/TURN server (coturn) running, "
                  "and does the firewall let UDP through? On networks that block UDP, add a turns: URL on TCP 443 "
                  "to [ice] turn_urls")
    else:
        advice = (f"cannot connect to {probe.host} {probe.transport.upper()} port {probe.port}: check that coturn "
                  "listens there and the firewall allows it")
    return CheckResult(name, False, f"{probe.transport.upper()} {probe.host}:{probe.port}: {probe.error}", advice)


def ice_urls(servers: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every URL of ``welcome.ice_servers`` (each entry's ``urls`` is a string or a list), in order."""
    urls: list[str] = []
    for entry in servers:
        raw = entry.get("urls")
        urls += [raw] if isinstance(raw, str) else [u for u in raw or () if isinstance(u, str)]
    return urls


async def check_ice_servers(servers: Iterable[Mapping[str, Any]], *, timeout: float = 1.5,
                            probe: Callable[..., Awaitable[IceProbe]] = stun_ping) -> list[CheckResult]:
    """Probe every URL of ``welcome.ice_servers``, all at once; contacts nothing else."""
    urls = ice_urls(servers)
    if not urls:
        return [CheckResult("ICE servers", True, "none configured: media uses host candidates only, so both ends "
                                                 "must reach each other directly (one network or VPN)")]
    probes = await asyncio.gather(*(probe(u, timeout=timeout) for u in urls))
    return [ice_server_result(p) for p in probes]
