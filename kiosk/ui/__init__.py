"""Shared Kivy UI foundation for the counter kiosk and the staff station.

Pieces (import the Kivy ones only after :func:`kiosk.ui.env.prepare_kivy_env`):

- :mod:`kiosk.ui.env`: environment for Kivy (no argv parsing, no ~/.kivy, offscreen when headless).
- :mod:`kiosk.ui.fonts`: find a CJK font, register it as Kivy's default, check glyph coverage (pure).
- :mod:`kiosk.ui.i18n`: translation tables (``kiosk/ui/strings/*.toml``, ja + en) (pure).
- :mod:`kiosk.ui.style`: palette with contrast ratios and physical sizes (mm → px) (pure).
- :mod:`kiosk.ui.app`: :class:`~kiosk.ui.app.KioskApp`, the base App with ``lang``, ``tr()``, sizes.
- :mod:`kiosk.ui.video`: :class:`~kiosk.ui.video.VideoView`, polls a frame sink and blits into a texture.
- :mod:`kiosk.ui.widgets`: large buttons and labels (``widgets.kv``), PIN pad.
- :mod:`kiosk.ui.screenshot`: save the window to a PNG.
- :mod:`kiosk.ui.driver`: drive a running app with simulated touches (tests, screenshot script).
"""
