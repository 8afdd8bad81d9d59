"""TerminalApp: what the counter kiosk and the staff station apps share.

Both apps are the same kind of composition: a relay client feeds a pure state machine
(:mod:`kiosk.counter_state` or :mod:`kiosk.office_state`), and the commands the machine returns are
carried out here. This base owns the wiring that is the same for both:

* the relay client for ``[relay]`` and its two callbacks (messages go to the media session first, then
  to the machine; link changes become :class:`~kiosk.machine.LinkChanged`);
* :meth:`TerminalApp.dispatch_event` (event → machine → commands → screens refreshed) and the commands
  of :mod:`kiosk.machine` (send, timers with their deadlines, ring tone);
* the call session's life: opening a :class:`~kiosk.video.session.CallSession` from the config and the
  welcome, muting, closing it (hang up, leave or close);
* background tasks, SIGTERM/SIGINT and :meth:`TerminalApp.aclose`.

Subclasses set :attr:`TerminalApp.role`, build their screens, carry out their own commands in
``_execute`` (falling back to this class) and project the machine onto the screens in ``_refresh``.
"""

from __future__ import annotations

from kiosk.ui.env import prepare_kivy_env

prepare_kivy_env()  # before Kivy is imported: no argv parsing, no ~/.kivy, offscreen without a display

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Coroutine  # noqa: E402
from enum import Enum  # noqa: E402
from typing import Any, Protocol  # noqa: E402

from kivy.properties import BooleanProperty, ObjectProperty  # noqa: E402

from common.logs import event as log_event  # noqa: E402
from common.messages import ServerMessage  # noqa: E402
from kiosk.cli import link_problem  # noqa: E402
from kiosk.client import NotConnected, RelayClient  # noqa: E402
from kiosk.config import TerminalConfig  # noqa: E402
from kiosk.health import HealthReporter, device_states  # noqa: E402
from kiosk.machine import (  # noqa: E402
    CancelTimer,
    Command,
    Event,
    LinkChanged,
    RelayMessage,
    Ring,
    Send,
    StartTimer,
    TimerFired,
)
from kiosk.ui.app import KioskApp  # noqa: E402
from kiosk.ui.sound import RingTone  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["StateMachine", "TerminalApp"]


class StateMachine(Protocol):
    """What the app needs of a terminal's state machine."""

    @property
    def state(self) -> Enum: ...

    @property
    def terminal(self) -> str: ...

    def handle(self, event: Event) -> list[Command]: ...


class TerminalApp(KioskApp):
    """Base of the counter and staff station apps.

    Args:
        config: the terminal config.
        url: relay URL overriding ``[relay] url``.
        local_media: already opened sources (default: the subclass opens them from ``config.media`` at
            start; the app closes only what it opened).
        tables: translation tables of the app's screens.
    """

    role = ""  # ``counter`` or ``office``: the CallSession role and the relay client's name

    ringing = BooleanProperty(False)
    mic_muted = BooleanProperty(False)
    session = ObjectProperty(None, allownone=True)

    machine: StateMachine

    def __init__(
        self,
        config: TerminalConfig,
        *,
        url: str | None,
        local_media: Any,
        tables: tuple[str, ...],
        **kwargs: Any,
    ) -> None:
        super().__init__(config.ui, tables=tables, **kwargs)
        self.config_file = config
        self._url_override = url
        self.url = url or config.relay.url
        self.client: RelayClient | None = None
        self.local: Any = local_media
        self._own_local = local_media is None
        self.ring = RingTone(enabled=config.ui.ring_sound)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._deadlines: dict[str, float] = {}  # timer name → time.monotonic() when it fires
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: Any = None
        self._closed = False
        self._link_logged = ""  # the last link problem logged, so that each retry does not log it again
        self.health: HealthReporter | None = None  # started with the first link change

    # -- lifecycle -----------------------------------------------------------------------------
    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    async def aclose(self) -> None:
        """Close everything the app opened: call session (hanging up), relay link, devices, sources, timers."""
        if self._closed:
            return
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        await self._stop_media("hangup")
        if self.health is not None:
            await self.health.close()
        if self.client is not None:
            await self.client.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._close_devices()
        if self._own_local and self.local is not None:
            self.local.close()
            self.local = None
        self.ring.close()

    async def _close_devices(self) -> None:
        """Close the app's own devices (before the sources); nothing here."""

    async def run_until_stopped(self) -> int:
        """Run until the app stops (window closed, technician exit, SIGTERM); close everything; exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        try:
            await self.async_run(async_lib="asyncio")
        finally:
            await self.aclose()
        return 0

    # -- relay link ----------------------------------------------------------------------------
    def _new_client(self) -> RelayClient:
        """A relay client for ``[relay]`` (token, CA file for wss://) at :attr:`url`."""
        return RelayClient.for_link(
            self.config_file.relay,
            url=self.url,
            on_message=self._on_relay_message,
            on_link=self._on_link,
            client_name=f"kiosk {self.role}",
        )

    async def _on_relay_message(self, msg: ServerMessage) -> None:
        """One relay message, validated on arrival by the relay client: to the session, then to the machine."""
        if msg["type"] == "ring_test":
            self._ring_test(float(msg["seconds"]))
            return
        if self.session is not None:
            await self.session.on_message(msg)
        self.dispatch_event(RelayMessage(msg))

    async def _on_link(self, state: str, detail: str) -> None:
        problem = link_problem(state, detail, self.url)
        if problem is not None and problem != self._link_logged:
            log_event(log, "relay_link_problem", logging.WARNING, state=state, problem=problem)
        elif state == "up" and self._link_logged:
            log_event(log, "relay_link_up_again", logging.WARNING, url=self.url)
        if problem is not None or state == "up":
            self._link_logged = problem or ""
        if self.health is None:
            self.health = HealthReporter(
                self._health_devices, self._send_health, session=lambda: self.session
            )
            self.health.start()
        self.health.on_link(state)
        if state == "up" and self.client is not None and self.client.welcome:
            # Each welcome brings fresh TURN credentials and may follow a network change: probe the paths.
            with contextlib.suppress(Exception):
                paths = self._ice_paths()
                paths.set_servers(self.client.welcome["ice_servers"])
                paths.refresh()
        self.dispatch_event(LinkChanged(state, detail))

    def _ice_paths(self) -> Any:
        """This terminal's :class:`~kiosk.video.turnprobe.IcePathBook` (made on first use: it imports aiortc)."""
        book = getattr(self, "_paths_book", None)
        if book is None:
            from kiosk.video.turnprobe import IcePathBook

            book = self._paths_book = IcePathBook(ca_file=self.config_file.relay.ca_file or None)
        return book

    # -- health (docs/protocol.md, "Health") and the fleet page's test ring ----------------------------
    def _health_devices(self) -> dict[str, Any]:
        media = self.config_file.media
        lamp = getattr(self, "lamp", None)  # a station that drives the office lamp itself
        return device_states(
            local=self.local,
            audio_output=media.audio.output if media else "null",
            lamp_device=getattr(lamp, "device", None),
        )

    async def _send_health(self, msg: dict[str, Any]) -> None:
        if self.client is None:
            raise NotConnected("no relay client")
        await self.client.send(msg)

    def _ring_test(self, seconds: float) -> None:
        """Ring for ``seconds`` so someone at the office hears the bell; never over a real ring or call."""
        if self.ringing or self.session is not None:
            return
        self.ring.play()

        def stop() -> None:
            if not self.ringing:
                self.ring.stop()

        asyncio.get_running_loop().call_later(seconds, stop)

    # -- the machine ---------------------------------------------------------------------------
    def dispatch_event(self, event: Event) -> None:
        """Feed the state machine and carry out its commands; then refresh the screens."""
        try:
            commands = self.machine.handle(event)
        except Exception:
            log_event(
                log,
                "machine_failed",
                logging.ERROR,
                exc_info=True,
                role=self.role,
                on=event,
                state=self.machine.state.name,
            )
            return
        self._run(commands)

    def _run(self, commands: list[Command]) -> None:
        for cmd in commands:
            try:
                self._execute(cmd)
            except Exception:
                log_event(log, "command_failed", logging.ERROR, exc_info=True, command=cmd)
        if not self.stopping:  # a link or relay event while stopping: no screen to draw on any more
            self._refresh()

    def _refresh(self) -> None:
        """Project the machine's state onto the screens (subclasses)."""

    def _execute(self, cmd: Command) -> None:
        """Carry out the commands both machines return; subclasses handle their own first."""
        if isinstance(cmd, Send):
            self._spawn(self._send(cmd.msg))
        elif isinstance(cmd, StartTimer):
            self._start_timer(cmd.name, cmd.seconds)
        elif isinstance(cmd, CancelTimer):
            handle = self._timers.pop(cmd.name, None)
            if handle is not None:
                handle.cancel()
            self._deadlines.pop(cmd.name, None)
        elif isinstance(cmd, Ring):
            self.ringing = cmd.on
            if cmd.on:
                self.ring.play()
            else:
                self.ring.stop()
        else:
            raise TypeError(f"unknown command {cmd!r}")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, msg: dict[str, Any]) -> None:
        if self.client is None:
            self._send_failed(msg, "no relay client")
            return
        try:
            await self.client.send(msg)
        except NotConnected as err:
            log_event(log, "send_failed", logging.WARNING, type=msg["type"], problem=err)
            self._send_failed(msg, str(err))

    def _send_failed(self, msg: dict[str, Any], detail: str) -> None:
        """A message could not go out (the machine of the station does not need to know)."""

    def _start_timer(self, name: str, seconds: float) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._timers[name] = asyncio.get_running_loop().call_later(seconds, self._timer_fired, name)
        self._deadlines[name] = time.monotonic() + seconds

    def _timer_fired(self, name: str) -> None:
        self._timers.pop(name, None)
        self._deadlines.pop(name, None)
        self.dispatch_event(TimerFired(name))

    # -- the call session ----------------------------------------------------------------------
    def toggle_mute(self) -> None:
        self.mic_muted = not self.mic_muted
        if self.session is not None:
            self.session.set_mic_muted(self.mic_muted)

    def _open_session(self, call_id: str, on_event: Callable[[Any], None]) -> bool:
        """Make :attr:`session` the media session of ``call_id``, unmuted; False without sources or relay."""
        if self.local is None or self.client is None:
            log_event(
                log, "no_local_media", logging.ERROR, call=call_id, effect="call continues without video"
            )
            return False
        from kiosk.video.session import CallSession, EventKind

        media = self.config_file.media
        welcome = self.client.welcome
        self.mic_muted = False
        paths = self._ice_paths()
        paths.set_servers(welcome["ice_servers"] if welcome else [])
        client = self.client

        def events(ev: Any) -> Any:
            on_event(ev)
            # Media stopped: the same outage may have killed the relay link silently; check it now, not after
            # the keepalive, since rebuilding the media needs the relay.
            return client.check_link() if ev.kind is EventKind.RECONNECTING else None

        self.session = CallSession(
            self.machine.terminal,
            self.role,
            self.local,
            self.client.send,
            call_id=call_id,
            ice_servers=welcome["ice_servers"] if welcome else [],
            codec=media.network.codec if media else "vp8",
            audio_output=media.audio.output if media else "null",
            on_event=events,
            paths=paths,
            reconnect_window=media.network.reconnect_window if media else 30.0,
        )
        return True

    async def _stop_media(self, how: str) -> None:
        """Close the media session: ``hangup`` ends the call for everyone, ``leave`` leaves it, ``close`` only
        closes this side."""
        session, self.session = self.session, None
        await self._close_session(session, how)

    @staticmethod
    async def _close_session(session: Any, how: str) -> None:
        """End ``session`` (taken off :attr:`session` already) the way :meth:`_stop_media` says."""
        if session is None:
            return
        with contextlib.suppress(Exception):
            if how == "hangup":
                await session.hangup()
            elif how == "leave":
                await session.leave()
            await session.close()
