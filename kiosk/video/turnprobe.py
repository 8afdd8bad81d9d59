"""TURN paths, probed: allocate on every configured TURN URL and remember which work (edge: aioice, ssl).

:class:`IcePathBook` is what a terminal keeps for the whole time it runs: the relay's ``welcome.ice_servers``
split into one :class:`~kiosk.video.paths.IcePath` per URL, the TLS context for ``turns:`` (the system's CAs
plus ``[relay] ca_file``: aioice alone checks coturn's certificate against the system store only), and the
latest :class:`~kiosk.video.paths.ProbeResult` of each path. It probes at start-up (each ``welcome``) and again
when the network may have changed (the relay link came back, an attempt failed); a call asks it for the paths in
the order to try (:meth:`IcePathBook.ordered`).

:func:`apply_tls_context` puts that TLS context into a peer connection's ICE gatherers before they gather.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aioice import stun
from aioice.turn import create_turn_endpoint

from common.logs import event
from kiosk.video.paths import IcePath, ProbeResult, describe_pair, order_paths, split_ice_servers

__all__ = [
    "PROBE_TIMEOUT",
    "IcePathBook",
    "apply_tls_context",
    "classify_error",
    "ice_connections",
    "probe_path",
    "selected_path",
    "tls_context",
]

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0  # a TURN allocation takes a few round trips; on a working path well under a second


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The context that verifies ``turns:`` servers: the system's CAs, plus ``ca_file`` (a private CA) if given."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


def classify_error(err: BaseException) -> tuple[str, str]:
    """An exception from a TURN allocation → (a key of ``paths.FAILURES``, the detail)."""
    if isinstance(err, (TimeoutError, asyncio.TimeoutError, stun.TransactionTimeout)):
        return "timeout", str(err) or "no answer"
    if isinstance(err, ssl.SSLCertVerificationError):
        code = getattr(err, "verify_code", 0)
        message = getattr(err, "verify_message", "") or str(err)
        if code == 62 or "mismatch" in message.lower():
            return "tls_name", message
        if code in (18, 19, 20, 21, 2, 27):
            return "tls_untrusted", message
        return "tls_error", message
    if isinstance(err, ssl.SSLError):
        return "tls_error", str(err)
    if isinstance(err, stun.TransactionFailed):
        code = err.response.attributes.get("ERROR-CODE", (0, ""))[0]
        return ("unauthorized" if code in (401, 403, 437, 441) else "error"), str(err)
    if isinstance(err, socket.gaierror):
        return "dns", str(err)
    if isinstance(err, ConnectionRefusedError):
        return "refused", str(err)
    if isinstance(err, OSError) and err.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "unreachable", str(err)
    return "error", f"{type(err).__name__}: {err}"


async def probe_path(
    path: IcePath, *, context: ssl.SSLContext | None = None, timeout: float = PROBE_TIMEOUT
) -> ProbeResult:
    """Make a TURN allocation on ``path`` and release it again; never raises (the result says why not)."""
    start = time.monotonic()
    if not path.is_turn:
        return ProbeResult(path, False, 0.0, "error", "not a TURN URL")
    transport = None
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await create_turn_endpoint(
                asyncio.DatagramProtocol,
                server_addr=(path.host, path.port),
                username=path.username,
                password=path.credential,
                ssl=(context or tls_context()) if path.scheme == "turns" else False,
                transport=path.transport,
            )
    except asyncio.CancelledError:
        raise
    except Exception as err:  # every failure is a verdict
        failure, detail = classify_error(err)
        return ProbeResult(path, False, round(time.monotonic() - start, 3), failure, detail)
    seconds = round(time.monotonic() - start, 3)
    mapped = transport.get_extra_info("related_address")
    transport.close()  # deletes the allocation (REFRESH lifetime 0) in the background
    return ProbeResult(
        path,
        True,
        seconds,
        None,
        f"relayed address {transport.get_extra_info('sockname')}",
        f"{mapped[0]}:{mapped[1]}" if mapped else None,
    )


class IcePathBook:
    """The ICE servers of this terminal, one path per URL, and what the last probe said about each.

    Args:
        servers: ``welcome.ice_servers`` (updated by :meth:`set_servers` on each ``welcome``).
        ca_file: a private CA (PEM) trusted for ``turns:`` besides the system store (``[relay] ca_file``).
        timeout: per-probe timeout in seconds.
    """

    def __init__(
        self,
        servers: Iterable[Mapping[str, Any]] | None = None,
        *,
        ca_file: str | None = None,
        timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self.context = tls_context(ca_file)
        self.timeout = timeout
        self.stun: list[IcePath] = []
        self.turn: list[IcePath] = []
        self.results: dict[str, ProbeResult] = {}
        self._probe: asyncio.Task[list[ProbeResult]] | None = None
        self.set_servers(servers)

    def set_servers(self, servers: Iterable[Mapping[str, Any]] | None) -> None:
        """New ``welcome.ice_servers`` (new credentials, maybe new URLs); results of vanished URLs are dropped."""
        self.stun, self.turn = split_ice_servers(servers)
        urls = {p.url for p in self.turn}
        self.results = {u: r for u, r in self.results.items() if u in urls}
        # Credentials change with every welcome: keep the verdicts, but for the new path objects.
        by_url = {p.url: p for p in self.turn}
        self.results = {
            u: ProbeResult(by_url[u], r.ok, r.seconds, r.failure, r.detail, r.mapped)
            for u, r in self.results.items()
        }

    def stun_servers(self) -> list[dict[str, Any]]:
        return [p.server() for p in self.stun[:1]]  # aiortc uses one STUN server too

    def ordered(self) -> list[IcePath]:
        """TURN paths in the order a call should try them (:func:`~kiosk.video.paths.order_paths`)."""
        return order_paths(self.turn, self.results)

    @property
    def probing(self) -> bool:
        return self._probe is not None and not self._probe.done()

    def refresh(self) -> asyncio.Task[list[ProbeResult]]:
        """Probe every TURN path (in parallel, in the background); the same task while one runs."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._run(), name="turn-probe")
        return self._probe

    @property
    def known(self) -> bool:
        """Every TURN path has a verdict (from this probe or an earlier one)."""
        return all(p.url in self.results for p in self.turn)

    async def wait_probed(self, timeout: float | None = None) -> None:
        """Wait for a running probe (at most ``timeout`` s; by then a call uses what is known) — unless every path
        already has a verdict from an earlier probe: a re-probe (each welcome, each failed attempt) then runs in
        the background and a call or a media rebuild goes on with the order known (a blocked path's probe takes
        the whole timeout, which a call answered just after a reconnection would otherwise wait out)."""
        if self._probe is not None and not self._probe.done() and not self.known:
            try:
                await asyncio.wait_for(asyncio.shield(self._probe), timeout)
            except TimeoutError:
                pass

    async def probe(self) -> list[ProbeResult]:
        """Probe now and return the results (in :meth:`ordered` order)."""
        await self.refresh()
        return [self.results[p.url] for p in self.ordered() if p.url in self.results]

    async def _run(self) -> list[ProbeResult]:
        paths = list(self.turn)
        results = await asyncio.gather(
            *(probe_path(p, context=self.context, timeout=self.timeout) for p in paths)
        )
        for r in results:
            if r.path.url in {p.url for p in self.turn}:
                self.results[r.path.url] = r
            (log.info if r.ok else log.warning)("TURN path %s", r.explain())
        if paths:
            event(log, "turn_paths", order=", ".join(p.url for p in self.ordered()))
        return list(results)


def apply_tls_context(pc: Any, context: ssl.SSLContext) -> int:
    """Make every ICE gatherer of ``pc`` that will use a ``turns:`` server verify it with ``context``.

    aiortc turns ``turns:`` into aioice's ``turn_ssl=True``, which ``loop.create_connection`` answers with the
    system's default context; aioice accepts an ``SSLContext`` in the same place. Call this after the
    transceivers exist and before ``setLocalDescription`` gathers. Returns how many gatherers were changed.
    """
    changed = 0
    for conn in ice_connections(pc):
        if conn.turn_ssl is True:
            conn.turn_ssl = context
            changed += 1
    return changed


def ice_connections(pc: Any) -> list[Any]:
    """The aioice ``Connection`` objects behind a peer connection (one with max-bundle)."""
    out: list[Any] = []
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        conn = dtls.transport.iceGatherer._connection
        if all(conn is not c for c in out):
            out.append(conn)
    return out


def selected_path(pc: Any) -> dict[str, Any] | None:
    """The candidate pair that carries ``pc``'s media, or None before ICE has nominated one.

    Returns:
        ``{"local": host|srflx|prflx|relay, "transport": udp|tcp|tls, "remote": TYPE, "turn": URL-ish | None,
        "summary": "relay/tls ↔ relay"}``; ``transport`` is how *this* side's packets travel (to the TURN
        server for a relay candidate).
    """
    for conn in ice_connections(pc):
        pair = conn._nominated.get(1)
        if pair is None:
            continue
        local, remote = pair.local_candidate, pair.remote_candidate
        transport = "udp"
        turn = None
        if local.type == "relay" and conn.turn_server is not None:
            transport = "tls" if conn.turn_ssl else str(conn.turn_transport)
            turn = f"{conn.turn_server[0]}:{conn.turn_server[1]}"
        return {
            "local": local.type,
            "transport": transport,
            "remote": remote.type,
            "turn": turn,
            "summary": describe_pair(local.type, transport, remote.type),
        }
    return None
