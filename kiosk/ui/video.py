"""VideoView: shows the newest frame of a frame sink, polled on Kivy's main thread.

Frames arrive on other threads (capture) or in aiortc coroutines; a sink keeps only the newest one as
``(seq, rgb)`` where ``seq`` grows with every new frame. The view polls the sink with Kivy's clock,
uploads a frame only when ``seq`` changed, and draws it letterboxed (aspect ratio kept) on a dark
background. ``frames_shown`` counts uploads, so tests can check that the picture really moves.

The view tells its source the size it is shown at, in pixels (``set_display_size``, when the source has it;
``(0, 0)`` while the view is off screen), so frames are converted and shrunk to that size before they reach
the texture (``kiosk.video.sink``): the GPU gets what is displayed, not what was captured or decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from kivy.clock import Clock
from kivy.graphics import Color, Rectangle
from kivy.graphics.texture import Texture
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, ObjectProperty
from kivy.uix.widget import Widget

__all__ = ["DisplayForwarder", "FrameSource", "LatestFrameSink", "VideoView"]

Size = tuple[int, int]
HIDDEN: Size = (0, 0)


class FrameSource(Protocol):
    """Anything with ``latest() -> (seq, rgb) | None`` (``kiosk.video.sink.FrameSink`` is one).

    A source may also have ``set_display_size(owner, size)``: ``owner`` (a view) shows it at ``size`` pixels
    (``(0, 0)``: off screen; ``None``: no longer shows it).
    """

    def latest(self) -> tuple[int, np.ndarray] | None: ...


class DisplayForwarder:
    """For frame sources that look their sink up on every poll (the call's sinks change with the call): keeps the
    display sizes the views said and hands them to whichever sink is current.

    ``turned``: the source rotates frames by 90° or 270° after the sink converted them (the box is swapped).
    """

    def __init__(self) -> None:
        self._sizes: dict[int, tuple[object, Size]] = {}
        self._version = 0
        self._applied: tuple[int, int, bool] | None = None  # (id of sink, version, turned)

    def set(self, owner: object, size: Size | None) -> None:
        if size is None:
            self._sizes.pop(id(owner), None)
        else:
            self._sizes[id(owner)] = (owner, size)
        self._version += 1

    def apply(self, sink: object, turned: bool = False) -> None:
        """Tell ``sink`` the sizes if it has not been told these (cheap when nothing changed)."""
        setter = getattr(sink, "set_display_size", None)
        if setter is None or self._applied == (id(sink), self._version, turned):
            return
        for owner, (w, h) in self._sizes.values():
            setter(owner, (h, w) if turned else (w, h))
        self._applied = (id(sink), self._version, turned)


class LatestFrameSink:
    """Adapts a ``() -> rgb | None`` getter (e.g. ``VideoSource.latest_frame``) to :class:`FrameSource`.

    A new sequence number is issued whenever the getter returns a different array object.
    """

    def __init__(self, getter: Callable[[], np.ndarray | None]) -> None:
        self._getter = getter
        self._last: np.ndarray | None = None
        self._seq = 0

    def latest(self) -> tuple[int, np.ndarray] | None:
        frame = self._getter()
        if frame is None:
            return None
        if frame is not self._last:
            self._last = frame
            self._seq += 1
        return self._seq, frame


class VideoView(Widget):
    """Draws the newest frame of :attr:`sink`; dark background while there is none.

    Properties:
        sink: a :class:`FrameSource` or ``None``.
        fps: how often the sink is polled.
        mirror: flip left-right (a self-view should look like a mirror).
        frames_shown: number of frames uploaded so far (for tests and diagnostics).
        has_frame: whether a picture is on screen.
        background: RGBA of the letterbox area.
    """

    sink = ObjectProperty(None, allownone=True)
    fps = NumericProperty(15.0)
    mirror = BooleanProperty(False)
    frames_shown = NumericProperty(0)
    has_frame = BooleanProperty(False)
    frame_size = ListProperty([0, 0])
    background = ListProperty([0.118, 0.149, 0.188, 1.0])

    def __init__(self, **kwargs: Any) -> None:
        self._texture: Texture | None = None
        self._last_seq: int | None = None
        self._event: Any = None
        self._told: tuple[object, Size] | None = None  # (source, size) last said to the source
        super().__init__(**kwargs)
        with self.canvas:
            self._bg_color = Color(*self.background)
            self._bg = Rectangle(pos=self.pos, size=self.size)
            self._fg_color = Color(1, 1, 1, 0)
            self._rect = Rectangle(pos=self.pos, size=(0, 0))
        self.bind(pos=self._layout, size=self._layout, background=self._on_background)
        self._schedule()
        self.bind(fps=lambda *_: self._schedule())

    # -- polling -------------------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._event is not None:
            self._event.cancel()
        self._event = Clock.schedule_interval(self._tick, 1.0 / max(self.fps, 1.0))

    def _tick(self, _dt: float) -> None:
        # Must return None: a Kivy interval callback returning False is unscheduled.
        self.poll()

    def on_sink(self, _inst: object, _sink: object) -> None:
        self._untell()
        self.clear()

    @property
    def display_size(self) -> Size:
        """The size this view shows a picture at, in window pixels; (0, 0) while it is not on screen."""
        if self.get_root_window() is None or self.width < 1 or self.height < 1:
            return HIDDEN
        return int(self.width), int(self.height)

    def _tell(self, sink: Any) -> None:
        size = self.display_size
        if self._told is not None and self._told[0] is sink and self._told[1] == size:
            return
        self._untell()
        setter = getattr(sink, "set_display_size", None)
        if setter is not None:
            setter(self, size)
            self._told = (sink, size)

    def _untell(self) -> None:
        told, self._told = self._told, None
        if told is not None:
            try:
                told[0].set_display_size(self, None)  # type: ignore[attr-defined]
            except Exception:  # a closed source must not take the UI down
                pass

    def poll(self, _dt: float = 0.0) -> bool:
        """Upload the sink's newest frame if it is new and the view is on screen; returns whether one was
        uploaded."""
        sink = self.sink
        if sink is None:
            return False
        self._tell(sink)
        if self._told is not None and self._told[1] == HIDDEN:
            return False  # off screen: nothing to upload (the source converts nothing for it either)
        try:
            item = sink.latest()
        except Exception:  # a closed sink must not take the UI down
            return False
        if item is None:
            return False
        seq, rgb = item
        if seq == self._last_seq:
            return False
        self._last_seq = seq
        self.show_frame(rgb)
        return True

    def show_frame(self, rgb: np.ndarray) -> None:
        """Upload one RGB frame (``H×W×3`` uint8) and draw it."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an H×W×3 RGB frame, found shape {rgb.shape}")
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        if self._texture is None or tuple(self._texture.size) != (w, h):
            self._texture = Texture.create(size=(w, h), colorfmt="rgb")
            self._texture.flip_vertical()  # numpy rows run top-down, GL textures bottom-up
            if self.mirror:
                self._texture.flip_horizontal()
            self._rect.texture = self._texture
            self.frame_size = [w, h]
        # Kivy takes only writable buffers and frames are read-only (shared): one copy, of a frame already
        # shrunk to the view's size by its source.
        data = np.ascontiguousarray(rgb, dtype=np.uint8)
        self._texture.blit_buffer(data.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
        self._rect.texture = self._texture
        self._fg_color.a = 1
        self.frames_shown += 1
        self.has_frame = True
        self._layout()
        self.canvas.ask_update()

    def clear(self) -> None:
        """Forget the picture (nothing of a call may stay on screen or in memory)."""
        self._texture = None
        self._last_seq = None
        self._rect.texture = None
        self._fg_color.a = 0
        self.has_frame = False
        self.frame_size = [0, 0]

    def stop(self) -> None:
        """Stop polling (the widget is being thrown away)."""
        self._untell()
        if self._event is not None:
            self._event.cancel()
            self._event = None

    # -- drawing -------------------------------------------------------------------------------
    def _on_background(self, *_: object) -> None:
        self._bg_color.rgba = self.background

    def _layout(self, *_: object) -> None:
        self._bg.pos, self._bg.size = self.pos, self.size
        fw, fh = self.frame_size
        if not fw or not fh or not self.width or not self.height:
            self._rect.size = (0, 0)
            return
        scale = min(self.width / fw, self.height / fh)
        w, h = fw * scale, fh * scale
        self._rect.size = (w, h)
        self._rect.pos = (self.x + (self.width - w) / 2, self.y + (self.height - h) / 2)
