"""Reusable widgets: big buttons and labels (styled in ``widgets.kv``), a PIN pad and a hidden corner.

Colours are palette names (see :mod:`kiosk.ui.style`), so kv files say ``bg: "danger"`` rather than
numbers; sizes come from the app (``app.sizes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.clock import Clock
from kivy.lang import Builder
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.widget import Widget

__all__ = ["BigButton", "WrapLabel", "HoldCorner", "PinPad", "load_widget_styles"]

KV_FILE = Path(__file__).with_name("widgets.kv")


class BigButton(Button):
    """A large, flat, high-contrast button; ``bg``/``fg`` are palette names."""

    bg = StringProperty("primary")
    fg = StringProperty("on_primary")
    sub_text = StringProperty("")  # optional second line, drawn smaller (kv)


class WrapLabel(Label):
    """A label that wraps to its width and grows to its text's height."""

    fg = StringProperty("text")


class HoldCorner(Widget):
    """An invisible touch area that fires ``on_hold`` after being held for ``hold_time`` seconds.

    Used for the technician gesture: residents tapping a corner by chance never hold it long enough.
    """

    hold_time = NumericProperty(3.0)
    holding = BooleanProperty(False)

    __events__ = ("on_hold",)

    def __init__(self, **kwargs: Any) -> None:
        self._event: Any = None
        super().__init__(**kwargs)

    def on_touch_down(self, touch: Any) -> bool:
        if not self.collide_point(*touch.pos):
            return False
        touch.grab(self)
        self.holding = True
        self._event = Clock.schedule_once(self._fire, self.hold_time)
        return True

    def on_touch_up(self, touch: Any) -> bool:
        if touch.grab_current is not self:
            return False
        touch.ungrab(self)
        self._cancel()
        return True

    def _cancel(self) -> None:
        self.holding = False
        if self._event is not None:
            self._event.cancel()
            self._event = None

    def _fire(self, _dt: float) -> None:
        self._event = None
        if self.holding:
            self.holding = False
            self.dispatch("on_hold")

    def on_hold(self) -> None:
        pass


_loaded = False


def load_widget_styles() -> None:
    """Load ``widgets.kv`` once (idempotent)."""
    global _loaded
    if not _loaded or KV_FILE.as_posix() not in Builder.files:
        Builder.unload_file(KV_FILE.as_posix())
        Builder.load_file(KV_FILE.as_posix())
        _loaded = True


class PinPad(BoxLayout):
    """A numeric keypad with a masked display; dispatches ``on_submit(pin)`` on OK.

    Layout and look are in ``widgets.kv``; the digits shown are dots only.
    """

    entered = StringProperty("")
    max_length = NumericProperty(8)

    __events__ = ("on_submit",)

    def press(self, key: str) -> None:
        """A key of the pad: a digit, ``clear`` or ``ok``."""
        if key == "clear":
            self.entered = ""
        elif key == "ok":
            pin, self.entered = self.entered, ""
            self.dispatch("on_submit", pin)
        elif key.isdigit() and len(self.entered) < self.max_length:
            self.entered += key

    def on_submit(self, pin: str) -> None:
        pass
