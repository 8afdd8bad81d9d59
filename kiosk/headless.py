"""A staff station without a UI: answers incoming calls after a delay and streams its sources.

Used three ways:

* ``kiosk office --config config/office.toml --headless --auto-answer 2`` — a stand-in station for
  the demo, for ``kiosk call-test`` at installation time, and for benchmarks;
* :class:`HeadlessStation` in-process, from tests and the demo;
* as the reference for how a UI station wires relay client, local media and :class:`CallSession`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Self

from common import messages as msgs
from common.logs import event
from common.messages import ServerMessage, Welcome
from kiosk.cli import CameraOverrides, add_camera_arguments, link_problem
from kiosk.client import LINK_UP, NotConnected, RelayClient
from kiosk.config import ConfigError, TerminalConfig, load_terminal_config
from kiosk.health import HealthReporter, device_states
from kiosk.video.ice import IceConfigError, restrict_ice_addresses
from kiosk.video.local_media import LocalMedia, open_local_media
from kiosk.video.membership import resume_message
from kiosk.video.session import CallSession, EventKind, SessionEvent, SessionState
from kiosk.video.turnprobe import IcePathBook

__all__ = ["HeadlessCounter", "HeadlessStation", "HeadlessTerminal", "main"]

log = logging.getLogger(__name__)


class HeadlessTerminal:
    """What the headless station and counter share: the config, sources (own or lent), the relay link.

    Args:
        config: a terminal config with media sections (the subclass checks).
        url: relay URL overriding ``[relay] url``.
        local: already opened sources (default: opened from ``config.media`` at :meth:`start`, and
            closed at ``close``).
    """

    role = ""  # ``office`` or ``counter``

    def __init__(self, config: TerminalConfig, *, url: str | None, local: LocalMedia | None) -> None:
        self.config = config
        self.url = url or config.relay.url
        self._own_local = local is None
        self.local = local
        self.client: RelayClient | None = None
        self.session: CallSession | None = None
        self.health: HealthReporter | None = None
        self.ring_tests: list[
            msgs.RingTest
        ] = []  # 'ring_test' messages from the fleet page (no bell to ring)
        # The TURN paths, probed at each welcome (start-up, and whenever the relay link comes back).
        self.paths = IcePathBook(ca_file=config.relay.ca_file or None)
        self._departments: dict[str, str] = {}  # call id → its department (for 'resume'), the latest calls

    async def start(self) -> Self:
        """Restrict ICE to the configured addresses, open sources, connect to the relay."""
        assert self.config.media is not None
        restrict_ice_addresses(self.config.media.network.ice_addresses)
        if self.local is None:
            self.local = open_local_media(self.config.media, document=self.role == "counter")
        self.client = RelayClient.for_link(
            self.config.relay,
            url=self.url,
            on_message=self._on_message,
            on_link=self._link,
            client_name=f"kiosk-{self.role}-headless",
        )
        audio_output = self.config.media.audio.output
        self.health = HealthReporter(
            lambda: device_states(local=self.local, audio_output=audio_output),
            self.client.send,
            session=lambda: self.session,
        )
        self.health.start()
        self.client.start()
        return self

    async def wait_up(self, timeout: float = 10.0) -> Welcome:
        """Wait until the relay has welcomed this terminal."""
        assert self.client is not None, "start() first"
        return await self.client.wait_up(timeout)

    async def close(self) -> None:
        """Disconnect and close own sources (subclasses end their call first)."""
        if self.health is not None:
            await self.health.close()
        if self.client is not None:
            await self.client.close()
        if self._own_local and self.local is not None:
            self.local.close()
            self.local = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_message(self, msg: ServerMessage) -> None:
        if msg["type"] == "ring_test":
            self.ring_tests.append(msg)
            event(log, "ring_test", by=msg["by"], seconds=msg["seconds"], bell="none")
        if msg["type"] == "ringing" or msg["type"] == "incoming" or msg["type"] == "call_state":
            self._departments[msg["call"]] = msg["department"]
            while len(self._departments) > 32:
                del self._departments[next(iter(self._departments))]
        if msg["type"] == "welcome":
            await self._resume()
        if self.session is not None:
            await self.session.on_message(msg)

    async def _resume(self) -> None:
        """Welcomed (again) in the middle of a call: vouch for it, so a relay restarted under it re-creates it."""
        s = self.session
        if s is None or s.state is not SessionState.ACTIVE or s.call_id is None or s.counter_id is None:
            return
        resume = resume_message(
            s.terminal_id, s.call_id, self._departments.get(s.call_id, ""), s.counter_id, s.order
        )
        if resume is None or self.client is None:
            return
        try:
            await self.client.send(resume)
        except NotConnected as err:
            event(log, "resume_not_sent", logging.WARNING, call=s.call_id, problem=err)

    async def _link(self, state: str, detail: str) -> None:
        if self.health is not None:
            self.health.on_link(state)
        await self._on_link(state, detail)

    async def _on_link(self, state: str, detail: str) -> None:
        """Link changes: a fresh welcome brings ICE servers (new credentials) and may mean a new network."""
        if state == LINK_UP and self.client is not None and self.client.welcome:
            self.paths.set_servers(self.client.welcome["ice_servers"])
            self.paths.refresh()

    def new_session(
        self, terminal: str, call_id: str | None = None, on_event: Callable[[SessionEvent], Any] | None = None
    ) -> CallSession:
        """A call session with this terminal's sources, relay link, probed paths and [network] settings."""
        assert self.client is not None and self.local is not None and self.config.media is not None
        net = self.config.media.network
        client = self.client

        async def check_link_after(result: Any) -> None:
            if inspect.isawaitable(result):
                await result
            await client.check_link()

        def events(ev: SessionEvent) -> Any:
            result = on_event(ev) if on_event is not None else None
            # Media stopped: the same outage may have killed the relay link silently; check it now, not after
            # the keepalive, since rebuilding the media needs the relay.
            return check_link_after(result) if ev.kind is EventKind.RECONNECTING else result

        return CallSession(
            terminal,
            self.role,
            self.local,
            self.client.send,
            call_id=call_id,
            ice_servers=self.client.welcome["ice_servers"] if self.client.welcome else None,
            codec=net.codec,
            audio_output=self.config.media.audio.output,
            on_event=events,
            paths=self.paths,
            reconnect_window=net.reconnect_window,
        )


class HeadlessStation(HeadlessTerminal):
    """A staff station with no UI, driven by the relay.

    Args:
        config: an ``office`` terminal config (relay link, camera, audio, network).
        auto_answer: seconds after ``incoming`` to answer; ``None`` = never answer by itself.
        url: relay URL overriding ``[relay] url``.
        local: already opened sources (default: opened from ``config.media`` at :meth:`start`,
            and closed at :meth:`close`).
        on_event: called with every session event, for tools that report.
        out: where one-line status reports go (``print`` for the CLI; None = only the log).
    """

    role = "office"

    def __init__(
        self,
        config: TerminalConfig,
        *,
        auto_answer: float | None = 0.0,
        url: str | None = None,
        local: LocalMedia | None = None,
        on_event: Callable[[SessionEvent], Any] | None = None,
        out: Callable[[str], Any] | None = None,
    ) -> None:
        if config.media is None:
            raise ConfigError(f"{config.path}: an office terminal config needs media sections")
        super().__init__(config, url=url, local=local)
        self.auto_answer = auto_answer
        self.on_event = on_event
        self.out = out
        self.terminal_id: str | None = None
        self.sessions: list[CallSession] = []
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._ready_reported = False
        self._link_said = ""  # the last link line said, so that a retry loop does not repeat it
        self._ringing: set[str] = set()  # calls that rang here and are not yet answered, taken or ended

    # -- lifecycle -------------------------------------------------------------------------------
    async def close(self) -> None:
        """Hang up a call in progress, disconnect, close own sources."""
        for task in self._pending.values():
            task.cancel()
        self._pending.clear()
        if self.session is not None and self.session.state is not SessionState.ENDED:
            await self.session.hangup()
        if self.session is not None:
            await self.session.close()
        await super().close()

    # -- actions ---------------------------------------------------------------------------------
    @property
    def in_call(self) -> bool:
        return self.session is not None and self.session.state is not SessionState.ENDED

    async def answer(self, call_id: str) -> CallSession:
        """Answer ``call_id`` now and return its session."""
        assert self.client is not None and self.local is not None and self.config.media is not None
        if self.in_call:
            raise RuntimeError(
                f"{self.terminal_id} is already in call {self.session and self.session.call_id}"
            )
        welcome = self.client.welcome
        session = self.new_session(
            self.terminal_id or (welcome["terminal"] if welcome else "?"), call_id, self._session_event
        )
        self.session = session
        self.sessions.append(session)
        self._ringing.discard(call_id)
        await self.client.send({"type": "answer", "call": call_id})
        self._say(f"answered call {call_id}")
        return session

    async def invite(self, *, terminal: str | None = None, department: str | None = None) -> None:
        """Invite a colleague (a station or a department) into the current call."""
        assert self.client is not None
        if self.session is None or not self.in_call or self.session.call_id is None:
            raise RuntimeError(f"{self.terminal_id} is not in a call; nothing to invite into")
        msg: dict[str, Any] = {"type": "invite", "call": self.session.call_id}
        msg.update({"terminal": terminal} if terminal else {"department": department})
        await self.client.send(msg)

    # -- relay events ----------------------------------------------------------------------------
    async def _on_link(self, state: str, detail: str) -> None:
        await super()._on_link(state, detail)
        if state == LINK_UP and self.client is not None and self.client.welcome:
            self.terminal_id = self.client.welcome.get("terminal")
            if not self._ready_reported:
                self._ready_reported = True
                media = self.config.media
                camera = media.camera.source if media is not None and media.camera is not None else "none"
                self._say(f"ready: {self.terminal_id} connected to {self.url}; camera {camera}")
            elif self._link_said:
                self._say(f"relay link up again: {self.terminal_id} connected to {self.url}")
            self._link_said = ""
            return
        problem = link_problem(state, detail, self.url)
        if problem is not None and problem != self._link_said:
            self._link_said = problem
            self._say(f"relay link {state}: {problem}")
        event(log, "relay_link", logging.DEBUG, state=state, detail=detail)

    async def _on_message(self, msg: ServerMessage) -> None:
        self._report_call_message(msg)
        if msg["type"] == "incoming":
            call = msg["call"]
            if self.in_call or self.auto_answer is None or call in self._pending:
                return
            self._pending[call] = asyncio.get_running_loop().create_task(self._answer_later(call))
            return
        if (msg["type"] == "taken" or msg["type"] == "ended") and msg["call"] in self._pending:
            self._pending.pop(msg["call"]).cancel()
        if (
            msg["type"] == "error"
            and msg.get("ref") == "answer"
            and self.session is not None
            and self.session.state is SessionState.WAITING
        ):
            self._say(f"answer failed: {msg['code']}: {msg['message']}")
            await self.session.close()
            return
        await super()._on_message(msg)

    def _report_call_message(self, msg: ServerMessage) -> None:
        """One line for every call that rings here, is taken by a colleague, or ends before anyone answered."""
        if msg["type"] == "incoming" and msg["call"] not in self._ringing:
            call = msg["call"]
            self._ringing.add(call)
            who = msg.get("from_name") or msg["from"]
            invited = f", invited by {msg['invited_by']}" if msg.get("invited_by") else ""
            self._say(f"ringing: call {call} for {msg['department']} from {who}{invited}")
        elif msg["type"] == "taken" and msg["call"] in self._ringing:
            self._ringing.discard(msg["call"])
            self._say(f"call {msg['call']} taken by {msg['by']}")
        elif msg["type"] == "ended" and msg["call"] in self._ringing:
            call = msg["call"]
            self._ringing.discard(call)
            if self.session is None or self.session.call_id != call:
                self._say(f"call {call} ended before it was answered here: {msg['reason']}")

    async def _answer_later(self, call: str) -> None:
        try:
            await asyncio.sleep(self.auto_answer or 0.0)
            if not self.in_call:
                await self.answer(call)
        finally:
            self._pending.pop(call, None)

    def _session_event(self, event: SessionEvent) -> None:
        if event.kind is EventKind.ENDED:
            call = self.session.call_id if self.session is not None else "?"
            self._say(f"call {call} ended: {event.reason}")
        elif event.kind is EventKind.CONNECTION_STATE and event.state in ("connected", "failed"):
            self._say(f"media to {event.member}: {event.state}")
        if self.on_event is not None:
            self.on_event(event)

    def _say(self, text: str) -> None:
        event(log, "station", line=text)
        if self.out is not None:
            self.out(text)


class HeadlessCounter(HeadlessTerminal):
    """A counter kiosk with no UI: places calls and streams camera, document camera and audio.

    For tests, the demo, the station's screenshot scenes and benchmarks (``kiosk call-test`` is its
    one-shot, reporting cousin).

    Args:
        config: a ``counter`` terminal config.
        url: relay URL overriding ``[relay] url``.
        local: already opened sources (default: opened from the config at :meth:`start`).
        on_event: called with every session event.
    """

    role = "counter"

    def __init__(
        self,
        config: TerminalConfig,
        *,
        url: str | None = None,
        local: LocalMedia | None = None,
        on_event: Callable[[SessionEvent], Any] | None = None,
    ) -> None:
        if config.media is None:
            raise ConfigError(f"{config.path}: a counter terminal config needs media sections")
        super().__init__(config, url=url, local=local)
        self.on_event = on_event
        self._replies: asyncio.Queue[msgs.Ringing | msgs.Error] = asyncio.Queue()

    @property
    def terminal(self) -> str:
        """This counter's terminal id (from the relay's ``welcome``; empty before it)."""
        welcome = self.client.welcome if self.client is not None else None
        return welcome["terminal"] if welcome else ""

    async def call(self, department: str, timeout: float = 10.0) -> CallSession:
        """Call ``department``; returns the session once the call rings (media starts on answer).

        Raises:
            RuntimeError: the relay refused the call (the message carries its error code) or did not reply.
        """
        await self.place_call(department, timeout)
        assert self.session is not None
        return self.session

    async def place_call(self, department: str, timeout: float = 10.0) -> str:
        """Call ``department``; returns the call id once it rings (:attr:`session` is the call's session).

        Raises:
            RuntimeError: the relay refused the call (the message carries its error code) or did not reply.
        """
        assert self.client is not None and self.local is not None and self.config.media is not None
        welcome = await self.wait_up(timeout)
        if self.session is not None and self.session.state is not SessionState.ENDED:
            raise RuntimeError(f"counter {welcome['terminal']} is already in call {self.session.call_id}")
        session = self.new_session(welcome["terminal"], on_event=self.on_event)
        while not self._replies.empty():
            self._replies.get_nowait()
        self.session = session
        await self.client.send({"type": "call", "department": department})
        try:
            reply = await asyncio.wait_for(self._replies.get(), timeout)
        except TimeoutError:
            raise RuntimeError(f"no reply to 'call' for {department} within {timeout} s") from None
        if reply["type"] == "error":
            await session.close()
            raise RuntimeError(f"call to {department} refused: {reply['code']}: {reply['message']}")
        return reply["call"]

    async def end(self) -> None:
        """Hang up the call in progress, or cancel one that still rings; the relay link stays up.

        :attr:`session` stays readable, ended, until the next call.
        """
        session = self.session
        if session is None:
            return
        if session.state is SessionState.WAITING and session.call_id and self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.send({"type": "cancel", "call": session.call_id})
        else:
            await session.hangup()
        await session.close()

    async def close(self) -> None:
        """Hang up a call in progress, disconnect, close own sources."""
        try:
            await self.end()
        finally:
            await super().close()

    async def _on_message(self, msg: ServerMessage) -> None:
        if msg["type"] == "ringing" or (msg["type"] == "error" and msg.get("ref") == "call"):
            self._replies.put_nowait(msg)
        await super()._on_message(msg)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kiosk office --headless",
        description="A staff station without a UI: prints one line per link change and "
        "per call that rings, is answered, taken or ends; answers by itself "
        "with --auto-answer.",
    )
    p.add_argument("--config", default="config/office.toml", help="office terminal config (TOML)")
    p.add_argument("--headless", action="store_true", help="no UI (this module always runs headless)")
    p.add_argument(
        "--auto-answer",
        type=float,
        default=None,
        metavar="SECONDS",
        help="answer incoming calls after this many seconds (default: never)",
    )
    p.add_argument("--url", default=None, help="relay URL, overriding [relay] url from the config")
    add_camera_arguments(p, document=False)
    p.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING)")
    return p


async def run(args: argparse.Namespace) -> int:
    """Run a headless station until SIGINT/SIGTERM."""
    try:
        config = CameraOverrides.from_args(args).apply(load_terminal_config(args.config, "office"))
    except (ConfigError, OSError) as err:
        print(f"kiosk office: {err}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    def out(text: str) -> None:
        print(text, flush=True)

    try:
        station = HeadlessStation(config, auto_answer=args.auto_answer, url=args.url, out=out)
        async with station:
            await stop.wait()
    except (IceConfigError, ConfigError) as err:
        print(f"kiosk office: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str]) -> int:
    """``kiosk office --headless ...``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(run(args))
