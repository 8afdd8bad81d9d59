"""The fleet page wired to a running :class:`~relay_server.server.RelayServer`: routes, live updates, actions.

It watches the relay through ``RelayServer.observers`` (every batch of the core's actions), keeps a
:class:`~relay_server.admin.fleet.FleetState`, stores health and the audit log through
:class:`~relay_server.admin.store.FleetStore` on a worker thread, and serves the page with
:class:`~relay_server.admin.http.HttpServer` on its own port (``[fleet] host``/``port``; TLS when the relay has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any

from common import protocol
from common.logs import event
from relay_server.admin.auth import Auth, Session, Verdict
from relay_server.admin.charts import month_span, monthly_charts, report_csv
from relay_server.admin.fleet import FleetState
from relay_server.admin.http import BadRequest, HttpServer, Request, Response
from relay_server.admin.settings import verify_password
from relay_server.admin.store import AuditEntry, FleetStore
from relay_server.core import Action, CallRecord, Close, HealthReport, LogEvent, Send

if TYPE_CHECKING:
    from relay_server.server import RelayServer

log = logging.getLogger("relay.fleet")

COOKIE = "fleet_session"
PUSH_INTERVAL = 0.25  # a change reaches the page within this (plus the network)
REFRESH_INTERVAL = 5.0  # the page is refreshed at least this often (round-trip times, durations)
PUBLIC_FILES = {"login.html", "style.css", "login.js", "i18n.js"}
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
ACTIONS = ("lamp", "ring", "disconnect")
AUDIT_SHOWN = 30


class FleetListenError(OSError):
    """The fleet page could not listen on ``[fleet] host``/``port`` (``where``)."""

    def __init__(self, errno: int | None, strerror: str, where: str) -> None:
        super().__init__(errno, strerror)
        self.where = where


def _static(name: str) -> bytes:
    return (resources.files("relay_server.admin") / "static" / name).read_bytes()


class FleetService:
    def __init__(self, relay: RelayServer) -> None:
        self.relay = relay
        self.config = relay.config
        self.settings = relay.config.fleet
        self.auth = Auth(self.settings)
        self.state = FleetState(relay.config)
        self.store = FleetStore(relay.config.resolve(relay.config.database) or ":memory:")
        self._db = ThreadPoolExecutor(1, thread_name_prefix="fleetdb")
        self.tls = bool(relay.config.tls_cert)
        self.http: HttpServer | None = None
        self._listeners: set[asyncio.Queue[str]] = set()
        self._dirty = asyncio.Event()
        self._pusher: asyncio.Task[None] | None = None
        self._closing = False
        self._pending: set[asyncio.Future[Any]] = set()
        self.recent_audit: deque[AuditEntry] = deque(maxlen=AUDIT_SHOWN)  # newest first, as the page lists it

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.http is not None
        host = f"[{self.http.host}]" if ":" in self.http.host else self.http.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.http.port}/"

    async def start(self, host: str | None = None, port: int | None = None) -> FleetService:
        now = self.relay.clock()
        for tid, (at, health) in (await self._in_db(self.store.latest_health)).items():
            if tid in self.config.terminals:
                self.state.health[tid], self.state.health_at[tid] = health, at
        self.recent_audit.extend(await self._in_db(self.store.audit_log, AUDIT_SHOWN))
        self.state.seed_today(await self.relay.call_records(self.state.day_start(now), now + 1), now)
        ssl_ctx = None
        if self.tls:
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_ctx.load_cert_chain(
                self.config.resolve(self.config.tls_cert), self.config.resolve(self.config.tls_key)
            )
        host = host or self.settings.host
        port = self.settings.port if port is None else port
        try:
            self.http = await HttpServer(self.handle, ssl_ctx).start(host, port)
        except OSError as err:
            await self._in_db(self.store.close)
            self._db.shutdown()
            raise FleetListenError(err.errno, err.strerror or str(err), f"{host}:{port}") from err
        self.relay.observers.append(self.observe)
        self._pusher = asyncio.get_running_loop().create_task(self._push_loop())
        event(log, "fleet_page_started", url=self.url, admins=len(self.settings.admins))
        return self

    async def close(self) -> None:
        if self.observe in self.relay.observers:
            self.relay.observers.remove(self.observe)
        self._closing = True
        self._dirty.set()
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        if self.http is not None:
            await self.http.close()
        if self._pending:
            await asyncio.wait(self._pending, timeout=5)
        await self._in_db(self.store.close)
        self._db.shutdown()

    async def _in_db(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def _db_later(self, fn: Any, *args: Any) -> None:
        fut = asyncio.get_running_loop().run_in_executor(self._db, fn, *args)
        self._pending.add(fut)
        fut.add_done_callback(self._db_done)

    def _db_done(self, fut: asyncio.Future[Any]) -> None:
        self._pending.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            event(log, "fleet_store_write_failed", logging.ERROR, error=fut.exception())

    # -- following the relay -----------------------------------------------------------------
    def observe(self, actions: list[Action]) -> None:
        """Called by the relay after it carried out ``actions``."""
        now = self.relay.clock()
        for a in actions:
            if isinstance(a, LogEvent) and a.name == "terminal_connected":
                conn = self.relay.conns.get(a.fields["terminal"])
                peer = conn.ws.remote_address[0] if conn is not None and conn.ws.remote_address else ""
                self.state.connected(a.fields["terminal"], now, str(peer))
            elif isinstance(a, LogEvent) and a.name == "terminal_disconnected":
                self.state.disconnected(a.fields["terminal"], now)
            elif isinstance(a, HealthReport):
                changes = self.state.report(a.terminal, a.health, now)
                if changes:
                    self._db_later(self.store.save_health, a.terminal, now, a.health, changes)
                    for c in changes:
                        event(log, "terminal_health", terminal=c.terminal, what=c.what, old=c.old, new=c.new)
            elif isinstance(a, CallRecord):
                self.state.finished(a, now)
        self._dirty.set()

    def snapshot(self) -> dict[str, Any]:
        rtt = {
            tid: (round(c.ws.latency * 1000, 1) if c.ws.latency else None)
            for tid, c in self.relay.conns.items()
        }
        snap = self.state.snapshot(self.relay.core, self.relay.clock(), rtt)
        snap["audit"] = [e.__dict__ for e in self.recent_audit]
        return snap

    async def _push_loop(self) -> None:
        while not self._closing:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that races the wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_INTERVAL):
                    await self._dirty.wait()
            self._dirty.clear()
            if self._listeners:
                data = "event: state\ndata: " + json.dumps(self.snapshot(), ensure_ascii=False) + "\n\n"
                for q in self._listeners:
                    if q.full():
                        q.get_nowait()  # a slow page gets the newest state, not every state
                    q.put_nowait(data)
            await asyncio.sleep(PUSH_INTERVAL)

    # -- HTTP --------------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        resp = await self._route(req)
        if req.method == "GET" and resp.status is HTTPStatus.OK and resp.stream is None:
            resp.headers.append(("Vary", "Cookie"))
        return resp

    async def _route(self, req: Request) -> Response:
        now = time.time()
        path = req.path
        if path == "/login" and req.method == "GET":
            return Response(body=_static("login.html"), content_type=STATIC_TYPES[".html"])
        if path == "/login" and req.method == "POST":
            return await self._login(req, now)
        if path.startswith("/static/") and path[8:] in PUBLIC_FILES:
            return self._file(path[8:])
        session = self.auth.session(req.cookie(COOKIE), now)
        if session is None:
            if path.startswith("/api/"):
                return Response.json({"error": "login required"}, HTTPStatus.UNAUTHORIZED)
            return Response.redirect("/login")
        if req.method == "POST":
            return await self._post(session, req)
        if req.method != "GET":
            return Response.text(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
        return await self._get(session, req)

    async def _post(self, session: Session, req: Request) -> Response:
        """A logged-in POST: only with this origin and the session's CSRF token."""
        if not self._same_origin(req) or not self.auth.csrf_ok(
            session, req.headers.get("x-csrf-token") or req.form().get("csrf")
        ):
            return Response.json({"error": "missing or wrong CSRF token"}, HTTPStatus.FORBIDDEN)
        if req.path == "/logout":
            self.auth.logout(session.id)
            self._audit(session.user, req.peer, "logout", "", "ok")
            return Response.redirect("/login", [("Set-Cookie", self._cookie("", 0))])
        if req.path == "/api/action":
            return await self._action(session, req)
        return Response.text(HTTPStatus.NOT_FOUND, "not found")

    async def _get(self, session: Session, req: Request) -> Response:
        """A logged-in GET: the page, its files and its data."""
        path = req.path
        if path == "/":
            return self._file("fleet.html")
        if path.startswith("/static/"):
            return self._file(path[8:])
        if path == "/api/me":
            return Response.json({"user": session.user, "csrf": session.csrf})
        if path == "/api/state":
            return Response.json(self.snapshot())
        if path == "/api/events":
            return self._events(session)
        if path == "/api/charts":
            month = self._month(req)
            records = await self.relay.call_records(*month_span(self.config, month))
            return Response.json(monthly_charts(self.config, records, month))
        if path == "/api/report.csv":
            month = self._month(req)
            records = await self.relay.call_records(*month_span(self.config, month))
            return Response(
                body=report_csv(self.config, records, month).encode(),
                content_type="text/csv; charset=utf-8",
                headers=[("Content-Disposition", f'attachment; filename="calls-{month}.csv"')],
            )
        if path == "/api/audit":
            entries = await self._in_db(self.store.audit_log, 100)
            return Response.json([e.__dict__ for e in entries])
        if path == "/api/history":
            terminal = req.query.get("terminal", "")
            if terminal not in self.config.terminals:
                return Response.json({"error": f"no terminal '{terminal}'"}, HTTPStatus.NOT_FOUND)
            changes = await self._in_db(self.store.history, terminal, 50)
            return Response.json([c.__dict__ for c in changes])
        return Response.text(HTTPStatus.NOT_FOUND, "not found")

    def _file(self, name: str) -> Response:
        if "/" in name or name.startswith(".") or "." not in name:
            return Response.text(HTTPStatus.NOT_FOUND, "not found")
        try:
            body = _static(name)
        except (FileNotFoundError, IsADirectoryError):
            return Response.text(HTTPStatus.NOT_FOUND, "not found")
        return Response(
            body=body, content_type=STATIC_TYPES.get(name[name.rfind(".") :], "application/octet-stream")
        )

    def _month(self, req: Request) -> str:
        month = req.query.get("month") or datetime.fromtimestamp(time.time(), self.state.tz).strftime("%Y-%m")
        if (
            len(month) != 7
            or month[4] != "-"
            or not (month[:4] + month[5:]).isdigit()
            or not 1 <= int(month[5:]) <= 12
        ):
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"'{month}' is not a month like 2026-11")
        return month

    def _same_origin(self, req: Request) -> bool:
        origin = req.headers.get("origin")
        if origin is None:
            return True  # not a browser's cross-site request: browsers send Origin with every POST
        host = req.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")

    def _cookie(self, value: str, max_age: int) -> str:
        return f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict" + (
            "; Secure" if self.tls else ""
        )

    # -- login -------------------------------------------------------------------------------
    async def _login(self, req: Request, now: float) -> Response:
        if not self._same_origin(req):
            return Response.text(HTTPStatus.FORBIDDEN, "cross-site login refused")
        form = req.form()
        user, password = form.get("user", "")[:64], form.get("password", "")[:1024]
        verdict, stored = self.auth.before_check(user, req.peer, now)
        if verdict is None:
            matched = await asyncio.get_running_loop().run_in_executor(
                None, verify_password, password, stored
            )
            verdict, session = self.auth.after_check(user, req.peer, matched, time.time())
        else:
            session = None
        self._audit(user or "-", req.peer, "login", "", verdict.value)
        if verdict is Verdict.OK and session is not None:
            return Response.redirect("/", [("Set-Cookie", self._cookie(session.id, int(self.auth.lifetime)))])
        return Response.redirect(f"/login?error={verdict.value}")

    # -- live updates ------------------------------------------------------------------------
    def _events(self, session: Session) -> Response:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=2)
        queue.put_nowait("event: state\ndata: " + json.dumps(self.snapshot(), ensure_ascii=False) + "\n\n")

        async def stream() -> AsyncIterator[bytes]:
            self._listeners.add(queue)
            try:
                yield b"retry: 1000\n\n"
                while self.auth.session(session.id, time.time()) is not None and not self._closing:
                    try:
                        async with asyncio.timeout(15):
                            data = await queue.get()
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    yield data.encode()
                yield b"event: logout\ndata: {}\n\n"
            finally:
                self._listeners.discard(queue)

        return Response(content_type="text/event-stream; charset=utf-8", stream=stream())

    # -- actions -----------------------------------------------------------------------------
    async def _action(self, session: Session, req: Request) -> Response:
        body = req.json()
        if (
            not isinstance(body, dict)
            or body.get("action") not in ACTIONS
            or not isinstance(body.get("target"), str)
        ):
            return Response.json(
                {"error": f"expected {{action: {'|'.join(ACTIONS)}, target: ID}}"}, HTTPStatus.BAD_REQUEST
            )
        action, target = body["action"], body["target"]
        department = body.get("department")
        problem = self._refuse(action, target, department)
        what = f"{target}/{department}" if action == "lamp" else target
        if problem:
            self._audit(session.user, req.peer, action, what, "refused: " + problem)
            return Response.json({"ok": False, "error": problem}, HTTPStatus.CONFLICT)
        by = f"fleet:{session.user}"
        if action == "lamp":
            self.relay.inject(
                [
                    Send(
                        target,
                        {
                            "type": "lamp_test",
                            "by": by,
                            "departments": [department],
                            "seconds": protocol.LAMP_TEST_SECONDS,
                        },
                    )
                ]
            )
        elif action == "ring":
            self.relay.inject(
                [Send(target, {"type": "ring_test", "by": by, "seconds": protocol.RING_TEST_SECONDS})]
            )
        else:
            self.relay.inject(
                [Close(target, protocol.CLOSE_ADMIN, f"disconnected from the fleet page by {session.user}")]
            )
        self._audit(session.user, req.peer, action, what, "sent")
        event(log, "fleet_action", user=session.user, action=action, target=what)
        return Response.json({"ok": True})

    def _refuse(self, action: str, target: str, department: Any) -> str:
        """Why the action cannot be carried out, or ``""``."""
        t = self.config.terminals.get(target)
        if t is None:
            return f"no terminal '{target}'"
        if target not in self.relay.conns:
            return f"{target} is offline"
        if action == "lamp":
            if t.role not in ("lamp", "office"):
                return f"{target} has no lamp (role {t.role})"
            if department not in t.departments:
                return f"{target} does not watch department '{department}'"
        if action == "ring" and t.role != "office":
            return f"{target} is not a staff station"
        return ""

    def _audit(self, user: str, peer: str, action: str, target: str, result: str) -> None:
        entry = AuditEntry(time.time(), user, peer, action, target, result)
        self.recent_audit.appendleft(entry)
        self._db_later(self.store.audit, entry)
        self._dirty.set()
