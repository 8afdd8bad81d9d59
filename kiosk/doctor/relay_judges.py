"""The relay family's judges: each ``*_result`` turns a :class:`~kiosk.doctor.relay.RelayProbe` into a
:class:`~kiosk.doctor.report.CheckResult`, without I/O, choosing its advice from the probe's typed causes
(:class:`~kiosk.doctor.relay.TcpCause`, :class:`~kiosk.doctor.relay.TlsCause`), never from error text.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from kiosk.doctor.relay import RelayProbe, TcpCause, TlsCause
from kiosk.doctor.report import CheckResult
from kiosk.doctor.report import skip as _skip

__all__ = [
    "CERT_MIN_DAYS",
    "CLOCK_LIMIT_S",
    "RTT_LIMIT_S",
    "calllog_result",
    "clock_result",
    "reachable_result",
    "role_result",
    "rtt_result",
    "tls_result",
    "token_result",
]

RTT_LIMIT_S = 0.3  # a round trip to the relay above this makes calls sluggish
CLOCK_LIMIT_S = 2.0  # clock offset to the relay above this is a problem (logs, TURN credentials, TLS)
CERT_MIN_DAYS = 14  # warn this long before the relay's certificate expires


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
