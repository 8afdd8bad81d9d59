"""KioskApp: the base Kivy App of the counter kiosk and the staff station.

It owns the things every screen needs: the translation table and the current language (``lang``),
palette colours, physical sizes, the CJK font and the window set-up. kv files use::

    text: app.tr("start.title", app.lang)     # re-evaluated when the language changes
    color: app.c("text")
    font_size: app.sizes.font_title
    height: app.sizes.big_button

Subclasses build their screens in ``build()`` after calling :meth:`KioskApp.setup_ui`.
"""

from __future__ import annotations

import logging
from typing import Any

from kivy.app import App
from kivy.properties import ObjectProperty, StringProperty

from common.logs import event
from kiosk.config import UiConfig
from kiosk.ui.fonts import find_cjk_font, register_cjk_font
from kiosk.ui.i18n import LANGUAGES, StringTable, load_strings
from kiosk.ui.style import PALETTE, Palette, Sizes, rgba
from kiosk.ui.widgets import load_widget_styles

__all__ = ["KioskApp"]

log = logging.getLogger(__name__)


class KioskApp(App):
    """Base app: language, strings, colours, sizes, font.

    Args:
        ui: the ``[terminal]`` section of the terminal config.
        tables: translation table names to load (``"common"`` is always loaded first).
    """

    lang = StringProperty("ja")
    sizes = ObjectProperty(None)

    def __init__(self, ui: UiConfig, *, tables: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ui_config = ui
        self.lang = ui.language
        self.palette: Palette = PALETTE
        self.strings: StringTable = load_strings("common", *tables)
        self.sizes = Sizes(ui.width, ui.screen_width_mm)
        self.font_path = find_cjk_font(ui.font)
        register_cjk_font(self.font_path)
        self.stopping = False  # set once the app begins to stop: screens are no longer refreshed

    # -- lifecycle -----------------------------------------------------------------------------
    def _stop(self, *largs: Any) -> None:
        """Stop, but keep ``App.get_running_app()`` answering until the loop has really ended.

        Kivy forgets the running app at once, while the loop still runs a few clock ticks (label texture
        updates, relay handlers) and ``aclose`` still resets properties, whose kv rules read ``app``: each would
        raise ``AttributeError: 'NoneType' object has no attribute 'bind'`` from the kv file. The next app to run
        replaces it as the running app.
        """
        self.stopping = True
        super()._stop(*largs)
        App._running_app = self

    # -- for kv --------------------------------------------------------------------------------
    def tr(self, key: str, lang: str | None = None, **fields: Any) -> str:
        """The translated text of ``key`` (pass ``app.lang`` from kv so it updates on a switch)."""
        return self.strings.get(key, lang or self.lang, **fields)

    def c(self, name: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
        """A palette colour by name, as Kivy RGBA."""
        return rgba(getattr(self.palette, name), alpha)

    def set_language(self, lang: str) -> None:
        """Switch every text on screen to ``lang`` (``ja`` or ``en``)."""
        if lang not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, found {lang!r}")
        if lang != self.lang:
            event(log, "language", move=f"{self.lang}->{lang}")
            self.lang = lang

    # -- window --------------------------------------------------------------------------------
    def setup_ui(self) -> None:
        """Size the window from the config, hide the cursor when full-screen, load shared styles."""
        from kivy.core.window import Window

        Window.clearcolor = self.c("background")
        if self.ui_config.fullscreen:
            Window.fullscreen = "auto"
            Window.show_cursor = False
        else:
            Window.size = (self.ui_config.width, self.ui_config.height)
        load_widget_styles()
