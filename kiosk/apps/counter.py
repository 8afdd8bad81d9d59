"""``kiosk counter``: the resident's touch kiosk.

One asyncio loop runs Kivy (``App.async_run``), the relay client and aiortc. The app is a thin
composition: relay messages, link changes, touches, timers and device checks become events for the
pure :class:`~kiosk.counter_state.CounterMachine`; the commands it returns are carried out here (send,
timers, ring tone and the call session's wiring come from :class:`~kiosk.apps.terminal.TerminalApp`,
shared with the staff station); screens show the machine's state.

Run in-process (tests, ``scripts/screenshots``)::

    configure_window(1280, 800)            # kiosk.ui.env, before the first window
    app = CounterApp(config, url=relay_url)
    async with running_app(app) as ui:     # kiosk.ui.driver
        await ui.tap(app.screen("start").department_button("juumin"))
    await app.aclose()

Why it is one module: it is the composition of one Kivy app — its lifecycle, the screens' intents, the machine's
commands, media start and stop and the screens' refresh all act on the same app object and its Kivy properties.
What stands apart is apart: the texts the kv files ask for (:mod:`kiosk.apps.counter_texts`), papers, marks and
printing (:mod:`kiosk.apps.counter_assist`), what both apps share (:mod:`kiosk.apps.terminal`).
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

from kivy.clock import Clock  # noqa: E402
from kivy.properties import (  # noqa: E402
    BooleanProperty,
    ListProperty,
    NumericProperty,
    StringProperty,
)
from kivy.uix.floatlayout import FloatLayout  # noqa: E402
from kivy.uix.screenmanager import NoTransition, ScreenManager  # noqa: E402

from common.logs import event  # noqa: E402
from common.messages import ServerMessage  # noqa: E402
from kiosk.apps.counter_assist import CounterAssistMixin  # noqa: E402
from kiosk.apps.counter_texts import CounterTextsMixin  # noqa: E402
from kiosk.apps.terminal import TerminalApp  # noqa: E402
from kiosk.cli import CameraOverrides, add_camera_arguments  # noqa: E402
from kiosk.config import ConfigError, TerminalConfig, load_terminal_config  # noqa: E402
from kiosk.counter_state import (  # noqa: E402
    BackPressed,
    CancelPressed,
    CheckDevices,
    Command,
    CounterMachine,
    DepartmentChosen,
    DevicesChecked,
    ExitApp,
    HangUpPressed,
    MediaEnded,
    MediaReconnecting,
    OfferedDepartment,
    PinEntered,
    ReloadConfig,
    ResetLanguage,
    SendFailed,
    StartMedia,
    State,
    StopMedia,
    TechGesture,
    Timeouts,
    Touched,
)
from kiosk.screens.counter import (  # noqa: E402
    SCREEN_NAMES,
    CounterScreen,
    InCallScreen,
    StartScreen,
    create_screen,
    load_counter_kv,
)
from kiosk.start_layout import StartNav, towns_of  # noqa: E402
from kiosk.ui.env import configure_window, restore_std_streams  # noqa: E402
from kiosk.ui.widgets import HoldCorner  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["CounterApp", "build_parser", "main", "timeouts_from"]

LARGE_TEXT_SCALE = 1.3
DEVICE_START_TIMEOUT = 3.0  # seconds a camera may take to deliver its first frame at a device check


def timeouts_from(config: TerminalConfig) -> Timeouts:
    """The state machine's timer lengths from ``[terminal]``."""
    ui = config.ui
    return Timeouts(idle=ui.idle_timeout, result=ui.result_timeout, thanks=ui.thanks_timeout)


class CounterApp(CounterTextsMixin, CounterAssistMixin, TerminalApp):
    """The counter kiosk.

    Args:
        config: a ``counter`` terminal config.
        url: relay URL overriding ``[relay] url``.
        local_media: already opened sources (default: opened from ``config.media`` at start; the app
            closes only what it opened).
        hold_time: seconds the technician corner must be held.
        link_grace: seconds a relay outage on a non-call screen may last before "out of service".
        device_retry: seconds between camera checks while a camera is missing.
    """

    role = "counter"

    # What the kv files show; the state machine is the source of truth, these are its projection
    # (plus ``ringing``, ``mic_muted`` and ``session`` from TerminalApp).
    state_name = StringProperty("starting")
    call_department = StringProperty("")
    result_department = StringProperty("")
    outcome = StringProperty("")
    elapsed = NumericProperty(0)
    countdown = NumericProperty(0)
    members = ListProperty([])
    pin_error = BooleanProperty(False)
    causes_text = StringProperty("")
    office_phone = StringProperty("")
    nobody = BooleanProperty(
        False
    )  # no department can answer now (closed, offline, no relay): say what to do
    fallback_key = StringProperty(
        ""
    )  # changes when the departments' phone numbers do (the band re-reads them)
    tech_message = StringProperty("")
    diag_version = NumericProperty(0)
    large_text = BooleanProperty(False)  # the resident's "larger text" toggle, kept until the idle reset
    town_count = NumericProperty(1)  # towns whose departments this counter offers (several: town first)
    reconnecting = BooleanProperty(False)  # the call's media is being rebuilt: the in-call screen says so
    media_lost = BooleanProperty(False)  # the last call ended because its media could not be restored
    writing_requested = BooleanProperty(False)  # 筆談 chosen on the start screen: the call opens in writing

    machine: CounterMachine

    def __init__(
        self,
        config: TerminalConfig,
        *,
        url: str | None = None,
        local_media: Any = None,
        hold_time: float = 3.0,
        link_grace: float = 2.0,
        device_retry: float = 5.0,
        cameras: CameraOverrides | None = None,
        **kwargs: Any,
    ) -> None:
        cameras = cameras or CameraOverrides()
        config = cameras.apply(config)
        super().__init__(config, url=url, local_media=local_media, tables=("counter",), **kwargs)
        self._cameras = cameras  # --camera/--document-camera, kept across a config reload like --url
        self.title = "Remote consultation counter"
        self.hold_time = hold_time
        self.machine = CounterMachine(
            replace(timeouts_from(config), link_grace=link_grace, device_retry=device_retry),
            pin=config.ui.pin,
        )
        self.device_checks = 0
        self._local_error = ""
        self.screens: dict[str, CounterScreen] = {}
        self.manager: ScreenManager | None = None
        self.corner: HoldCorner | None = None
        self.stopped = asyncio.Event()
        self.events: list[str] = []  # state names in order (tests, diagnostics)
        self.start_nav: StartNav[OfferedDepartment] = StartNav()

    # -- Kivy lifecycle ------------------------------------------------------------------------
    def build(self) -> FloatLayout:
        self.setup_ui()
        load_counter_kv()
        root = FloatLayout()
        self.manager = ScreenManager(transition=NoTransition())
        for name in SCREEN_NAMES:
            screen = create_screen(name)
            self.screens[name] = screen
            self.manager.add_widget(screen)
        self.manager.current = "starting"
        self.bind(lang=lambda *_: self._relayout_start())
        root.add_widget(self.manager)
        self.corner = HoldCorner(
            size_hint=(None, None),
            size=(self.sizes.touch, self.sizes.touch),
            pos_hint={"x": 0, "top": 1},
            hold_time=self.hold_time,
        )
        self.corner.bind(on_hold=lambda *_: self.dispatch_event(TechGesture()))
        root.add_widget(self.corner)
        from kivy.core.window import Window

        Window.bind(on_touch_down=self._on_any_touch, on_request_close=self._refuse_close)
        return root

    def on_start(self) -> None:
        self.office_phone = self.config_file.ui.fallback_phone  # until the relay says otherwise
        if self.config_file.media is not None:
            from kiosk.video.ice import restrict_ice_addresses

            try:
                restrict_ice_addresses(self.config_file.media.network.ice_addresses)
            except Exception as err:
                self._local_error = f"network: {err}"
        self._open_local_media()
        self.client = self._new_client()
        self.client.start()
        self._ticker = Clock.schedule_interval(self._tick, 0.25)
        self._run(self.machine.start())

    def on_stop(self) -> None:
        from kivy.core.window import Window

        Window.unbind(on_touch_down=self._on_any_touch, on_request_close=self._refuse_close)
        super().on_stop()
        self.stopped.set()

    # -- for kv --------------------------------------------------------------------------------
    def screen(self, name: str) -> Any:
        """A screen by state name (``start``, ``in_call``, …)."""
        return self.screens[name]

    # -- intents from the screens --------------------------------------------------------------
    def choose(self, dept_id: str) -> None:
        self.dispatch_event(DepartmentChosen(dept_id))

    def choose_town(self, town_id: str) -> None:
        self.start_nav.choose_town(town_id)
        self._relayout_start()

    def back_to_towns(self) -> None:
        self.start_nav.back_to_towns()
        self._relayout_start()

    def toggle_large_text(self) -> None:
        self.set_large_text(not self.large_text)

    def set_large_text(self, on: bool) -> None:
        """Every text ×1.3 (touch targets grow with it); kept until the idle reset."""
        if on != self.large_text:
            event(log, "large_text", on=on)
            self.large_text = on
            self.sizes = replace(self.sizes, text_scale=LARGE_TEXT_SCALE if on else 1.0)
            self._relayout_start()

    def toggle_writing_request(self) -> None:
        self.writing_requested = not self.writing_requested

    def _relayout_start(self) -> None:
        start = self.screens.get("start")
        if isinstance(start, StartScreen):
            start.relayout()

    def _reset_for_next_resident(self) -> None:
        """The idle reset: language, town and page, text size, written mode back to the defaults."""
        self.lang = self.ui_config.language
        self.start_nav.reset()
        self.writing_requested = False
        self.set_large_text(False)
        self._relayout_start()

    def cancel(self) -> None:
        self.dispatch_event(CancelPressed())

    def hang_up(self) -> None:
        self.dispatch_event(HangUpPressed())

    def back(self) -> None:
        self.dispatch_event(BackPressed())

    def submit_pin(self, pin: str) -> None:
        self.dispatch_event(PinEntered(pin))

    def lamp_test(self) -> None:
        """Ask the relay to light the office lamps of this counter's departments (the lamps are at the office)."""
        if self.machine.link_state != "up":
            self.tech_message = self.tr("counter_tech.lamp_needs_relay")
            return
        self.tech_message = self.tr("counter_tech.lamp_asking")
        self._spawn(self._send({"type": "lamp_test"}))

    def reload_config(self) -> None:
        self._execute(ReloadConfig())
        self._refresh()

    def exit_app(self) -> None:
        if self.machine.state is State.TECH:
            self._execute(ExitApp())

    # -- events in -----------------------------------------------------------------------------
    def _refuse_close(self, *_args: Any, **kwargs: Any) -> bool:
        """A close request (window manager, Alt+F4, a keyboard shortcut) never ends the kiosk: only the technician
        menu's exit (behind the PIN) or SIGTERM does."""
        event(
            log,
            "close_refused",
            logging.WARNING,
            source=kwargs.get("source", "?"),
            hint="leave through the technician menu",
        )
        return True

    def _on_any_touch(self, _window: Any, _touch: Any) -> bool:
        self.dispatch_event(Touched())
        return False  # let the touch reach the widgets

    async def _on_relay_message(self, msg: ServerMessage) -> None:
        await super()._on_relay_message(msg)
        if msg["type"] == "lamp_test_sent":
            self.tech_message = self._lamp_test_text(msg)
        elif msg["type"] == "error" and msg.get("ref") == "lamp_test":
            self.tech_message = self.tr("counter_tech.lamp_failed", error=msg["message"])
        elif msg["type"] == "welcome":
            phones = [d.get("fallback", {}).get("phone", "") for d in msg["departments"]]
            # the relay's numbers are the current ones; counter.toml's is for when it was never reached
            self.office_phone = next((p for p in phones if p), self.config_file.ui.fallback_phone)

    # -- commands out (Send, timers and Ring: TerminalApp) --------------------------------------
    def _execute(self, cmd: Command) -> None:
        if isinstance(cmd, StartMedia):
            self._start_media(cmd.call, cmd.offer_to)
        elif isinstance(cmd, StopMedia):
            self._spawn(self._stop_media("close"))
        elif isinstance(cmd, CheckDevices):
            self._spawn(self._check_devices())
        elif isinstance(cmd, ResetLanguage):
            self._reset_for_next_resident()
        elif isinstance(cmd, ExitApp):
            event(log, "tech_exit")
            self.stop()
        elif isinstance(cmd, ReloadConfig):
            self._reload_config()
        else:
            super()._execute(cmd)

    def _send_failed(self, msg: dict[str, Any], detail: str) -> None:
        self.dispatch_event(SendFailed(msg["type"], detail))

    # -- media ---------------------------------------------------------------------------------
    def _open_local_media(self) -> None:
        if self.local is not None or self.config_file.media is None:
            return
        from kiosk.video.local_media import open_local_media

        try:
            self.local = open_local_media(self.config_file.media, document=True)
        except Exception as err:
            event(log, "local_media_failed", logging.ERROR, problem=err)
            self._local_error = f"media: {err}"

    async def _check_devices(self) -> None:
        self.device_checks += 1
        media = self.config_file.media
        problems: list[str] = []
        if self._local_error:
            problems.append(self._local_error)
        if media is not None and self.local is not None:
            for label, src, cfg in (
                ("camera", self.local.camera, media.camera),
                ("document camera", self.local.document, media.document_camera),
            ):
                if cfg is None:
                    continue
                if src is None:
                    problems.append(f"{label} ({cfg.source}): not opened")
                    continue
                deadline = time.monotonic() + DEVICE_START_TIMEOUT
                while src.status == "starting" and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                if src.status != "ok":
                    problems.append(f"{label} ({cfg.source}): {src.status}")
        elif media is not None and self.local is None and not self._local_error:
            problems.append("media: not opened")
        self.dispatch_event(DevicesChecked(tuple(problems)))

    def _start_media(self, call_id: str, offer_to: str) -> None:
        from kiosk.video.session import EventKind, SessionEvent

        def on_event(ev: SessionEvent) -> None:
            if ev.kind is EventKind.ENDED and ev.reason not in ("hangup", "closed", "cancelled"):
                self.dispatch_event(MediaEnded(ev.reason or ""))
            elif ev.kind is EventKind.RECONNECTING:
                self.dispatch_event(MediaReconnecting(True))
            elif (
                ev.kind in (EventKind.RECONNECTED, EventKind.MEMBER_LEFT)
                and self.session is not None
                and not self.session.reconnecting()
            ):
                self.dispatch_event(MediaReconnecting(False))

        if self._open_session(call_id, on_event):
            self._assist_open()
            self._spawn(self.session.on_message({"type": "answered", "call": call_id, "by": offer_to}))

    # -- technician ----------------------------------------------------------------------------
    def _reload_config(self) -> None:
        try:
            new = self._cameras.apply(load_terminal_config(self.config_file.path, "counter"))
        except (ConfigError, OSError) as err:
            self.tech_message = self.tr("tech.reload_failed", error=str(err))
            return
        relay_changed = new.relay != self.config_file.relay
        self.config_file = new
        self.ui_config = new.ui
        self.machine.timeouts = replace(
            timeouts_from(new),
            link_grace=self.machine.timeouts.link_grace,
            device_retry=self.machine.timeouts.device_retry,
        )
        self.machine.pin = new.ui.pin
        self.ring.enabled = new.ui.ring_sound
        if relay_changed and self.client is not None:
            old_client = self.client
            self.url = self._url_override or new.relay.url
            self.client = self._new_client()
            self._spawn(old_client.close())
            self.client.start()
        self.tech_message = self.tr("tech.reloaded")
        self.diag_version += 1

    # -- screens -------------------------------------------------------------------------------
    def _tick(self, _dt: float) -> None:
        m = self.machine
        if m.state is State.CALLING and m.call is not None:
            self.elapsed = int(time.monotonic() - m.call.started_at)
        for name in ("result", "thanks"):
            if name in self._deadlines:
                self.countdown = max(0, round(self._deadlines[name] - time.monotonic()))
        if m.state is State.TECH:
            self.diag_version += 1

    def _refresh(self) -> None:
        """Project the machine's state onto the screens."""
        m = self.machine
        if self.manager is None:
            return
        name = m.state.value
        if name != self.state_name:
            self.events.append(name)
        self.state_name = name
        start = self.screens["start"]
        assert isinstance(start, StartScreen)
        self.town_count = len(towns_of(m.departments))
        start.show_departments(m.departments, m.presence)
        self.nobody = not any(m.availability(d.id) in ("available", "busy") for d in m.departments)
        self.fallback_key = "|".join(f"{d.id}:{d.phone}" for d in m.departments) + "|" + self.office_phone
        if m.call is not None:
            self.call_department = m.call.department.id
            if m.state is State.CALLING:
                self.elapsed = int(time.monotonic() - m.call.started_at)
        self.result_department = m.result_department.id if m.result_department is not None else ""
        self.outcome = m.outcome.value if m.outcome is not None else ""
        if "result" in self._deadlines:
            self.countdown = max(0, round(self._deadlines["result"] - time.monotonic()))
        self.pin_error = m.pin_error
        self.reconnecting = m.reconnecting and m.state is State.IN_CALL
        self.media_lost = m.ended_by_media
        self.causes_text = "; ".join(m.out_of_service_causes())
        self._refresh_call()
        self.diag_version += 1
        self._refresh_tech()
        if m.state is not State.TECH:
            self.tech_message = ""
        if self.manager.current != name:
            self.manager.current = name

    def _refresh_call(self) -> None:
        """The call screen: members, the reconnecting state, own previews; nothing left of a call that ended."""
        m = self.machine
        in_call = self.screens["in_call"]
        assert isinstance(in_call, InCallScreen)
        if m.state is State.IN_CALL and m.call is not None:
            self.members = list(m.call.members)
            in_call.show_members(self.session, list(m.call.members))
            if m.reconnecting:
                for view in in_call.remote_views():
                    if view.has_frame:
                        view.clear()  # "reconnecting", never a frozen last picture
            if self.local is not None:
                if in_call.ids.self_view.sink is None and self.local.camera is not None:
                    in_call.ids.self_view.sink = self.local.camera.preview()
                if in_call.ids.document_view.sink is None and self.local.document is not None:
                    in_call.ids.document_view.sink = self.local.document.preview()
        else:
            # Nothing of a call stays on screen or in memory once it is over.
            if self.assist is not None:
                self._assist_close()
            if self.members or in_call.ids.remote.children:
                in_call.clear_call()
            self.members = []
            if m.call is None:
                self.call_department = ""
                self.elapsed = 0
                self.mic_muted = False

    def _refresh_tech(self) -> None:
        """The technician screen's camera previews, only while it is shown."""
        m = self.machine
        tech = self.screens["tech"]
        if m.state is State.TECH and self.local is not None:
            if tech.ids.camera_preview.sink is None and self.local.camera is not None:
                tech.ids.camera_preview.sink = self.local.camera.preview()
            if tech.ids.document_preview.sink is None and self.local.document is not None:
                tech.ids.document_preview.sink = self.local.document.preview()
        elif tech.ids.camera_preview.sink is not None or tech.ids.document_preview.sink is not None:
            tech.ids.camera_preview.sink = None
            tech.ids.document_preview.sink = None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kiosk counter", description="The resident's counter kiosk (full-screen, touch)."
    )
    p.add_argument("--config", default="config/counter.toml", help="counter terminal config (TOML)")
    p.add_argument("--url", help="relay URL, overriding [relay] url")
    p.add_argument("--windowed", action="store_true", help="ignore [terminal] fullscreen (development)")
    add_camera_arguments(p, document=True)
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``kiosk counter``; returns the exit status."""
    restore_std_streams()  # Kivy's import captured stderr into its silenced logger
    args = build_parser().parse_args(argv)
    try:
        config = load_terminal_config(args.config, "counter")
    except (ConfigError, OSError) as err:
        print(f"kiosk counter: {err}", file=sys.stderr)
        return 2
    if args.windowed:
        config = config.with_overrides(ui=replace(config.ui, fullscreen=False))
    from common.logs import setup_logging

    setup_logging(args.log_level)
    configure_window(config.ui.width, config.ui.height, fullscreen=config.ui.fullscreen)
    app = CounterApp(config, url=args.url, cameras=CameraOverrides.from_args(args))
    return asyncio.run(app.run_until_stopped())
