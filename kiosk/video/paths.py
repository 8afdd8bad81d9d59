"""Which ICE server path a peer connection uses, and what to do when media stops (pure: no I/O, no aiortc).

aiortc 1.16 uses only the *first* TURN URL of an ``RTCConfiguration`` (it says so in a code comment, not in a
log line), and the relay hands every configured URL as one ICE server. With ``turn:…?transport=udp`` first and a
firewall that drops UDP, every call would ring, connect nothing, and show no picture. So each URL becomes an
:class:`IcePath` of its own; the terminal probes them (:mod:`kiosk.video.turnprobe`), :func:`order_paths` puts
the working ones first (UDP before TCP before TLS: less overhead and no head-of-line blocking), and each peer
connection is given exactly one TURN path, the next one when an attempt fails (:class:`PathPlan`).

The two timing rules of a call's media also live here, free of I/O so they are tested directly:
:class:`SilenceWatch` (no packet received for a while = the media path is down) and :class:`ReconnectWindow`
(keep rebuilding the path until the window closes, then end the call).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FAILURES",
    "IcePath",
    "PathPlan",
    "ProbeResult",
    "ReconnectWindow",
    "SilenceWatch",
    "describe_pair",
    "order_paths",
    "split_ice_servers",
]

_URL = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>\[[0-9a-fA-F:.]+\]|[^?:\[\]]+)(?::(?P<port>\d+))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?$"
)

# Why a probe failed: the values of ProbeResult.failure, each with what a technician does about it.
FAILURES = {
    "timeout": "no answer: the port is closed or the traffic is dropped on the way (firewall)",
    "refused": "connection refused: nothing listens on that port of the TURN host",
    "unreachable": "no route to the TURN host from this PC",
    "dns": "the TURN host name does not resolve",
    "unauthorized": "the TURN server refused the credentials (turn_secret differs from coturn's "
    "static-auth-secret, or a clock is wrong)",
    "tls_untrusted": "the TURN server's certificate is not trusted by this PC (private CA: [relay] ca_file)",
    "tls_name": "the TURN server's certificate is for another name than the URL's host",
    "tls_error": "the TLS handshake with the TURN server failed",
    "error": "the TURN allocation failed",
}

_PREFERENCE = {"udp": 0, "tcp": 1, "tls": 2}


@dataclass(frozen=True)
class IcePath:
    """One STUN or TURN URL with its credentials.

    Attributes:
        url: as configured, e.g. ``turns:turn.example.jp:443?transport=tcp``.
        scheme: ``stun``, ``stuns``, ``turn`` or ``turns``.
        host, port, transport: where and how (``udp``/``tcp``) to reach the server.
    """

    url: str
    scheme: str
    host: str
    port: int
    transport: str
    username: str | None = None
    credential: str | None = None

    @property
    def is_turn(self) -> bool:
        return self.scheme in ("turn", "turns")

    @property
    def kind(self) -> str:
        """``udp``, ``tcp`` or ``tls``: what the firewall sees of it."""
        return "tls" if self.scheme in ("turns", "stuns") else self.transport

    def server(self) -> dict[str, Any]:
        """This path alone as a ``welcome.ice_servers`` entry."""
        entry: dict[str, Any] = {"urls": [self.url]}
        if self.username is not None:
            entry["username"] = self.username
        if self.credential is not None:
            entry["credential"] = self.credential
        return entry

    def __str__(self) -> str:
        return f"{self.scheme}:{self.host}:{self.port} ({self.kind})"


def parse_url(url: str, username: str | None = None, credential: str | None = None) -> IcePath:
    """Parse a stun:/stuns:/turn:/turns: URL (RFC 7064/7065) into an :class:`IcePath`.

    Raises:
        ValueError: not such a URL (the message quotes it).
    """
    m = _URL.match(url.strip())
    if m is None:
        raise ValueError(f"'{url}' is not a stun:, stuns:, turn: or turns: URL")
    scheme = m["scheme"]
    secure = scheme.endswith("s")
    transport = m["transport"] or ("tcp" if secure else "udp")
    if secure and transport != "tcp":
        raise ValueError(f"'{url}': {scheme}: runs over TLS, so transport=udp is impossible")
    port = int(m["port"]) if m["port"] else (5349 if secure else 3478)
    return IcePath(url.strip(), scheme, m["host"].strip("[]"), port, transport, username, credential)


def split_ice_servers(servers: Iterable[Mapping[str, Any]] | None) -> tuple[list[IcePath], list[IcePath]]:
    """``welcome.ice_servers`` → (STUN paths, TURN paths), one path per URL, in configured order.

    Raises:
        ValueError: an entry without usable ``urls``.
    """
    stun: list[IcePath] = []
    turn: list[IcePath] = []
    for i, entry in enumerate(servers or ()):
        urls = entry.get("urls")
        url_list = [urls] if isinstance(urls, str) else urls
        if not isinstance(url_list, list) or not url_list:
            raise ValueError(f"ice_servers[{i}]: 'urls' must be a string or a non-empty list, got {urls!r}")
        for url in url_list:
            path = parse_url(str(url), entry.get("username"), entry.get("credential"))
            (turn if path.is_turn else stun).append(path)
    return stun, turn


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one TURN allocation attempt (:func:`kiosk.video.turnprobe.probe_path`).

    Attributes:
        path: what was probed.
        ok: an allocation was made (and released).
        seconds: how long it took (or until it failed).
        failure: a key of :data:`FAILURES` when not ok.
        detail: the library's words (error class and message, or the relayed address when ok).
        mapped: the address the TURN server saw this PC as (``ip:port``), when ok.
    """

    path: IcePath
    ok: bool
    seconds: float
    failure: str | None = None
    detail: str = ""
    mapped: str | None = None

    def explain(self) -> str:
        if self.ok:
            return f"{self.path.url}: allocation in {self.seconds * 1000:.0f} ms" + (
                f"; it sees this PC as {self.mapped}" if self.mapped else ""
            )
        why = FAILURES.get(self.failure or "error", FAILURES["error"])
        return f"{self.path.url}: {why} ({self.detail})" if self.detail else f"{self.path.url}: {why}"


def order_paths(paths: Sequence[IcePath], results: Mapping[str, ProbeResult] | None = None) -> list[IcePath]:
    """TURN paths in the order to try them: probed-and-working first (UDP, TCP, TLS; faster first within a kind),
    then the not yet probed (by kind, then configured order), then those whose probe failed (by kind).

    The configured order never matters beyond breaking ties, so a technician cannot get it "wrong".
    """
    results = results or {}

    def key(item: tuple[int, IcePath]) -> tuple[int, int, float, int]:
        i, p = item
        r = results.get(p.url)
        group = 1 if r is None else (0 if r.ok else 2)
        return group, _PREFERENCE.get(p.kind, 3), (r.seconds if r is not None and r.ok else 0.0), i

    return [p for _, p in sorted(enumerate(paths), key=key)]


@dataclass
class PathPlan:
    """Which TURN path the next attempt towards one member uses.

    Every attempt takes the first path of :attr:`order`. A path that failed on this side (no TURN allocation) goes
    to the end at once. When an attempt fails although this side's allocation worked, the fault is more likely on
    the other side (which rotates its own paths): the path stays, but after :attr:`patience` such failures in a
    row it goes to the end too, so every path still gets its chance. With no TURN path at all, attempts use host
    and STUN candidates only (``None``).
    """

    order: list[IcePath]
    failures: list[tuple[str, str]] = field(default_factory=list)  # (url, why), oldest first
    patience: int = 2
    _strikes: int = 0

    def current(self) -> IcePath | None:
        return self.order[0] if self.order else None

    def failed(self, path: IcePath | None, why: str, *, own_fault: bool = True) -> IcePath | None:
        """Record that an attempt over ``path`` failed (``why`` goes to the log); returns the path to use next.

        Args:
            own_fault: this side's part of the path failed (no allocation); False when it worked here.
        """
        if path is None:
            return self.current()
        self.failures.append((path.url, why))
        self._strikes = self._strikes + 1 if not own_fault else self.patience
        if self._strikes >= self.patience and path in self.order:
            self.order.remove(path)
            self.order.append(path)
            self._strikes = 0
        return self.current()


@dataclass
class SilenceWatch:
    """Media liveness from a packet counter: the path is down after ``silence`` seconds without a packet.

    A connected call always receives something many times a second (audio every 20 ms, video, RTCP, SCTP), so a
    quiet receive counter means the path is gone long before ICE consent (30 s in aioice) notices.
    """

    silence: float = 2.5
    _count: int = -1
    _since: float = 0.0
    _last: float | None = None

    def feed(self, now: float, packets_received: int) -> bool:
        """Feed the current counter (every fraction of a second); returns True when the path is considered down.

        A feed that comes much later than the previous one means this process itself was stalled (a busy CPU):
        the packets may be sitting unread in the socket, so that stretch is not counted as silence.
        """
        stalled = self._last is not None and now - self._last > self.silence / 2
        self._last = now
        if packets_received != self._count or stalled:
            self._count, self._since = packets_received, now
            return False
        return now - self._since >= self.silence

    def reset(self, now: float) -> None:
        self._count, self._since = -1, now


@dataclass
class ReconnectWindow:
    """An outage of one member's media: when it began and whether it is still worth rebuilding.

    Args:
        window: seconds from the start of the outage after which the call ends (``[network] reconnect_window``).
        attempt_timeout: seconds an attempt (new peer connection) may take to connect before the next one.
    """

    window: float = 30.0
    attempt_timeout: float = 5.0
    started: float | None = None
    attempts: int = 0

    @property
    def active(self) -> bool:
        return self.started is not None

    def begin(self, now: float) -> None:
        if self.started is None:
            self.started, self.attempts = now, 0

    def attempt(self) -> int:
        self.attempts += 1
        return self.attempts

    def expired(self, now: float) -> bool:
        return self.started is not None and now - self.started >= self.window

    def left(self, now: float) -> float:
        return 0.0 if self.started is None else max(0.0, self.window - (now - self.started))

    def end(self, now: float) -> float:
        """The outage is over (media flows again); returns how long it lasted."""
        lasted = 0.0 if self.started is None else now - self.started
        self.started = None
        return lasted


def describe_pair(local_type: str, local_transport: str, remote_type: str) -> str:
    """A selected candidate pair as ``relay/tls ↔ relay`` (our side's kind/transport, the other side's kind)."""
    return f"{local_type}/{local_transport} ↔ {remote_type}"
