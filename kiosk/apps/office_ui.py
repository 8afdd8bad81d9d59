"""``kiosk office``: the staff station with its Kivy UI (``--headless`` runs :mod:`kiosk.headless` instead).

One asyncio loop runs Kivy (``App.async_run``), the relay client, aiortc and, when the config has a
``[lamp]`` section, the lamp. The app is a thin composition: relay messages, link changes, touches,
media events and timers become events for the pure :class:`~kiosk.office_state.OfficeMachine`; the
commands it returns are carried out here (send, ring, timers and the call session's wiring come from
:class:`~kiosk.apps.terminal.TerminalApp`, shared with the counter kiosk); screens show the machine's state.
Sub-views of a call (papers full screen, still viewer, invite picker) are the UI's own business and not
states of the machine.

Run in-process (tests, ``scripts/screenshots``)::

    configure_window(1280, 800)            # kiosk.ui.env, before the first window
    app = OfficeApp(config, url=relay_url)
    async with running_app(app) as ui:     # kiosk.ui.driver
        await ui.tap(app.screen("waiting").card(call_id).ids.answer)
    await app.aclose()
"""

from __future__ import annotations

from kiosk.ui.env import prepare_kivy_env

prepare_kivy_env()  # before Kivy is imported: no argv parsing, no ~/.kivy, offscreen without a display

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from kivy.clock import Clock  # noqa: E402
from kivy.properties import (  # noqa: E402
    BooleanProperty,
    NumericProperty,
    StringProperty,
)
from kivy.uix.screenmanager import NoTransition, ScreenManager  # noqa: E402

from common.logs import event  # noqa: E402
from common.messages import ServerMessage  # noqa: E402
from kiosk.apps.office_assist import OfficeAssistMixin  # noqa: E402
from kiosk.apps.office_texts import OfficeTextsMixin  # noqa: E402
from kiosk.apps.terminal import TerminalApp  # noqa: E402
from kiosk.cli import CameraOverrides, add_camera_arguments, link_problem  # noqa: E402
from kiosk.config import ConfigError, TerminalConfig, load_terminal_config  # noqa: E402
from kiosk.office_state import (  # noqa: E402
    AnswerPressed,
    AwayToggled,
    Command,
    DeclinePressed,
    HangUpPressed,
    InvitePressed,
    LeavePressed,
    MediaEnded,
    OfficeMachine,
    Send,
    StartMedia,
    State,
    StopMedia,
)
from kiosk.screens.office import (  # noqa: E402
    OFFICE_SCREENS,
    ROTATIONS,
    CallFrames,
    OfficeScreen,
    create_office_screen,
    load_office_kv,
)
from kiosk.ui.env import configure_window, restore_std_streams  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["OfficeApp", "build_parser", "main"]

NOTICE_SHOWN_S = 20.0  # a notice ("taken by …", "the call has ended") fades after this
STILL_TIMEOUT_S = 30.0
CALL_VIEWS = ("in_call", "document", "still", "invite", "assist")


class OfficeApp(OfficeTextsMixin, OfficeAssistMixin, TerminalApp):
    """The staff station.

    Args:
        config: an ``office`` terminal config.
        url: relay URL overriding ``[relay] url``.
        local_media: already opened sources (default: opened from ``config.media`` at start; the app
            closes only what it opened).
        lamp_device: a ready-made lamp device for the embedded lamp (tests); default from ``[lamp]``.
        taken_shown: seconds a call taken by a colleague stays listed.
    """

    role = "office"

    # What the kv files show: a projection of the machine plus the UI's own bits (plus ``ringing``,
    # ``mic_muted`` and ``session`` from TerminalApp).
    state_name = StringProperty("connecting")
    view = StringProperty("in_call")
    away = BooleanProperty(False)
    link_ok = BooleanProperty(False)
    ever_up = BooleanProperty(False)
    link_problem_state = StringProperty("")  # down or unauthorized until the link is up again ("" otherwise)
    link_problem = StringProperty("")  # the technician's line for it (kiosk.cli.link_problem)
    ringing_count = NumericProperty(0)
    missed_count = NumericProperty(0)
    notice_text = StringProperty("")
    call_notice = StringProperty("")
    tick = NumericProperty(0.0)
    version = NumericProperty(0)
    big = StringProperty("camera")
    doc_rotation = NumericProperty(0)
    can_leave = BooleanProperty(False)
    still_busy = BooleanProperty(False)

    machine: OfficeMachine

    def __init__(
        self,
        config: TerminalConfig,
        *,
        url: str | None = None,
        local_media: Any = None,
        lamp_device: Any = None,
        taken_shown: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, url=url, local_media=local_media, tables=("office",), **kwargs)
        self.title = "Remote consultation: staff station"
        self.machine = OfficeMachine() if taken_shown is None else OfficeMachine(taken_shown=taken_shown)
        self.lamp: Any = None
        self._lamp_device = lamp_device
        self.screens: dict[str, OfficeScreen] = {}
        self.manager: ScreenManager | None = None
        self.still: Any = None  # the Still shown in the viewer (memory only, wiped at call end)
        self._still_pixels: np.ndarray | None = None
        self._notice_at = 0.0
        self.events: list[str] = []  # screen names in order (tests, diagnostics)
        self.received: list[str] = []  # types of the latest relay messages (tests, diagnostics)
        counter = self._counter_id
        self.frames = {
            "camera": CallFrames(lambda: self.session, counter, "camera"),
            "document": CallFrames(lambda: self.session, counter, "document", lambda: int(self.doc_rotation)),
        }

    def _counter_id(self) -> str:
        call = self.machine.call
        if call is not None:
            return call.counter
        entry = self.machine.ringing.get(self.machine.answering or "")
        return entry.counter if entry is not None else ""

    # -- Kivy lifecycle ------------------------------------------------------------------------
    def build(self) -> ScreenManager:
        self.setup_ui()
        load_office_kv()
        self.manager = ScreenManager(transition=NoTransition())
        for name in OFFICE_SCREENS:
            screen = create_office_screen(name)
            self.screens[name] = screen
            self.manager.add_widget(screen)
        self.manager.current = "waiting"
        call = self.screens["in_call"]
        call.ids.big_view.sink = self.frames["camera"]
        call.ids.small_tile.source = self.frames["document"]
        self.screens["document"].ids.doc_view.sink = self.frames["document"]
        self.screens["invite"].ids.call_view.sink = self.frames["camera"]  # the resident stays in view
        self.bind(lang=lambda *_: self._refresh())  # rows built in Python follow a language switch
        return self.manager

    def on_start(self) -> None:
        media = self.config_file.media
        if media is not None:
            from kiosk.video.ice import restrict_ice_addresses

            restrict_ice_addresses(media.network.ice_addresses)
            if self.local is None:
                from kiosk.video.local_media import open_local_media

                try:
                    self.local = open_local_media(media, document=False)
                except Exception as err:
                    event(log, "local_media_failed", logging.ERROR, problem=err)
        if self.config_file.lamp is not None:
            from kiosk.lamp_agent import LampController

            self.lamp = LampController(self.config_file.lamp, device=self._lamp_device)
            self.lamp.start()
        self.client = self._new_client()
        self.client.start()
        self._ticker = Clock.schedule_interval(self._tick, 0.5)
        self._refresh()

    async def _close_devices(self) -> None:
        """The embedded lamp goes off and closes (TerminalApp.aclose has ended the call first)."""
        if self.lamp is not None:
            await self.lamp.close()

    # -- for kv --------------------------------------------------------------------------------
    @property
    def screen_name(self) -> str:
        """The screen on show (``waiting``, ``in_call``, ``document``, ``still``, ``invite``)."""
        return self.manager.current if self.manager is not None else ""

    def screen(self, name: str) -> Any:
        return self.screens[name]

    # -- intents from the screens --------------------------------------------------------------
    def answer(self, call: str) -> None:
        self.view = "in_call"
        self._set_big("camera")
        self.dispatch_event(AnswerPressed(call))

    def decline(self, call: str) -> None:
        self.dispatch_event(DeclinePressed(call))

    def toggle_away(self) -> None:
        self.dispatch_event(AwayToggled(not self.machine.away))

    def invite(self, kind: str, target: str) -> None:
        self.dispatch_event(
            InvitePressed(department=target) if kind == "department" else InvitePressed(terminal=target)
        )
        self.show_view("in_call")

    def leave(self) -> None:
        self.dispatch_event(LeavePressed())

    def hang_up(self) -> None:
        self.dispatch_event(HangUpPressed())

    def swap_views(self) -> None:
        """The small tile becomes the large one and the other way round."""
        self._set_big("document" if self.big == "camera" else "camera")

    def _set_big(self, label: str) -> None:
        self.big = label
        call = self.screens["in_call"]
        call.ids.big_view.sink = self.frames[self.big]
        call.ids.small_tile.source = self.frames["camera" if self.big == "document" else "document"]

    def show_view(self, name: str) -> None:
        if name not in CALL_VIEWS:
            raise ValueError(f"call view must be one of {CALL_VIEWS}, found {name!r}")
        if name == "still" and self.still is None:
            return
        self.view = name
        self._refresh()

    def rotate_document(self) -> None:
        self.doc_rotation = ROTATIONS[(ROTATIONS.index(int(self.doc_rotation)) + 1) % len(ROTATIONS)]

    def request_still(self) -> None:
        if self.session is None or self.still_busy or self.machine.state is not State.IN_CALL:
            return
        self.still_busy = True
        self._spawn(self._fetch_still(self.session))

    async def _fetch_still(self, session: Any) -> None:
        try:
            still = await session.request_still(timeout=STILL_TIMEOUT_S)
        except Exception as err:
            event(log, "still_failed", logging.WARNING, problem=err)
            if session is self.session:
                self._set_call_notice(
                    self.tr("office.notice.still_failed", why=str(err) or type(err).__name__)
                )
            return
        finally:
            self.still_busy = False
        if session is not self.session:
            return  # the call ended meanwhile; the session has wiped the still
        self._wipe_still()
        self.still = still
        rotation = int(self.doc_rotation)
        pixels = still.rgb if rotation == 0 else np.ascontiguousarray(np.rot90(still.rgb, k=-rotation // 90))
        self._still_pixels = pixels if pixels is not still.rgb else None
        self.screens["still"].ids.viewer.show(pixels)
        self.show_view("still")

    def _wipe_still(self) -> None:
        self.screens["still"].ids.viewer.clear()
        if self._still_pixels is not None:
            self._still_pixels.fill(0)
            self._still_pixels = None
        if self.still is not None:
            self.still.wipe()
            self.still = None

    # -- events in -----------------------------------------------------------------------------
    async def _on_relay_message(self, msg: ServerMessage) -> None:
        self.received = [*self.received[-199:], msg["type"]]
        if self.lamp is not None:
            self.lamp.on_message(msg)
        await super()._on_relay_message(msg)

    async def _on_link(self, state: str, detail: str) -> None:
        if self.lamp is not None:
            self.lamp.on_link(state, detail)
        if state == "up":
            self.ever_up = True
            self.link_problem_state, self.link_problem = "", ""
        elif state in ("down", "unauthorized"):
            # Kept through the 'connecting' of each retry, so the bar does not flicker between the two.
            self.link_problem_state, self.link_problem = state, link_problem(state, detail, self.url) or ""
        await super()._on_link(state, detail)

    # -- commands out (Send, timers and Ring: TerminalApp) --------------------------------------
    def _execute(self, cmd: Command) -> None:
        if isinstance(cmd, StartMedia):
            self._start_media(cmd.call)
        elif isinstance(cmd, StopMedia):
            self._spawn(self._stop_media(cmd.how))
        else:
            if isinstance(cmd, Send) and self.lamp is not None:
                self.lamp.on_sent(cmd.msg)
            super()._execute(cmd)

    # -- media ---------------------------------------------------------------------------------
    def _start_media(self, call_id: str) -> None:
        if self.session is not None:
            old, self.session = self.session, None
            self._spawn(old.close())
        from kiosk.video.session import EventKind, SessionEvent

        def on_event(ev: SessionEvent) -> None:
            if ev.kind is EventKind.ENDED:
                self.dispatch_event(MediaEnded(call_id, ev.reason or ""))
            elif ev.kind in (EventKind.CONNECTION_STATE, EventKind.MEMBER_LEFT, EventKind.MEMBER_JOINED):
                self._refresh()

        if self._open_session(call_id, on_event):
            self.doc_rotation = 0
            self._assist_open()

    async def _stop_media(self, how: str) -> None:
        """Wipe the call's pictures (still, papers, tiles), then close the session (TerminalApp)."""
        session, self.session = self.session, None
        self._assist_close()
        if self.screens:
            self._wipe_still()
            self.screens["in_call"].clear_call()
            self.screens["document"].ids.doc_view.clear()
            self.screens["invite"].ids.call_view.clear()
        self.still_busy = False
        self.view = "in_call"
        await self._close_session(session, how)

    # -- screens -------------------------------------------------------------------------------
    def _tick(self, _dt: float) -> None:
        self.tick = time.monotonic()
        self._refresh()

    def _notice(self) -> str:
        n = self.machine.notice
        if n is None or time.monotonic() - n.at > NOTICE_SHOWN_S:
            return ""
        fields = dict(n.fields)
        if "by" in fields:
            fields["by"] = self.station_name(fields["by"])
        try:
            return self.tr(f"office.notice.{n.kind}", **fields)
        except Exception:
            return n.kind

    def _set_call_notice(self, text: str) -> None:
        self.call_notice = text
        self._notice_at = time.monotonic()

    def _refresh(self) -> None:
        """Project the machine's state onto the screens."""
        m = self.machine
        if self.manager is None:
            return
        self.state_name = m.state.value
        self.away = m.away
        self.link_ok = m.link_state == "up" and bool(m.terminal)
        entries = m.ringing_calls()
        self.ringing_count = sum(1 for e in entries if e.taken_by is None)
        waiting = self.screens["waiting"]
        waiting.show_ringing(entries)
        missed = m.missed_today()
        self.missed_count = len(missed)
        waiting.show_missed([self._missed_row(x) for x in missed])
        # Offline, an old notice ("you left the call") would read as news: show only what the bar says.
        self.notice_text = self._notice() if m.state is State.WAITING and self.link_ok else ""
        if self.call_notice and time.monotonic() - self._notice_at > NOTICE_SHOWN_S:
            self.call_notice = ""
        self.can_leave = m.can_leave
        call_screen = self.screens["in_call"]
        if m.call is not None:
            call_screen.show_members(self._member_rows())
            call_screen.show_invites(self._invite_rows())
            self.screens["invite"].show_targets(
                m.invite_departments(), [(s.id, s.status) for s in m.stations if s.id not in m.call.members]
            )
            notice = self._notice()
            if (
                notice
                and m.notice is not None
                and m.notice.kind == "invite_failed"
                and notice != self.call_notice
            ):
                self._set_call_notice(notice)
        self.version += 1
        if m.state in (State.IN_CALL, State.ANSWERING):
            name = self.view if m.state is State.IN_CALL else "in_call"
        else:
            name = "waiting"
            self.view = "in_call"
        if self.manager.current != name:
            self.events.append(name)
            self.manager.current = name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kiosk office",
        description="The staff station (Kivy window or full screen), "
        "or with --headless a station without a window.",
    )
    p.add_argument("--config", default="config/office.toml", help="office terminal config (TOML)")
    p.add_argument("--url", help="relay URL, overriding [relay] url")
    p.add_argument(
        "--headless",
        action="store_true",
        help="no window: print one line per link change and per call that rings, is answered, taken "
        "or ends (kiosk office --headless --help for its options)",
    )
    p.add_argument(
        "--auto-answer",
        type=float,
        metavar="SECONDS",
        help="with --headless: answer incoming calls after this many seconds (default: never)",
    )
    p.add_argument(
        "--fullscreen", action="store_true", help="full screen, whatever [terminal] fullscreen says"
    )
    p.add_argument("--windowed", action="store_true", help="a window, whatever [terminal] fullscreen says")
    add_camera_arguments(p, document=False)
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``kiosk office`` (without ``--headless``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.auto_answer is not None:
        parser.error("--auto-answer needs --headless (a station with a window is answered by its staff)")
    try:
        config = CameraOverrides.from_args(args).apply(load_terminal_config(args.config, "office"))
    except (ConfigError, OSError) as err:
        print(f"kiosk office: {err}", file=sys.stderr)
        return 2
    if args.fullscreen or args.windowed:
        config = config.with_overrides(ui=replace(config.ui, fullscreen=bool(args.fullscreen)))
    restore_std_streams()
    from common.logs import setup_logging

    setup_logging(args.log_level)
    configure_window(config.ui.width, config.ui.height, fullscreen=config.ui.fullscreen)
    app = OfficeApp(config, url=args.url)
    return asyncio.run(app.run_until_stopped())
