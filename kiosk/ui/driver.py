"""Drive a running Kivy app from asyncio: start it in-process, wait for conditions, tap with simulated touches.

Used by the UI tests and by ``scripts/screenshots``. The app runs with ``App.async_run`` on the current
asyncio loop; the driver's coroutines yield to it while they wait, so Kivy keeps drawing frames.
Nothing sleeps a fixed time: every wait polls a condition until a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from kivy.app import App
from kivy.uix.widget import Widget

__all__ = ["UiDriver", "label_problems", "running_app", "visible_texts", "walk"]

T = TypeVar("T")

_runs = 0


def _fresh_kivy_context() -> Any:
    """A new Kivy context (clock, factory, builder) and a live window, so an app can run again.

    Kivy's clock stops for good when an app stops; ``kivy/tests/fixtures.py`` does the same dance.
    """
    from kivy.clock import ClockBase
    from kivy.context import Context
    from kivy.core.window import Window
    from kivy.factory import Factory, FactoryBase
    from kivy.lang.builder import Builder, BuilderBase

    context = Context(init=False)
    context["Clock"] = ClockBase(async_lib="asyncio")
    context["Factory"] = FactoryBase.create_from(Factory)
    context["Builder"] = BuilderBase.create_from(Builder)
    context.push()
    Window.canvas.clear()
    return context


@contextlib.asynccontextmanager
async def running_app(app: App, *, timeout: float = 20.0) -> AsyncIterator[UiDriver]:
    """Run ``app`` on this asyncio loop until the block ends; yields a :class:`UiDriver`.

    Several apps may run one after the other in one process (one at a time).
    """
    global _runs
    from kivy.base import EventLoop, stopTouchApp

    context = _fresh_kivy_context() if _runs else None
    _runs += 1
    task = asyncio.get_running_loop().create_task(app.async_run(async_lib="asyncio"), name="kivy-app")
    driver = UiDriver(app)
    try:
        await driver.until(
            lambda: task.done() or (app.root is not None and EventLoop.status == "started"),
            timeout,
            "the app to start",
        )
        if task.done():
            task.result()  # raises what build() raised
            raise RuntimeError("the app stopped while starting")
        await driver.frames(3)
        yield driver
    finally:
        if not task.done():
            app.stop()
            stopTouchApp()
        try:
            await asyncio.wait_for(task, timeout)
        finally:
            from kivy.core.window import Window

            for child in Window.children[:]:
                Window.remove_widget(child)
            if context is not None:
                context.pop()


def walk(root: Widget) -> Iterator[Widget]:
    """Every widget under ``root`` (itself included), depth first."""
    yield root
    for child in root.children:
        yield from walk(child)


def label_problems(root: Widget) -> list[str]:
    """Every visible label or button whose text does not fit it, or whose Japanese breaks mid-word.

    A label "overflows" when the drawn text (its texture) is larger than the widget: the text is cut or spills
    over its neighbours; or when a fixed ``text_size`` height made it drop its last lines. Hidden widgets (opacity 0
    anywhere up the tree) and empty texts are ignored.
    """
    from kivy.uix.label import Label

    from kiosk.ui.textfit import dropped_text, has_japanese, mid_word_breaks, strip_markup

    problems: list[str] = []

    def visit(w: Widget, opacity: float) -> None:
        opacity *= w.opacity
        if opacity <= 0.01:
            return
        if isinstance(w, Label) and w.text.strip() and w.width > 1 and w.height > 1:
            w.texture_update()
            tw, th = w.texture_size
            name = f"{type(w).__name__} {strip_markup(w.text)[:40]!r}"
            if tw > w.width + 2 or th > w.height + 2:
                problems.append(
                    f"{name}: text {tw:.0f}x{th:.0f} px in a {w.width:.0f}x{w.height:.0f} px widget"
                )
            plain = strip_markup(w.text)
            lines = [
                "".join(word.text for word in line.words) for line in getattr(w._label, "_cached_lines", [])
            ]
            cut = "" if w.shorten or w.max_lines else dropped_text(plain, lines)
            if cut:
                problems.append(f"{name}: the end of the text is not drawn ({cut[:20]!r} missing)")
            if has_japanese(plain):
                for bad in mid_word_breaks(plain, lines):
                    problems.append(f"{name}: Japanese broken mid-word at {bad!r}")
        for child in w.children:
            visit(child, opacity)

    visit(root, 1.0)
    return problems


def visible_texts(root: Widget) -> list[str]:
    """Texts of every label/button under ``root`` that is on screen (not hidden, non-empty)."""
    out = []
    for w in walk(root):
        text = getattr(w, "text", None)
        if isinstance(text, str) and text and w.opacity > 0 and not getattr(w, "hidden_from_driver", False):
            out.append(text)
    return out


class UiDriver:
    """Waits and taps on a running app."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def until(self, predicate: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
        """Poll ``predicate`` (each Kivy frame or so) until it returns a truthy value; return it.

        Raises:
            TimeoutError: naming ``what`` when the deadline passes.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.1f} s for {what or predicate!r}")
            await asyncio.sleep(0.01)

    async def frames(self, n: int = 1, timeout: float = 10.0) -> None:
        """Let Kivy draw ``n`` more frames."""
        from kivy.clock import Clock

        target = Clock.frames + n
        await self.until(lambda: Clock.frames >= target, timeout, f"{n} Kivy frames")

    @staticmethod
    def window_pos(widget: Widget, rel: tuple[float, float] = (0.5, 0.5)) -> tuple[float, float]:
        """Window coordinates of a point inside ``widget`` (default: its centre)."""
        x = widget.x + widget.width * rel[0]
        y = widget.y + widget.height * rel[1]
        return widget.to_window(x, y)

    async def touch_down(self, pos: tuple[float, float]) -> Any:
        """Put a finger down at window coordinates ``pos``; returns the touch."""
        from kivy.tests.common import UnitTestTouch

        touch = UnitTestTouch(*pos)
        touch.touch_down()
        await self.frames(1)
        return touch

    async def touch_up(self, touch: Any) -> None:
        touch.touch_up()
        await self.frames(1)

    def transitions_done(self) -> bool:
        """No screen manager under the app's root is in the middle of a transition.

        A ScreenManager ignores touches while a transition runs, even a ``NoTransition`` (it ends on
        the next clock tick), so a tap right after a screen change would be lost.
        """
        from kivy.uix.screenmanager import ScreenManager

        root = self.app.root
        if root is None:
            return True
        return not any(isinstance(w, ScreenManager) and w.transition.is_active for w in walk(root))

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until screen transitions are over."""
        await self.until(self.transitions_done, timeout, "screen transitions to finish")

    async def tap(self, target: Widget | tuple[float, float]) -> None:
        """Tap the centre of a widget (or a window position) with a simulated finger.

        Waits for screen transitions to finish first: a real finger cannot be faster than the screen.
        """
        await self.settle()
        if isinstance(target, Widget):
            if target.get_root_window() is None:
                raise AssertionError(f"cannot tap {target!r}: it is not on screen")
            pos = self.window_pos(target)
        else:
            pos = target
        touch = await self.touch_down(pos)
        await self.touch_up(touch)

    async def hold(
        self, pos: tuple[float, float], until: Callable[[], Any], timeout: float = 10.0, what: str = ""
    ) -> None:
        """Hold a finger at ``pos`` until ``until()`` is true, then lift it."""
        await self.settle()
        touch = await self.touch_down(pos)
        try:
            await self.until(until, timeout, what or "the long press to take effect")
        finally:
            await self.touch_up(touch)
