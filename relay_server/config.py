"""Relay configuration (``config/relay.toml``): TOML → validated frozen dataclasses.

Also the office-hours calendar, which is pure: it is asked "open at this instant?" and answers in
the office's own time zone, never the server's.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.protocol import ROLES
from common.tomlconf import ConfigError, Section, load, reporting_stray_keys
from relay_server.admin.settings import FleetSettings, parse_fleet

__all__ = [
    "ConfigError",
    "Department",
    "Hours",
    "Office",
    "RelayConfig",
    "Terminal",
    "hash_token",
    "load_relay_config",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS_RE = re.compile(
    r"^\s*(?P<d1>[a-z]{3})(?:\s*-\s*(?P<d2>[a-z]{3}))?\s+"
    r"(?P<h1>\d{1,2}):(?P<m1>\d{2})\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})\s*$"
)
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


def hash_token(token: str) -> str:
    """The hash stored in the relay config for a terminal token (tokens are random and long)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


# Tokens printed in this repository (the demo terminals' configs and the examples' placeholders): anyone can read
# them, so a relay reachable from other machines must not accept them (``insecure_terminals``).
PUBLISHED_TOKENS = (
    "demo-counter-1-e8b1c2",
    "demo-office-1-5f0a9d",
    "demo-office-2-7c3e41",
    "demo-office-3-5b9d02",
    "demo-lamp-1-2b9d60",
)


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def insecure_terminals(config: RelayConfig) -> list[str]:
    """Terminals whose token hash belongs to a published token (a demo token, ``REPLACE-ME-<id>``)."""
    published = {hash_token(t) for t in PUBLISHED_TOKENS}
    return sorted(
        t.id
        for t in config.terminals.values()
        if t.token_hash in published or t.token_hash == hash_token(f"REPLACE-ME-{t.id}")
    )


@dataclass(frozen=True)
class Hours:
    """Weekly opening hours plus closed dates, in one time zone.

    ``weekly[d]`` holds (start, end) minute ranges for weekday d (0 = Monday); end may be 1440.
    """

    tz: ZoneInfo
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    closed_dates: frozenset[date] = frozenset()
    always: bool = False

    def is_open(self, instant: datetime) -> bool:
        """Whether the office is open at ``instant`` (an aware datetime, any zone)."""
        if self.always:
            return True
        local = instant.astimezone(self.tz)
        if local.date() in self.closed_dates:
            return False
        minute = local.hour * 60 + local.minute
        return any(a <= minute < b for a, b in self.weekly[local.weekday()])

    def describe(self) -> str:
        if self.always:
            return "always open"
        parts = []
        for i, ranges in enumerate(self.weekly):
            for a, b in ranges:
                parts.append(f"{DAYS[i]} {a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}")
        return ", ".join(parts) or "never open"


@dataclass(frozen=True)
class Office:
    id: str
    name: dict[str, str]
    timezone: str


@dataclass(frozen=True)
class Department:
    id: str
    office: str
    name: dict[str, str]  # {"ja": ..., "en": ...}
    hours: Hours
    fallback: dict[str, str]  # {"phone": ..., "hours_ja": ..., "hours_en": ...}
    office_name: dict[str, str] = field(
        default_factory=dict
    )  # the office's {"ja", "en"}: a counter's town picker

    def public(self) -> dict[str, object]:
        """As sent to terminals in ``welcome``."""
        out: dict[str, object] = {
            "id": self.id,
            "office": self.office,
            "name": dict(self.name),
            "fallback": dict(self.fallback),
        }
        if self.office_name:
            out["office_name"] = dict(self.office_name)
        return out


@dataclass(frozen=True)
class Terminal:
    id: str
    role: str
    token_hash: str
    departments: tuple[str, ...]  # counter: offered; office: served; lamp: watched
    name: str = ""


@dataclass(frozen=True)
class RelayConfig:
    path: Path | None
    host: str = "127.0.0.1"
    port: int = 8765
    database: str = ""  # SQLite call log; empty = in memory
    tls_cert: str = ""
    tls_key: str = ""
    allowed_origins: tuple[str, ...] = ()
    ring_timeout: float = 60.0
    invite_timeout: float = 60.0
    grace_period: float = 20.0
    hello_timeout: float = 10.0
    max_members: int = 4
    max_message_bytes: int = 64 * 1024
    rate_limit: float = 20.0  # messages per second, sustained
    rate_burst: int = 60
    rate_strikes: int = 20  # rejected messages in a row before the connection is closed
    max_connections: int = 4000  # open sockets at once, all addresses together (also kept below the fd limit)
    max_connections_per_address: int = (
        200  # open sockets from one IP address (kiosks behind one NAT share one)
    )
    ice_servers: tuple[dict[str, object], ...] = ()
    turn_secret: str = ""
    turn_urls: tuple[str, ...] = ()
    turn_ttl: int = 24 * 3600
    offices: dict[str, Office] = field(default_factory=dict)
    departments: dict[str, Department] = field(default_factory=dict)
    terminals: dict[str, Terminal] = field(default_factory=dict)
    fleet: FleetSettings = field(default_factory=FleetSettings)  # the fleet page (relay_server/admin)

    def resolve(self, p: str) -> str:
        """A path from the config, relative to the config file's folder."""
        if not p or p == ":memory:" or self.path is None:
            return p
        pp = Path(p)
        return str(pp if pp.is_absolute() else self.path.parent / pp)


def _check_id(value: str) -> str | None:
    return None if _ID_RE.match(value) else "ids use lowercase letters, digits, '-' and '_' (max 64)"


def _token_hash_problem(h: str) -> str | None:
    if re.fullmatch(r"sha256:[0-9a-f]{64}", h):
        return None
    return "must be 'sha256:' and 64 hex digits; make one with: relay-server token TERMINAL_ID"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than 0"


def parse_hours(sec: Section, tz: ZoneInfo, key: str = "hours") -> Hours:
    """``hours = "always"`` or a list like ``["mon-fri 08:45-17:30", "sat 09:00-12:00"]``."""
    raw = sec.get(key, (str, list), "always")
    closed: frozenset[date] = frozenset()
    dates = sec.get_list("closed_dates", str, [])
    try:
        closed = frozenset(date.fromisoformat(d) for d in dates)
    except ValueError as err:
        raise sec.error("closed_dates", f"dates are written YYYY-MM-DD: {err}") from err
    if raw == "always":
        return Hours(tz, ((),) * 7, closed, always=True)
    if isinstance(raw, str):
        raw = [raw]
    weekly: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    for item in raw:
        m = _HOURS_RE.match(str(item).lower())
        if not m:
            raise sec.error(key, f"'{item}' is not like 'mon-fri 08:45-17:30' (or use \"always\")")
        d1, d2 = m["d1"], m["d2"] or m["d1"]
        if d1 not in DAYS or d2 not in DAYS:
            raise sec.error(key, f"'{item}': days are {', '.join(DAYS)}")
        start = int(m["h1"]) * 60 + int(m["m1"])
        end = int(m["h2"]) * 60 + int(m["m2"])
        if not (0 <= start < end <= 1440) or int(m["m1"]) > 59 or int(m["m2"]) > 59:
            raise sec.error(key, f"'{item}': the range must go forward within one day (00:00-24:00)")
        i, j = DAYS.index(d1), DAYS.index(d2)
        for d in range(i, (j if j >= i else j + 7) + 1):
            weekly[d % 7].append((start, end))
    return Hours(tz, tuple(tuple(r) for r in weekly), closed)


def _names(sec: Section, key: str) -> dict[str, str]:
    n = sec.get(key, dict)
    for lang in ("ja", "en"):
        if not isinstance(n.get(lang), str) or not n[lang]:
            raise sec.error(
                key, f'needs a non-empty \'{lang}\' name, e.g. {{ ja = "住民課", en = "Residents" }}'
            )
    extra = set(n) - {"ja", "en"}
    if extra:
        raise sec.error(key, f"unknown language(s) {', '.join(sorted(extra))}; use ja and en")
    return {"ja": n["ja"], "en": n["en"]}


@reporting_stray_keys
def load_relay_config(path: str | Path) -> RelayConfig:
    """Load and validate ``relay.toml``.

    Raises:
        ConfigError: naming file, line and key of the first problem found.
    """
    file, root = load(path)
    s = root.section("server")
    d = RelayConfig(None)
    server = dict(
        host=s.get("host", str, d.host),
        port=s.get("port", int, d.port, check=lambda p: None if 0 <= p <= 65535 else "must be 0..65535"),
        database=s.get("database", str, d.database),
        tls_cert=s.get("tls_cert", str, ""),
        tls_key=s.get("tls_key", str, ""),
        allowed_origins=tuple(s.get_list("allowed_origins", str, [])),
        ring_timeout=s.get("ring_timeout", float, d.ring_timeout, check=_positive),
        invite_timeout=s.get("invite_timeout", float, d.invite_timeout, check=_positive),
        grace_period=s.get("grace_period", float, d.grace_period, check=_positive),
        hello_timeout=s.get("hello_timeout", float, d.hello_timeout, check=_positive),
        max_members=s.get(
            "max_members", int, d.max_members, check=lambda n: None if 2 <= n <= 8 else "must be 2..8"
        ),
        max_message_bytes=s.get(
            "max_message_bytes",
            int,
            d.max_message_bytes,
            check=lambda n: None if 1024 <= n <= 1 << 20 else "must be 1024..1048576",
        ),
        rate_limit=s.get("rate_limit", float, d.rate_limit, check=_positive),
        rate_burst=s.get("rate_burst", int, d.rate_burst, check=_positive),
        rate_strikes=s.get("rate_strikes", int, d.rate_strikes, check=_positive),
        max_connections=s.get("max_connections", int, d.max_connections, check=_positive),
        max_connections_per_address=s.get(
            "max_connections_per_address", int, d.max_connections_per_address, check=_positive
        ),
    )
    if bool(server["tls_cert"]) != bool(server["tls_key"]):
        raise s.error(
            "tls_cert" if not server["tls_cert"] else "tls_key", "TLS needs both tls_cert and tls_key"
        )
    s.done()

    ice = root.section("ice")
    servers = ice.get_list("servers", dict, [])
    for i, srv in enumerate(servers):
        urls = srv.get("urls")
        if not (isinstance(urls, str) or isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
            raise ice.error("servers", f"server {i + 1} needs 'urls' (a string or a list of strings)")
        if set(srv) - {"urls", "username", "credential"}:
            raise ice.error("servers", f"server {i + 1}: only urls, username and credential are allowed")
    turn = dict(
        ice_servers=tuple(servers),
        turn_secret=ice.get("turn_secret", str, ""),
        turn_urls=tuple(ice.get_list("turn_urls", str, [])),
        turn_ttl=ice.get("turn_ttl", int, d.turn_ttl, check=_positive),
    )
    if turn["turn_secret"] and not turn["turn_urls"]:
        raise ice.error("turn_urls", "turn_secret is set, so list the TURN server urls here too")
    ice.done()

    offices: dict[str, Office] = {}
    zones: dict[str, ZoneInfo] = {}
    for o in root.sections("office"):
        oid = o.get("id", str, check=_check_id)
        if oid in offices:
            raise o.error("id", f"office '{oid}' is defined twice")
        tzname = o.get("timezone", str, "Asia/Tokyo")
        try:
            zones[oid] = ZoneInfo(tzname)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise o.error("timezone", f"unknown time zone '{tzname}' (use e.g. 'Asia/Tokyo')") from err
        offices[oid] = Office(oid, _names(o, "name"), tzname)
        o.done()
    if not offices:
        raise root.error("office", "at least one [[office]] is needed")

    departments: dict[str, Department] = {}
    for dsec in root.sections("department"):
        did = dsec.get("id", str, check=_check_id)
        if did in departments:
            raise dsec.error("id", f"department '{did}' is defined twice")
        oid = dsec.get("office", str, next(iter(offices)) if len(offices) == 1 else ...)
        if oid not in offices:
            raise dsec.error("office", f"no [[office]] with id '{oid}' (known: {', '.join(offices)})")
        fb = dsec.section("fallback")
        fallback = {k: fb.get(k, str, "") for k in ("phone", "hours_ja", "hours_en")}
        fb.done()
        departments[did] = Department(
            did, oid, _names(dsec, "name"), parse_hours(dsec, zones[oid]), fallback, dict(offices[oid].name)
        )
        dsec.done()
    if not departments:
        raise root.error("department", "at least one [[department]] is needed")

    terminals: dict[str, Terminal] = {}
    for t in root.sections("terminal"):
        tid = t.get("id", str, check=_check_id)
        if tid in terminals:
            raise t.error("id", f"terminal '{tid}' is defined twice")
        role = t.get(
            "role", str, check=lambda r: None if r in ROLES else f"must be one of {', '.join(ROLES)}"
        )
        th = t.get("token_hash", str, check=_token_hash_problem)
        depts = t.get_list("departments", str, list(departments))
        for dep in depts:
            if dep not in departments:
                raise t.error("departments", f"unknown department '{dep}' (known: {', '.join(departments)})")
        terminals[tid] = Terminal(tid, role, th, tuple(depts), t.get("name", str, ""))
        t.done()
    fleet = parse_fleet(root)
    root.done()
    return RelayConfig(
        path=Path(path),
        offices=offices,
        departments=departments,
        terminals=terminals,
        fleet=fleet,
        **server,
        **turn,
    )
