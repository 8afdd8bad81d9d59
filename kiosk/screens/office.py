"""Screens of the staff station: one class per screen, one kv file each (``office_*.kv``).

The classes only translate: they turn the app's state into widgets (ringing cards, missed-call rows,
members, invitations, video tiles, the still viewer) and touches into app intents (``app.answer(call)``,
``app.toggle_away()``, …). Layout and look are in the kv files. Class names start with ``Office`` so
that they never meet the counter's kv rules (Kivy's rule table is global).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from kivy.app import App
from kivy.graphics.texture import Texture
from kivy.graphics.transformation import Matrix
from kivy.lang import Builder
from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import Screen
from kivy.uix.stencilview import StencilView

from kiosk.screens.office_assist import OfficeAssistScreen
from kiosk.ui.video import DisplayForwarder, VideoView
from kiosk.ui.widgets import BigButton

__all__ = [
    "OFFICE_SCREENS",
    "CallFrames",
    "OfficeRingingCard",
    "OfficeMissedRow",
    "OfficeStillViewer",
    "create_office_screen",
    "load_office_kv",
]

_ = VideoView  # registers the class with Kivy's factory for the kv files

KV_DIR = Path(__file__).parent

# Screen names: the machine's idle screen, the call and the call's sub-views.
OFFICE_SCREENS = ("waiting", "in_call", "document", "still", "invite", "assist")

ROTATIONS = (0, 90, 180, 270)


class CallFrames:
    """Frames of one of the counter's video tracks, looked up in the call session on every poll
    (tracks arrive after the screen is shown) and turned by the staff's chosen rotation.

    The sequence number changes with the rotation too, so the view re-uploads a turned picture at once.
    """

    def __init__(
        self,
        session: Callable[[], Any],
        member: Callable[[], str],
        label: str,
        rotation: Callable[[], int] = lambda: 0,
    ) -> None:
        self._session = session
        self._member = member
        self.label = label
        self._rotation = rotation
        self._cache: tuple[int, int, np.ndarray] | None = None
        self._displays = DisplayForwarder()

    def set_display_size(self, owner: object, size: tuple[int, int] | None) -> None:
        """A view shows this stream at ``size``: the call's sink converts frames to that size (turned)."""
        self._displays.set(owner, size)

    def latest(self) -> tuple[int, np.ndarray] | None:
        session = self._session()
        sink = session.frame_sink(self._member(), self.label) if session is not None else None
        rotation = self._rotation() % 360
        if sink is not None:
            self._displays.apply(sink, turned=rotation in (90, 270))
        item = sink.latest() if sink is not None else None
        if item is None:
            return None
        seq, rgb = item
        if rotation == 0:
            return seq * 4, rgb
        if self._cache is None or self._cache[:2] != (seq, rotation):
            turned = np.ascontiguousarray(np.rot90(rgb, k=-rotation // 90))  # clockwise
            self._cache = (seq, rotation, turned)
        return seq * 4 + ROTATIONS.index(rotation), self._cache[2]


class OfficeScreen(Screen):
    """Base: every station screen reaches the app as ``self.app``."""

    @property
    def app(self) -> Any:
        return App.get_running_app()


class OfficeRingingCard(BoxLayout):
    """One ringing call (or invitation, or a call just taken by a colleague) with its answer button."""

    call = StringProperty("")
    department = StringProperty("")
    counter = StringProperty("")
    since = NumericProperty(0.0)
    invited_by = StringProperty("")
    taken_by = StringProperty("")


class OfficeMissedRow(BoxLayout):
    """One missed call: time and department, then who and why."""

    title = StringProperty("")
    detail = StringProperty("")


class OfficeMemberRow(BoxLayout):
    """One member of the call: name and what they are (resident, you, colleague)."""

    text = StringProperty("")
    kind = StringProperty("staff")  # resident, you, staff
    connected = BooleanProperty(False)


class OfficeInviteRow(BoxLayout):
    text = StringProperty("")
    status = StringProperty("pending")


class OfficeSwapTile(ButtonBehavior, FloatLayout):
    """The small video tile: touching it makes it the large one."""

    caption = StringProperty("")
    source = ObjectProperty(None, allownone=True)


class OfficeInviteButton(BigButton):
    """A department or a station to invite."""

    target = StringProperty("")
    kind = StringProperty("department")
    status = StringProperty("available")  # a station's: available, away, offline (away/offline: not rung)


class OfficeWaitingScreen(OfficeScreen):
    """Ringing calls on the left, today's missed calls on the right, status bar on top."""

    def show_ringing(self, entries: list[Any]) -> None:
        # Cards are kept and updated in place, never rebuilt: a finger on an answer button must not
        # lose its button because another call started or stopped ringing.
        box = self.ids.ringing
        cards = {c.call: c for c in box.children}
        wanted = {e.call for e in entries}
        for call, card in cards.items():
            if call not in wanted:
                box.remove_widget(card)
        for index, e in enumerate(entries):
            card = cards.get(e.call)
            if card is None:
                card = OfficeRingingCard(
                    call=e.call,
                    department=e.department,
                    counter=e.counter_name or e.counter,
                    since=e.since,
                    invited_by=e.invited_by or "",
                )
                box.add_widget(card, index=len(box.children) - index)
            card.taken_by = e.taken_by or ""

    def card(self, call: str) -> OfficeRingingCard:
        """The card of one call (tests, screenshots)."""
        for c in self.ids.ringing.children:
            if c.call == call:
                return c
        raise LookupError(f"no card for call {call!r} on the waiting screen")

    def cards(self) -> list[OfficeRingingCard]:
        return list(reversed(self.ids.ringing.children))

    def show_missed(self, rows: list[tuple[str, str]]) -> None:
        box = self.ids.missed
        have = [(r.title, r.detail) for r in reversed(box.children)]
        if have == rows:
            return
        box.clear_widgets()
        for title, detail in rows:
            box.add_widget(OfficeMissedRow(title=title, detail=detail))

    def missed_rows(self) -> list[OfficeMissedRow]:
        return list(reversed(self.ids.missed.children))


class OfficeCallScreen(OfficeScreen):
    """The call: one large video and a small one (swap on touch), members, invitations, actions."""

    def show_members(self, rows: list[tuple[str, str, bool]]) -> None:
        box = self.ids.members
        have = [(r.text, r.kind, r.connected) for r in reversed(box.children)]
        if have == rows:
            return
        box.clear_widgets()
        for text, kind, connected in rows:
            box.add_widget(OfficeMemberRow(text=text, kind=kind, connected=connected))

    def show_invites(self, rows: list[tuple[str, str]]) -> None:
        box = self.ids.invites
        have = [(r.text, r.status) for r in reversed(box.children)]
        if have == rows:
            return
        box.clear_widgets()
        for text, status in rows:
            box.add_widget(OfficeInviteRow(text=text, status=status))

    def member_texts(self) -> list[str]:
        return [r.text for r in reversed(self.ids.members.children)]

    def invite_texts(self) -> list[str]:
        return [r.text for r in reversed(self.ids.invites.children)]

    def clear_call(self) -> None:
        """Nothing of the call stays on screen."""
        for view in (self.ids.big_view, self.ids.small_tile.ids.video):
            view.clear()
        self.show_members([])
        self.show_invites([])


class OfficeDocumentScreen(OfficeScreen):
    pass


class OfficeStillViewer(StencilView):
    """A full-resolution still in a zoomable, pannable view (pinch and drag, or the buttons).

    The texture is made at the still's own size: nothing is scaled down before it reaches the GPU.
    """

    zoom = NumericProperty(1.0)
    image_size = ObjectProperty((0, 0))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.texture: Texture | None = None
        self.bind(size=lambda *_: self.fit(), pos=lambda *_: self.fit())

    def show(self, rgb: np.ndarray) -> None:
        """Upload ``rgb`` (H×W×3 uint8) as it is and fit it into the view."""
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        texture = Texture.create(size=(w, h), colorfmt="rgb")
        texture.flip_vertical()
        texture.blit_buffer(
            np.ascontiguousarray(rgb, dtype=np.uint8).tobytes(), colorfmt="rgb", bufferfmt="ubyte"
        )
        self.texture = texture
        image = self.ids.image
        image.texture = texture
        image.size = (w, h)
        self.ids.scatter.size = (w, h)
        self.image_size = (w, h)
        self.fit()

    def clear(self) -> None:
        """Drop the picture (the still is wiped at the end of the call)."""
        self.texture = None
        self.ids.image.texture = None
        self.image_size = (0, 0)

    def _fit_scale(self) -> float:
        w, h = self.image_size
        if not w or not h or not self.width or not self.height:
            return 1.0
        return min(self.width / w, self.height / h)

    def fit(self) -> None:
        """The whole still, as large as fits."""
        self._set_scale(self._fit_scale())

    def actual(self) -> None:
        """One still pixel per screen pixel."""
        self._set_scale(1.0)

    def zoom_by(self, factor: float) -> None:
        """Zoom around the centre of the view."""
        scatter = self.ids.scatter
        new = min(max(scatter.scale * factor, scatter.scale_min), scatter.scale_max)
        if new != scatter.scale:
            scatter.apply_transform(
                Matrix().scale(new / scatter.scale, new / scatter.scale, 1), anchor=self.center
            )
        self.zoom = scatter.scale

    def _set_scale(self, scale: float) -> None:
        scatter = self.ids.scatter
        scatter.scale_min = min(self._fit_scale(), 1.0) * 0.5
        scatter.scale_max = 8.0
        scatter.transform = Matrix()
        scatter.scale = scale
        scatter.center = self.center
        self.zoom = scale

    def on_touch_up(self, touch: Any) -> bool:
        result = super().on_touch_up(touch)
        self.zoom = self.ids.scatter.scale
        return bool(result)


class OfficeStillScreen(OfficeScreen):
    pass


class OfficeInviteScreen(OfficeScreen):
    """Buttons for each department and each other station."""

    def show_targets(self, departments: list[str], stations: list[tuple[str, str]]) -> None:
        """Departments, then stations as ``(id, status)``: a station's button says its status and is disabled
        while it is away or offline."""
        deps, sts = self.ids.departments, self.ids.stations
        if [b.target for b in reversed(deps.children)] != departments:
            deps.clear_widgets()
            for d in departments:
                deps.add_widget(OfficeInviteButton(target=d, kind="department"))
        if [(b.target, b.status) for b in reversed(sts.children)] != stations:
            sts.clear_widgets()
            for s, status in stations:
                sts.add_widget(OfficeInviteButton(target=s, kind="terminal", status=status))

    def button(self, kind: str, target: str) -> Any:
        box = self.ids.departments if kind == "department" else self.ids.stations
        for b in box.children:
            if b.target == target:
                return b
        raise LookupError(f"no invite button for {kind} {target!r}")


_SCREEN_CLASSES: dict[str, type[OfficeScreen]] = {
    "waiting": OfficeWaitingScreen,
    "in_call": OfficeCallScreen,
    "document": OfficeDocumentScreen,
    "still": OfficeStillScreen,
    "invite": OfficeInviteScreen,
    "assist": OfficeAssistScreen,
}


def create_office_screen(name: str) -> OfficeScreen:
    return _SCREEN_CLASSES[name](name=name)


def load_office_kv() -> None:
    """Load every ``office_*.kv`` file (idempotent)."""
    for path in sorted(KV_DIR.glob("office_*.kv")):
        p = path.as_posix()
        if p not in Builder.files:
            Builder.load_file(p)
