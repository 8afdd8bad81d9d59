"""The staff station's widgets for papers, marks and the written conversation (筆談): the "papers and writing"
view of a call, the touch layer that places marks on the document picture, and the resident's handwriting.

They draw what :class:`kiosk.assist.channel.StationAssist` holds (through the app's properties) and turn touches
into the app's intents; layout and look are in ``office_assist.kv`` (and the marks bar in ``office_document.kv``).
"""

from __future__ import annotations

from typing import Any

from kivy.app import App
from kivy.graphics import Color, Line
from kivy.properties import NumericProperty, ObjectProperty, StringProperty
from kivy.uix.screenmanager import Screen

from kiosk.assist.marks import Rect, to_fraction, to_screen
from kiosk.screens.counter_assist import MarksLayer
from kiosk.ui.widgets import BigButton

__all__ = ["MarkPad", "OfficeAssistScreen", "OfficePaperButton", "StrokesView"]


class OfficePaperButton(BigButton):
    """One paper of the station's folder: touching it hands the paper over."""

    path = StringProperty("")


class OfficeAssistScreen(Screen):
    """Papers to hand over and what became of them; the written conversation."""

    @property
    def app(self) -> Any:
        return App.get_running_app()

    def show_papers(self, paths: list[str]) -> None:
        """One button per paper in the station's folder."""
        box = self.ids.paper_list
        box.clear_widgets()
        for path in paths:
            box.add_widget(OfficePaperButton(path=path))

    def paper_button(self, name: str) -> Any:
        for b in self.ids.paper_list.children:
            if b.text == name:
                return b
        raise LookupError(f"no paper {name!r} in the list")

    def send_text(self) -> None:
        box = self.ids.text_input
        if self.app.send_writing(box.text):
            box.text = ""


class MarkPad(MarksLayer):
    """Over the document picture: staff point, circle or draw an arrow with a finger or the mouse.

    Shows the marks that are on the counter (``marks``, fractions of ``frame_size``), and reports touches inside
    the picture to ``app.place_mark(start, end, final=...)``.
    """

    def on_touch_down(self, touch: Any) -> bool:
        rect = self.picture_rect()
        frac = (
            to_fraction(touch.x, touch.y, rect)
            if rect is not None and self.collide_point(*touch.pos)
            else None
        )
        if frac is None:
            return False
        touch.grab(self)
        touch.ud["mark_start"] = frac
        App.get_running_app().place_mark(frac, frac, final=False)
        return True

    def on_touch_move(self, touch: Any) -> bool:
        if touch.grab_current is not self:
            return False
        rect = self.picture_rect()
        frac = to_fraction(touch.x, touch.y, rect) if rect is not None else None
        if frac is not None:
            App.get_running_app().place_mark(touch.ud["mark_start"], frac, final=False)
        return True

    def on_touch_up(self, touch: Any) -> bool:
        if touch.grab_current is not self:
            return False
        touch.ungrab(self)
        rect = self.picture_rect()
        frac = (to_fraction(touch.x, touch.y, rect) if rect is not None else None) or touch.ud["mark_start"]
        App.get_running_app().place_mark(touch.ud["mark_start"], frac, final=True)
        return True


class StrokesView(MarksLayer):
    """The resident's handwriting, live: strokes (fractions of the counter's pad) drawn on a white pad."""

    strokes = ObjectProperty(None, allownone=True)  # {stroke number: [(x, y), …]}
    version = NumericProperty(0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(version=self._draw_strokes, pos=self._draw_strokes, size=self._draw_strokes)

    def _draw_strokes(self, *_: Any) -> None:
        self.canvas.clear()
        rect = Rect(self.x, self.y, self.width, self.height)
        with self.canvas:
            Color(1, 1, 1, 1)
            Line(rectangle=(self.x, self.y, self.width, self.height), width=1.2)
            Color(0.08, 0.08, 0.1, 1)
            for points in (self.strokes or {}).values():
                flat = [c for fx, fy in points for c in to_screen(fx, fy, rect)]
                if len(flat) >= 4:
                    Line(points=flat, width=2)
