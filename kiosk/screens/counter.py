"""Screens of the resident's counter kiosk: one class per screen, one kv file each (``counter_*.kv``).

The classes only translate: they turn app state into widgets (department buttons, video tiles) and
touches into app intents (``app.choose(...)``, ``app.cancel()``, …). Layout and look are in the kv files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kivy.animation import Animation
from kivy.app import App
from kivy.lang import Builder
from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget

from common.logs import event
from kiosk.screens import counter_assist  # noqa: F401  (the widgets of counter_assist.kv)
from kiosk.start_layout import GridPlan, StartNav, Town, fit_font_size, pages_of, plan_grid, towns_of
from kiosk.ui.video import DisplayForwarder, VideoView

__all__ = [
    "SCREEN_NAMES",
    "CalmPulse",
    "DepartmentButton",
    "MemberTile",
    "load_counter_kv",
    "SessionFrames",
    "TownButton",
]

log = logging.getLogger(__name__)

KV_DIR = Path(__file__).parent
DEPARTMENT_MIN_MM = (
    62.0,
    30.0,
)  # smallest department/town button (wide enough for a name; 2× the touch minimum)

# State name (kiosk.counter_state.State.value) → screen class name.
SCREEN_NAMES = (
    "starting",
    "out_of_service",
    "start",
    "calling",
    "in_call",
    "result",
    "thanks",
    "pin",
    "tech",
)


class SessionFrames:
    """A frame source that looks the sink up in the call session each time (tracks arrive late)."""

    def __init__(self, session: Any, member: str, label: str = "camera") -> None:
        self.session = session
        self.member = member
        self.label = label
        self._displays = DisplayForwarder()

    def set_display_size(self, owner: object, size: tuple[int, int] | None) -> None:
        """A view shows this stream at ``size``: the call's sink converts frames to that size."""
        self._displays.set(owner, size)

    def latest(self) -> Any:
        sink = self.session.frame_sink(self.member, self.label) if self.session is not None else None
        if sink is None:
            return None
        self._displays.apply(sink)
        return sink.latest()


class DepartmentButton(ButtonBehavior, BoxLayout):
    """One department on the start screen: name large, other-language name small, availability."""

    dept_id = StringProperty("")
    status = StringProperty("offline")
    name_font = NumericProperty(40)
    status_font = NumericProperty(28)
    short_status = BooleanProperty(False)  # the short availability words (small buttons)
    show_sub = BooleanProperty(True)


class TownButton(ButtonBehavior, BoxLayout):
    """One town on the start screen of a counter serving several: emblem (if configured), name large."""

    town_id = StringProperty("")
    name = StringProperty("")
    sub_name = StringProperty("")
    emblem = StringProperty("")
    status = StringProperty("offline")
    name_font = NumericProperty(40)
    show_sub = BooleanProperty(True)


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
            phase=0.0, duration=2.4, t="in_out_sine"
        )
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
    """Towns, then pages of departments (:mod:`kiosk.start_layout`); presence updates restyle the buttons.

    The grid is planned from the real size of its area: every button stays at least
    :data:`DEPARTMENT_MIN_MM` large, and what does not fit goes to further pages (next/back and a page indicator).
    """

    mode = StringProperty("departments")  # or "towns": a counter of several towns asks for the town first
    town_id = StringProperty("")
    page = NumericProperty(0)
    pages = NumericProperty(1)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._departments: list[Any] = []
        self._presence: dict[str, str] = {}
        self._built: tuple[Any, ...] = ()
        self.plan: GridPlan | None = None

    def show_departments(self, departments: list[Any], presence: dict[str, str]) -> None:
        self._departments = list(departments)
        self._presence = dict(presence)
        self.relayout()

    def relayout(self, *_args: Any) -> None:
        """Plan the grid for the area's size and fill it with this page's towns or departments."""
        app = self.app
        if app is None or "choices" not in self.ids:
            return
        nav: StartNav[Any] = app.start_nav
        towns = towns_of(self._departments)
        self.mode = nav.mode(towns)
        self.town_id = nav.town or "" if self.mode == "departments" and len(towns) > 1 else ""
        items: list[Any] = towns if self.mode == "towns" else nav.shown(self._departments, towns)
        area = self.ids.choices
        s = app.sizes
        min_w = s.mm(DEPARTMENT_MIN_MM[0])
        # Tall enough for the longest name wrapped at the smallest name font, plus the availability line.
        names = max((_text_height(i.name(app.lang), min_w - s.mm(8), s.font_small) for i in items), default=0)
        min_h = max(s.mm(DEPARTMENT_MIN_MM[1]), names + s.mm(9) + s.font_body * 1.45)
        width, height = area.size
        if width < min_w or height < min_h:
            # Not laid out yet (a screen not shown so far): plan for the window; redone on the first real layout.
            from kivy.core.window import Window

            width, height = Window.width - s.mm(12), Window.height * 0.6
        try:
            plan = plan_grid(len(items), width, height, min_w=min_w, min_h=min_h, gap=s.gap, nav_h=s.button)
        except ValueError as err:  # a window far too small for the kiosk: show what fits rather than nothing
            event(log, "start_screen_layout_failed", logging.ERROR, problem=err)
            plan = GridPlan(
                len(items), 1, max(1, len(items)), 1, width, height / max(1, len(items)), len(items)
            )
        self.plan = plan
        self.pages = plan.pages
        self.page = nav.clamp(plan.pages)
        shown = pages_of(items, plan.per_page)[self.page]
        grid = self.ids.departments
        key = (self.mode, tuple(getattr(i, "id", "") for i in shown), plan.cols, plan.rows, app.lang, s)
        if key != self._built:
            self._built = key
            grid.clear_widgets()
            grid.cols = plan.cols
            grid.rows = plan.rows
            buttons = [self._button(item, plan) for item in shown]
            font = min((b.name_font for b in buttons), default=0)
            departments = [b for b in buttons if isinstance(b, DepartmentButton)]
            status_font = min((b.status_font for b in departments), default=0)
            show_sub = all(b.show_sub for b in departments)
            short = any(b.short_status for b in departments)
            for b in buttons:
                b.name_font = font  # one size on a page: an even grid reads more calmly
                if isinstance(b, DepartmentButton):
                    b.status_font, b.show_sub, b.short_status = status_font, show_sub, short
                grid.add_widget(b)
            for _ in range(plan.slots - len(shown)):
                grid.add_widget(Widget())  # keep the buttons of a short last page as large as the others
        for b in grid.children:
            if isinstance(b, DepartmentButton):
                b.status = self._presence.get(b.dept_id, "offline")
            elif isinstance(b, TownButton):
                b.status = self._town_status(b.town_id)

    def _town_status(self, town: str) -> str:
        mine = [self._presence.get(d.id, "offline") for d in self._departments if d.office == town]
        return next((st for st in ("available", "busy", "closed") if st in mine), "offline")

    def _button(self, item: Any, plan: GridPlan) -> Widget:
        app, s = self.app, self.app.sizes
        inner_w = plan.button_w - s.mm(8)
        sub = plan.button_h >= s.mm(48)  # room for the other language's name under the big one
        name_h = plan.button_h - s.mm(9) - s.font_body * 1.45 - (s.font_small * 1.45 if sub else 0)
        largest = s.font_huge if plan.pages == 1 else s.font_title
        other = "en" if app.lang == "ja" else "ja"
        if isinstance(item, Town):
            font = _fit(
                item.name(app.lang),
                inner_w * (0.7 if app.town_emblem(item.id) else 1.0),
                name_h,
                s.font_huge,
                s.font_small,
            )
            return TownButton(
                town_id=item.id,
                name=item.name(app.lang),
                sub_name=item.name(other),
                emblem=app.town_emblem(item.id),
                name_font=font,
                show_sub=sub,
                status=self._town_status(item.id),
            )
        font, status_font, sub, short = self._department_fonts(item, plan, inner_w, largest, sub)
        return DepartmentButton(
            dept_id=item.id,
            name_font=font,
            status_font=status_font,
            short_status=short,
            show_sub=sub,
            status=self._presence.get(item.id, "offline"),
        )

    def _department_fonts(
        self, item: Any, plan: GridPlan, inner_w: float, largest: float, sub: bool
    ) -> tuple[float, float, bool, bool]:
        """Name size, availability size, whether the other language's name shows and whether the availability
        line is the short one, measured in the button.

        The department's name is what the resident looks for: it is never drawn smaller than the lines under it.
        On small buttons the other language's name goes first, then the availability line gets shorter, then
        smaller; the
        name gets exactly the height the other lines leave (the kv label would otherwise shrink it further).
        """
        app, s = self.app, self.app.sizes
        name = item.name(app.lang)
        other = item.name("en" if app.lang == "ja" else "ja")
        frame = s.mm(3) * 2 + s.mm(1) * 2  # the button's padding and the spacing between its three lines

        def status_h(size: float, table: str) -> float:
            # The highest of the availability lines: it changes while the page stays.
            return max(_text_height(app.tr(f"{table}.{st}"), inner_w, size) for st in STATUS_KEYS)

        tries = [
            (sub, s.font_body, "status"),
            (False, s.font_body, "status"),
            (False, s.font_body, "status_short"),
            (False, s.font_small, "status_short"),
        ]
        for with_sub, status_font, table in tries:
            room = plan.button_h - frame - status_h(status_font, table)
            if with_sub:
                room -= _text_height(other, inner_w, s.font_small)
            font = _fit(name, inner_w, room, largest, s.font_small * 0.8)
            if font >= status_font:
                break
        return font, status_font, with_sub, table == "status_short"

    def turn_page(self, step: int) -> None:
        self.app.start_nav.turn(step, self.pages)
        self.relayout()

    def department_button(self, dept_id: str) -> DepartmentButton:
        """The button of one department on the page shown (for tests and the screenshot script)."""
        for b in self.ids.departments.children:
            if isinstance(b, DepartmentButton) and b.dept_id == dept_id:
                return b
        raise LookupError(f"no button for department {dept_id!r} on the start screen")

    def town_button(self, town_id: str) -> TownButton:
        for b in self.ids.departments.children:
            if isinstance(b, TownButton) and b.town_id == town_id:
                return b
        raise LookupError(f"no button for town {town_id!r} on the start screen")

    def shown_ids(self) -> list[str]:
        """Ids of the departments or towns on the page shown, in reading order."""
        return [
            b.dept_id if isinstance(b, DepartmentButton) else b.town_id
            for b in reversed(self.ids.departments.children)
            if isinstance(b, (DepartmentButton, TownButton))
        ]


STATUS_KEYS = ("available", "busy", "closed", "offline")


def _text_height(text: str, width: float, size: float) -> float:
    from kivy.core.text import Label as CoreLabel

    label = CoreLabel(text=text, font_size=size, text_size=(width, None), halign="center", bold=True)
    label.refresh()
    return float(label.texture.size[1]) if label.texture is not None else 0.0


def _fit(text: str, width: float, height: float, largest: float, smallest: float) -> float:
    """The largest font at which ``text`` wrapped to ``width`` fits ``height``: estimated, then measured."""
    from kivy.core.text import Label as CoreLabel

    size = fit_font_size(text, width, height, largest=largest, smallest=smallest)
    while True:
        label = CoreLabel(text=text, font_size=size, text_size=(width, None), halign="center", bold=True)
        label.refresh()
        w, h = label.texture.size if label.texture is not None else (0, 0)
        if (w <= width and h <= height) or size <= smallest:
            return size
        size = max(smallest, size * 0.92)


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
    "starting": StartingScreen,
    "out_of_service": OutOfServiceScreen,
    "start": StartScreen,
    "calling": CallingScreen,
    "in_call": InCallScreen,
    "result": ResultScreen,
    "thanks": ThanksScreen,
    "pin": PinScreen,
    "tech": TechScreen,
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
