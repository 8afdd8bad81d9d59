"""Reusable widgets: big buttons and labels (styled in ``widgets.kv``), a PIN pad and a hidden corner.

Every text widget here fits its text (:class:`FitTextMixin`): Japanese breaks only where Japanese allows
(:mod:`kiosk.ui.textfit`), and a text that still does not fit (a word wider than the widget, or more lines than a
fixed-height button holds) is drawn in a smaller font, down to ``min_font_ratio`` of its size.

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
from kivy.utils import get_hex_from_color

from kiosk.ui.textfit import dropped_text, has_japanese, mid_word_breaks, strip_markup, wrap

__all__ = ["BigButton", "FitLabel", "FitTextMixin", "HoldCorner", "PinPad", "WrapLabel", "load_widget_styles"]

KV_FILE = Path(__file__).with_name("widgets.kv")


class FitTextMixin:
    """For a Kivy ``Label`` (or ``Button``): wrap Japanese only at allowed breaks; shrink what still does not fit.

    ``fit_height``: the widget's height is fixed (a button), so the text must fit it too. The widget's own
    ``font_size`` is never changed (kv binds it); only the size the text is drawn at.
    """

    fit_height = BooleanProperty(False)
    min_font_ratio = NumericProperty(0.55)

    def on_height(self, *_: Any) -> None:
        # The shrink depends on the height only when it must fit: measured again once the layout has settled
        # (a first pass at a transient small height would otherwise leave the text tiny for good).
        if self.fit_height:
            self._trigger_texture()  # type: ignore[attr-defined]

    def texture_update(self, *largs: Any) -> None:
        label: Any = self
        source = label.text
        core = label._label
        base = float(label.font_size)
        width = label.text_size[0] if label.text_size and label.text_size[0] else None
        japanese = has_japanese(strip_markup(source))
        if not source or not (japanese or self.fit_height):
            core.options["font_size"] = base
            super().texture_update(*largs)  # type: ignore[misc]
            return
        scale = 1.0
        while True:
            core.options["font_size"] = base * scale
            text = wrap(source, width, self._measure) if width and japanese else source
            self._render(text)
            if scale <= self.min_font_ratio or not self._needs_shrink(source, width):
                return
            scale = max(self.min_font_ratio, scale * 0.9)

    def _measure(self, text: str) -> float:
        return float(self._label.get_extents(strip_markup(text))[0])  # type: ignore[attr-defined]

    def _render(self, text: str) -> None:
        label: Any = self
        core = label._label
        if label.markup:
            color = label.disabled_color if label.disabled else label.color
            core.text = f"[color={get_hex_from_color(color)}]{text}[/color]"
            core.refresh()
            if core.texture:
                core.texture.bind()
            label.refs, label.anchors = core.refs, core.anchors
        else:
            core.text = text
            core.refresh()
        label.texture = core.texture
        if core.texture is not None:
            label.texture_size = list(core.texture.size)
        label.is_shortened = core.is_shortened

    def _needs_shrink(self, source: str, width: float | None) -> bool:
        label: Any = self
        lines = ["".join(w.text for w in line.words) for line in getattr(label._label, "_cached_lines", [])]
        if mid_word_breaks(strip_markup(source), lines):
            return True
        if self.fit_height and not label.shorten and dropped_text(source, lines):
            return True  # a fixed text_size height drew only the lines that fit
        tw, th = label.texture_size
        if width and tw > width + 1:
            return True
        if label.text_size and label.text_size[1] is not None:
            # The texture is exactly text_size high: what does not fit is dropped (checked above).
            return False
        return bool(self.fit_height and th > label.height - 2)


class FitLabel(FitTextMixin, Label):
    """A plain label that fits its text (see :class:`FitTextMixin`)."""


class BigButton(FitTextMixin, Button):
    """A large, flat, high-contrast button; ``bg``/``fg`` are palette names. Its text fits its fixed height."""

    bg = StringProperty("primary")
    fg = StringProperty("on_primary")
    sub_text = StringProperty("")  # optional second line, drawn smaller (kv)


class WrapLabel(FitTextMixin, Label):
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
