"""Shared Kivy UI foundation for the counter kiosk and the staff station.

Pieces (import the Kivy ones only after :func:`kiosk.ui.env.prepare_kivy_env`):

- :mod:`kiosk.ui.env`: environment for Kivy (no argv parsing, no ~/.kivy, offscreen when headless).
- :mod:`kiosk.ui.fonts`: find a CJK font, register it as Kivy's default, check glyph coverage (pure).
- :mod:`kiosk.ui.i18n`: translation tables (``kiosk/ui/strings/*.toml``, ja + en) (pure).
- :mod:`kiosk.ui.style`: palette with contrast ratios and physical sizes (mm → px) (pure).
- :mod:`kiosk.ui.app`: :class:`~kiosk.ui.app.KioskApp`, the base App with ``lang``, ``tr()``, sizes.
- :mod:`kiosk.ui.video`: :class:`~kiosk.ui.video.VideoView`, polls a frame sink and blits into a texture.
- :mod:`kiosk.ui.widgets`: ``BigButton`` (``bg``/``fg`` palette names), ``WrapLabel``, ``HoldCorner``
  (long press → ``on_hold``), ``PinPad`` (``on_submit(pin)``); ``widgets.kv`` also defines the kv classes
  ``LanguageSwitch`` (日本語 / English), ``TitleLabel`` and ``BodyLabel``.
- :mod:`kiosk.ui.sound`: ``RingTone`` (a generated, calm chime, looped).
- :mod:`kiosk.ui.screenshot`: ``save_screenshot(path)``, ``shoot_languages(app, driver, dir, stem)``.
- :mod:`kiosk.ui.driver`: ``running_app(app)`` runs an app in-process on the current asyncio loop (several apps
  may run one after another in one process) and yields a ``UiDriver``: ``until()``, ``frames()``, ``tap()``,
  ``hold()``, ``settle()``; ``visible_texts(widget)`` and ``walk(widget)`` for assertions.

Environment order: ``prepare_kivy_env()`` before ``import kivy``, ``configure_window(w, h)`` before the window
exists, ``restore_std_streams()`` after Kivy's import so tracebacks stay visible.
"""
