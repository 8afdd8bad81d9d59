"""Screens of the resident's counter kiosk: one class per screen, one kv file each (``counter_*.kv``).

The classes only translate: they turn app state into widgets (department buttons, video tiles) and
touches into app intents (``app.choose(...)``, ``app.cancel()``, …). Layout and look are in the kv files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.animation import Animation
from kivy.app import App
from kivy.lang import Builder
from kivy.properties import NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget

from kiosk.ui.video import VideoView

__all__ = [
    "SCREEN_NAMES", "CalmPulse", "DepartmentButton", "MemberTile", "load_counter_kv", "SessionFrames",
]

KV_DIR = Path(__file__).parent

# State name (kiosk.counter_state.State.value) → screen class name.
SCREEN_NAMES = ("starting", "out_of_service", "start", "calling", "in_call", "result", "thanks", "pin", "tech")


class SessionFrames:
    """A frame source that looks the sink up in the call session each time (tracks arrive late)."""

    def __init__(self, session: Any, member: str, label: str = "camera") -> None:
        self.session = session
        self.member = member
        self.label = label

    def latest(self) -> Any:
        sink = self.session.frame_sink(self.member, self.label) if self.session is not None else None
        return sink.latest() if sink is not None else None


class DepartmentButton(ButtonBehavior, BoxLayout):
    """One department on the start screen: name large, other-language name small, availability."""

    dept_id = StringProperty("")
    status = StringProperty("offline")


class MemberTile(BoxLayout):
    """A remote staff member's video with their label underneath."""

    member = StringProperty("")
    number = NumericProperty(1)  # "Staff 1", "Staff 2": terminal ids mean nothing to a resident
    source = ObjectProperty(None, allownone=True)


class CalmPulse(Widget):
    """Slowly breathing rings: shows that something is happening, without hurry."""

    phase = NumericProperty(0.0)

    def start(self) -> None:
        self.stop()
        self.phase = 0.0
        self._anim = Animation(phase=1.0, duration=2.4, t="in_out_sine") + Animation(
            phase=0.0, duration=2.4, t="in_out_sine")
        self._anim.repeat = True
        self._anim.start(self)

    def stop(self) -> None:
        anim = getattr(self, "_anim", None)
        if anim is not None:
            anim.cancel(self)
            self._anim = None


class CounterScreen(Screen):
    """Base: every counter screen reaches the app as ``self.app``."""

    @property
    def app(self) -> Any:
        return App.get_running_app()


class StartingScreen(CounterScreen):
    pass


class OutOfServiceScreen(CounterScreen):
    pass


class StartScreen(CounterScreen):
    """Department buttons are rebuilt from the relay's ``welcome``; presence updates restyle them."""

    def show_departments(self, departments: list[Any], presence: dict[str, str]) -> None:
        grid = self.ids.departments
        wanted = [d.id for d in departments]
        have = [b.dept_id for b in reversed(grid.children)]
        if have != wanted:
            grid.clear_widgets()
            for d in departments:
                grid.add_widget(DepartmentButton(dept_id=d.id, status=presence.get(d.id, "offline")))
        for b in grid.children:
            b.status = presence.get(b.dept_id, "offline")

    def department_button(self, dept_id: str) -> DepartmentButton:
        """The button of one department (for tests and the screenshot script)."""
        for b in self.ids.departments.children:
            if b.dept_id == dept_id:
                return b
        raise LookupError(f"no button for department {dept_id!r} on the start screen")


class CallingScreen(CounterScreen):
    def on_enter(self, *args: Any) -> None:
        self.ids.pulse.start()

    def on_leave(self, *args: Any) -> None:
        self.ids.pulse.stop()


class InCallScreen(CounterScreen):
    """Remote staff videos (one tile per member), the document camera and the self-view."""

    def show_members(self, session: Any, members: list[str]) -> None:
        box = self.ids.remote
        have = [t.member for t in reversed(box.children)]
        if have != members:
            for tile in box.children:
                tile.ids.video.sink = None
                tile.ids.video.stop()
            box.clear_widgets()
            for i, member in enumerate(members):
                box.add_widget(MemberTile(member=member, number=i + 1, source=SessionFrames(session, member)))

    def remote_views(self) -> list[VideoView]:
        return [t.ids.video for t in reversed(self.ids.remote.children)]

    def clear_call(self) -> None:
        """Remove every trace of the call: remote tiles, textures, local previews."""
        for tile in self.ids.remote.children:
            tile.ids.video.sink = None
            tile.ids.video.stop()
        self.ids.remote.clear_widgets()
        self.ids.self_view.sink = None
        self.ids.document_view.sink = None


class ResultScreen(CounterScreen):
    pass


class ThanksScreen(CounterScreen):
    pass


class PinScreen(CounterScreen):
    pass


class TechScreen(CounterScreen):
    pass


_SCREEN_CLASSES = {
    "starting": StartingScreen, "out_of_service": OutOfServiceScreen, "start": StartScreen,
    "calling": CallingScreen, "in_call": InCallScreen, "result": ResultScreen, "thanks": ThanksScreen,
    "pin": PinScreen, "tech": TechScreen,
}


def create_screen(name: str) -> CounterScreen:
    """The screen for one state name."""
    screen: CounterScreen = _SCREEN_CLASSES[name](name=name)
    return screen


def load_counter_kv() -> None:
    """Load every ``counter_*.kv`` file (idempotent)."""
    for path in sorted(KV_DIR.glob("counter_*.kv")):
        p = path.as_posix()
        if p not in Builder.files:
            Builder.load_file(p)
