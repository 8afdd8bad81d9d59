"""``relay-server``: run the relay, make a terminal token, or print the monthly call report."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys

from common.logs import setup_logging
from relay_server.config import ConfigError, hash_token, load_relay_config


def _run(args: argparse.Namespace) -> int:
    from relay_server.server import RelayServer

    config = load_relay_config(args.config)
    if args.fleet_port is not None:
        from dataclasses import replace

        config = replace(config, fleet=replace(config.fleet, port=args.fleet_port))

    async def serve() -> int:
        server = RelayServer(config)
        try:
            await server.start(args.host, args.port)
        except OSError as err:  # port in use, address not on this host, no permission, TLS files unreadable
            await server.close()
            print(
                f"relay-server: {_start_problem(err, args.host or config.host, args.port or config.port)}",
                file=sys.stderr,
            )
            return 1
        print(f"listening on {server.url}", flush=True)
        if server.fleet is not None:
            print(f"fleet page on {server.fleet.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.close()
        return 0

    return asyncio.run(serve())


def _start_problem(err: OSError, host: str, port: int) -> str:
    """One line for an operational start failure (no traceback): what failed, where, and what to do."""
    import errno
    import ssl

    where = f"{host}:{port}"
    from relay_server.admin.service import FleetListenError

    if isinstance(err, FleetListenError):  # the fleet page's own port, not the relay's
        return (
            f"cannot serve the fleet page on {err.where}: {err.strerror}; set [fleet] port (or host), "
            "or enabled = false"
        )
    if isinstance(err, ssl.SSLError) or err.filename:
        return f"cannot load the TLS certificate or key ({err.filename or err}): check [server] tls_cert and tls_key"
    if err.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (another relay-server running? "
            f"`ss -ltnp 'sport = :{port}'` shows who); stop it or set [server] port"
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {where}: this machine has no such address; set [server] host (0.0.0.0 = all)"
        )
    if err.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges); use a higher port"
    return f"cannot listen on {where}: {err.strerror or err}"


def _token(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(32)
    print(f"token for {args.terminal} (put it in the terminal's config, [relay] token):")
    print(f'token = "{token}"')
    print(f'hash line for relay.toml ([[terminal]] id = "{args.terminal}"):')
    print(f'token_hash = "{hash_token(token)}"')
    return 0


def _admin_hash(args: argparse.Namespace) -> int:
    import getpass

    from relay_server.admin.settings import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            print("relay-server: the passwords differ; nothing written", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 10:
        print("relay-server: use at least 10 characters", file=sys.stderr)
        return 1
    print("# add to relay.toml (the fleet page's accounts):")
    print(f'[[admin]]\nuser = "{args.user}"\npassword_hash = "{hash_password(password)}"')
    return 0


def _report(args: argparse.Namespace) -> int:
    import sqlite3
    from zoneinfo import ZoneInfo

    from relay_server.store import CallLog, build_report, format_report, month_bounds

    config = load_relay_config(args.config)
    db = config.resolve(config.database)
    if not db:
        print(f"{args.config}: [server] database is not set, so there is no call log", file=sys.stderr)
        return 1
    records = []
    try:
        calllog = CallLog(db)
    except sqlite3.Error as err:
        print(
            f"{db}: cannot read the call log ({err}); see docs/operations.md, 'A damaged call log'",
            file=sys.stderr,
        )
        return 1
    with calllog:
        # Each department's month is counted in its own office's time zone.
        for dept in config.departments.values():
            start, end = month_bounds(args.month, ZoneInfo(config.offices[dept.office].timezone))
            records += [
                r
                for r in calllog.records(start, end) + calllog.refused(start, end)
                if r.department == dept.id
            ]
    # The report is split by office: each town sees its own calls (--office picks one; text output has a section each).
    offices = [args.office] if args.office else list(config.offices)
    if args.office and args.office not in config.offices:
        print(
            f"{args.config}: no [[office]] '{args.office}' (known: {', '.join(config.offices)})",
            file=sys.stderr,
        )
        return 2
    for i, office in enumerate(offices):
        depts = [d for d, dept in config.departments.items() if dept.office == office]
        table = format_report(
            build_report([r for r in records if r.department in depts], depts), as_csv=args.csv
        )
        if len(offices) > 1 and not args.csv:
            name = config.offices[office].name
            table = ("\n" if i else "") + f"{name['ja']} / {name['en']} ({office})\n" + table
        elif len(offices) > 1 and i:
            table = table.split("\n", 1)[1]  # one CSV header
        sys.stdout.write(table)
    return 0


def _month(value: str) -> str:
    import re

    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise argparse.ArgumentTypeError(f"'{value}' is not a month like 2026-11")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="relay-server", description="Remote consultation counter relay.")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command")
    p_token = sub.add_parser("token", help="make a new terminal token and its hash line")
    p_token.add_argument("terminal")
    p_admin = sub.add_parser(
        "admin-hash", help="make an [[admin]] account for the fleet page (asks the password)"
    )
    p_admin.add_argument("user")
    p_report = sub.add_parser("report", help="monthly call report per department")
    p_report.add_argument("--config", required=True)
    p_report.add_argument("--month", required=True, type=_month)
    p_report.add_argument("--csv", action="store_true")
    p_report.add_argument("--office", help="only this [[office]] (default: every office, one table each)")
    if argv and argv[0] in ("token", "report", "admin-hash"):
        args = parser.parse_args(argv)
    else:
        run = argparse.ArgumentParser(
            prog="relay-server",
            description="Run the relay. Other commands: "
            "'relay-server token TERMINAL_ID', 'relay-server admin-hash USER', "
            "'relay-server report --config PATH --month YYYY-MM'.",
        )
        run.add_argument("--config", required=True)
        run.add_argument("--host")
        run.add_argument("--port", type=int)
        run.add_argument("--fleet-port", type=int, help="port of the fleet page, overriding [fleet] port")
        run.add_argument("--log-level", default="INFO")
        args = run.parse_args(argv)
        args.command = "run"
    setup_logging(args.log_level)
    try:
        return {"run": _run, "token": _token, "report": _report, "admin-hash": _admin_hash}[args.command](
            args
        )
    except ConfigError as err:
        print(f"relay-server: config error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
