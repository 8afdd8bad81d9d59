"""Where staff marks land on a screen, and when the paper under the document camera moved. Pure (numpy only).

Marks travel as fractions of the picture (0..1, origin top left, as in image rows and columns). Each side shows
the picture letterboxed (aspect kept) in a widget whose origin is bottom left (Kivy): :func:`fit_rect` gives the
picture's rectangle there, :func:`to_screen` and :func:`to_fraction` convert both ways, so a circle drawn by staff
on their view of the document falls on the same words of the paper on the counter's preview.

:class:`PaperMotion` decides that the paper moved (the marks no longer point at what staff meant): it compares a
small grey thumbnail of each document frame with the one taken when the marks arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiosk.assist.messages import Mark

__all__ = [
    "PaperMotion",
    "Rect",
    "ScreenMark",
    "fit_rect",
    "screen_mark",
    "thumbnail",
    "to_fraction",
    "to_screen",
]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float


def fit_rect(frame_w: float, frame_h: float, x: float, y: float, w: float, h: float) -> Rect | None:
    """The rectangle a ``frame_w``×``frame_h`` picture occupies when drawn letterboxed in the box (x, y, w, h)."""
    if frame_w <= 0 or frame_h <= 0 or w <= 0 or h <= 0:
        return None
    scale = min(w / frame_w, h / frame_h)
    pw, ph = frame_w * scale, frame_h * scale
    return Rect(x + (w - pw) / 2, y + (h - ph) / 2, pw, ph)


def to_screen(fx: float, fy: float, rect: Rect) -> tuple[float, float]:
    """A point given as fractions of the picture (top-left origin) → screen coordinates (bottom-left origin)."""
    return rect.x + fx * rect.w, rect.y + (1.0 - fy) * rect.h


def to_fraction(sx: float, sy: float, rect: Rect) -> tuple[float, float] | None:
    """Screen coordinates → fractions of the picture; None outside the picture."""
    if rect.w <= 0 or rect.h <= 0:
        return None
    fx, fy = (sx - rect.x) / rect.w, 1.0 - (sy - rect.y) / rect.h
    if not (0.0 <= fx <= 1.0 and 0.0 <= fy <= 1.0):
        return None
    return fx, fy


@dataclass(frozen=True)
class ScreenMark:
    """A mark in screen pixels: centre (or arrow tail), radius for circles, arrow head."""

    kind: str
    x: float
    y: float
    r: float = 0.0
    x2: float = 0.0
    y2: float = 0.0


def screen_mark(mark: Mark, rect: Rect) -> ScreenMark:
    """Where ``mark`` is drawn in ``rect`` (a circle's radius is a fraction of the picture's width)."""
    x, y = to_screen(mark.x, mark.y, rect)
    if mark.kind == "circle":
        return ScreenMark("circle", x, y, r=mark.r * rect.w)
    if mark.kind == "arrow":
        x2, y2 = to_screen(mark.x2, mark.y2, rect)
        return ScreenMark("arrow", x, y, x2=x2, y2=y2)
    return ScreenMark(mark.kind, x, y)


def thumbnail(rgb: np.ndarray, size: tuple[int, int] = (32, 18)) -> np.ndarray:
    """A small grey picture of a frame (block means), cheap enough to take several times a second."""
    h, w = rgb.shape[:2]
    tw, th = size
    grey = rgb.mean(axis=2) if rgb.ndim == 3 else rgb.astype(np.float32)
    ys = (np.arange(th + 1) * h) // th
    xs = (np.arange(tw + 1) * w) // tw
    out = np.empty((th, tw), np.float32)
    for i in range(th):
        band = grey[ys[i] : max(ys[i + 1], ys[i] + 1)]
        sums = np.add.reduceat(band.sum(axis=0), xs[:-1])
        out[i] = sums / (np.maximum(np.diff(xs), 1) * band.shape[0])
    return out


class PaperMotion:
    """Has the document camera's picture changed substantially since the marks were placed?

    Args:
        threshold: mean absolute difference of the grey thumbnails (0..255) above which the paper moved; a hand
            passing over the paper or a sheet pushed aside gives 20-60, camera noise and lighting flicker 1-3.
        frames: consecutive frames over the threshold needed (a single glitch does not wipe the marks).
    """

    def __init__(self, threshold: float = 12.0, frames: int = 2) -> None:
        self.threshold = threshold
        self.frames = frames
        self._reference: np.ndarray | None = None
        self._over = 0
        self.last_difference = 0.0

    def anchor(self, rgb: np.ndarray | None) -> None:
        """Take ``rgb`` as the picture the marks belong to (None: no reference, nothing can move)."""
        self._reference = thumbnail(rgb) if rgb is not None else None
        self._over = 0

    @property
    def anchored(self) -> bool:
        return self._reference is not None

    def moved(self, rgb: np.ndarray) -> bool:
        """Feed the newest frame; True once the paper has moved (then the reference is dropped)."""
        if self._reference is None:
            return False
        thumb = thumbnail(rgb)
        if thumb.shape != self._reference.shape:
            return False
        self.last_difference = float(np.abs(thumb - self._reference).mean())
        self._over = self._over + 1 if self.last_difference > self.threshold else 0
        if self._over >= self.frames:
            self._reference = None
            self._over = 0
            return True
        return False
