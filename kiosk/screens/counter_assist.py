"""The counter's widgets for what staff hand over during a call: papers, marks, the written conversation (筆談).

They only draw what :class:`kiosk.assist.channel.CounterAssist` holds and turn touches into its intents; layout
and look are in ``counter_assist.kv`` and ``counter_in_call.kv``.

* :class:`MarksLayer` draws staff marks over a letterboxed picture (the document preview or a paper page) at the
  same place on the paper as staff placed them (:mod:`kiosk.assist.marks`).
* :class:`PaperView` shows one page of a paper, large, with its marks.
* :class:`HandwritingPad` is the resident's pad: strokes are drawn here and sent live to staff.
"""

from __future__ import annotations

import io
import math
from typing import Any

from kivy.app import App
from kivy.core.image import Image as CoreImage
from kivy.graphics import Color, Ellipse, Line, Rectangle
from kivy.properties import ListProperty, NumericProperty, ObjectProperty
from kivy.uix.widget import Widget

from kiosk.assist.marks import Rect, ScreenMark, fit_rect, screen_mark, to_screen

__all__ = ["HandwritingPad", "MarksLayer", "PaperView"]

MARK_RGBA = (0.86, 0.1, 0.1, 0.95)  # red on white paper and on the dark letterbox alike
HALO_RGBA = (1.0, 1.0, 1.0, 0.9)


class MarksLayer(Widget):
    """Staff marks over a picture of ``frame_size`` drawn letterboxed in this widget's box.

    Attributes:
        drawn: the marks as drawn, in window coordinates (for tests and screenshots).
    """

    marks = ListProperty([])
    frame_size = ListProperty([0, 0])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drawn: list[ScreenMark] = []
        self.bind(marks=self._redraw, frame_size=self._redraw, pos=self._redraw, size=self._redraw)

    def picture_rect(self) -> Rect | None:
        fw, fh = self.frame_size
        return fit_rect(fw, fh, self.x, self.y, self.width, self.height)

    def _redraw(self, *_: Any) -> None:
        self.canvas.after.clear()
        self.drawn = []
        rect = self.picture_rect()
        if rect is None or not self.marks:
            return
        app = App.get_running_app()
        unit = app.sizes.mm(1) if app is not None else 4.0
        with self.canvas.after:
            for mark in self.marks:
                sm = screen_mark(mark, rect)
                self.drawn.append(sm)
                for rgba, width in ((HALO_RGBA, unit * 1.6), (MARK_RGBA, unit * 0.9)):
                    Color(*rgba)
                    self._draw(sm, width, unit)

    @staticmethod
    def _draw(sm: ScreenMark, width: float, unit: float) -> None:
        if sm.kind == "circle":
            Line(circle=(sm.x, sm.y, max(sm.r, unit * 3)), width=width)
        elif sm.kind == "arrow":
            Line(points=[sm.x, sm.y, sm.x2, sm.y2], width=width)
            angle = math.atan2(sm.y2 - sm.y, sm.x2 - sm.x)
            head = unit * 6
            for side in (-0.45, 0.45):
                Line(
                    points=[
                        sm.x2,
                        sm.y2,
                        sm.x2 - head * math.cos(angle + side),
                        sm.y2 - head * math.sin(angle + side),
                    ],
                    width=width,
                )
        else:  # a pointer: a dot with a ring, easy to see on any paper
            r = unit * 3
            Ellipse(pos=(sm.x - r, sm.y - r), size=(2 * r, 2 * r))


class PaperView(MarksLayer):
    """One page of a paper (PNG/JPEG bytes), letterboxed on a light background, with its marks on top."""

    data = ObjectProperty(None, allownone=True)  # the page file (bytes-like) or None
    fmt = ObjectProperty("png")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        with self.canvas:
            self._bg_color = Color(0.93, 0.93, 0.91, 1)
            self._bg = Rectangle(pos=self.pos, size=self.size)
            self._fg_color = Color(1, 1, 1, 1)
            self._page = Rectangle(pos=self.pos, size=(0, 0))
        self.bind(data=self._load, pos=self._layout, size=self._layout)

    def _load(self, *_: Any) -> None:
        if self.data is None:
            self._page.texture = None
            self.frame_size = [0, 0]
            self._layout()
            return
        image = CoreImage(io.BytesIO(bytes(self.data)), ext=str(self.fmt))
        self._page.texture = image.texture
        self.frame_size = list(image.texture.size)
        self._layout()

    def _layout(self, *_: Any) -> None:
        self._bg.pos, self._bg.size = self.pos, self.size
        rect = self.picture_rect()
        if rect is None or self._page.texture is None:
            self._page.size = (0, 0)
            return
        self._page.pos, self._page.size = (rect.x, rect.y), (rect.w, rect.h)


class HandwritingPad(Widget):
    """The resident writes with a finger; each point goes to ``assist.stroke_to`` (and so live to staff)."""

    assist = ObjectProperty(None, allownone=True)
    version = NumericProperty(0)  # bumped by the app when the strokes changed (e.g. cleared)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self.redraw, size=self.redraw, version=self.redraw, assist=self.redraw)

    def _fraction(self, touch: Any) -> tuple[float, float]:
        fx = (touch.x - self.x) / max(self.width, 1)
        fy = 1.0 - (touch.y - self.y) / max(self.height, 1)
        return min(max(fx, 0.0), 1.0), min(max(fy, 0.0), 1.0)

    def on_touch_down(self, touch: Any) -> bool:
        if not self.collide_point(*touch.pos) or self.assist is None:
            return False
        touch.grab(self)
        self.assist.stroke_to(*self._fraction(touch), new=True)
        self.redraw()
        return True

    def on_touch_move(self, touch: Any) -> bool:
        if touch.grab_current is not self or self.assist is None:
            return False
        self.assist.stroke_to(*self._fraction(touch))
        self.redraw()
        return True

    def on_touch_up(self, touch: Any) -> bool:
        if touch.grab_current is not self:
            return False
        touch.ungrab(self)
        if self.assist is not None:
            self.assist.end_stroke()
        return True

    def redraw(self, *_: Any) -> None:
        self.canvas.after.clear()
        strokes = self.assist.strokes if self.assist is not None else []
        rect = Rect(self.x, self.y, self.width, self.height)
        app = App.get_running_app()
        width = app.sizes.mm(0.8) if app is not None else 3.0
        with self.canvas.after:
            Color(0.08, 0.08, 0.1, 1)
            for stroke in strokes:
                points = [c for fx, fy in stroke for c in to_screen(fx, fy, rect)]
                if len(points) >= 4:
                    Line(points=points, width=width)
                elif len(points) == 2:
                    Ellipse(pos=(points[0] - width, points[1] - width), size=(2 * width, 2 * width))
