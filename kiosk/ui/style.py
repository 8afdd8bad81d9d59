"""Colours and physical sizes for touch screens used by elderly, first-time users. Pure: no Kivy.

Sizes are given in millimetres on the real screen and turned into pixels with the configured screen width
(``[terminal] width`` pixels across ``screen_width_mm``), so a touch target is at least
:data:`MIN_TOUCH_MM` wide and tall whatever the panel. Every text colour pair used by the widgets is listed
in :data:`TEXT_PAIRS` and must reach WCAG's 4.5:1 contrast (checked by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MIN_TOUCH_MM",
    "MIN_CONTRAST",
    "Palette",
    "PALETTE",
    "Sizes",
    "contrast_ratio",
    "rgba",
    "TEXT_PAIRS",
]

MIN_TOUCH_MM = 15.0
MIN_CONTRAST = 4.5


def rgba(hex_colour: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """``"#RRGGBB"`` → Kivy's ``(r, g, b, a)`` in 0..1."""
    h = hex_colour.lstrip("#")
    if len(h) != 6:
        raise ValueError(f"colour must be #RRGGBB, found {hex_colour!r}")
    r, g, b = (int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return (r, g, b, alpha)


def _luminance(hex_colour: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b, _ = rgba(hex_colour)
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast_ratio(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio between two ``#RRGGBB`` colours (1.0 … 21.0)."""
    a, b = _luminance(fg), _luminance(bg)
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


@dataclass(frozen=True)
class Palette:
    """Named colours; text pairs are in :data:`TEXT_PAIRS`."""

    background: str = "#F6F4EF"  # warm off-white: calm, no glare
    text: str = "#1B1B1B"
    text_muted: str = "#4A4A4A"  # secondary text, still 8:1 on background
    panel: str = "#FFFFFF"
    primary: str = "#0B4F8A"  # department buttons
    on_primary: str = "#FFFFFF"
    unavailable: str = "#DCDAD5"  # greyed department buttons
    on_unavailable: str = "#3D3D3D"
    danger: str = "#B3261E"  # cancel, hang up
    on_danger: str = "#FFFFFF"
    neutral: str = "#3A4654"  # secondary buttons (back, language)
    on_neutral: str = "#FFFFFF"
    selected: str = "#1D6B3A"  # the current language, mute active
    on_selected: str = "#FFFFFF"
    notice: str = "#FFF3CD"  # "consultation only" banner
    on_notice: str = "#4D3800"
    dark: str = "#1E2630"  # out of service, video backgrounds
    on_dark: str = "#FFFFFF"
    on_dark_muted: str = "#C9D1DA"


PALETTE = Palette()

# (foreground, background) pairs that carry text somewhere in the UI.
TEXT_PAIRS: tuple[tuple[str, str], ...] = (
    ("text", "background"),
    ("text_muted", "background"),
    ("text", "panel"),
    ("text_muted", "panel"),
    ("on_primary", "primary"),
    ("on_unavailable", "unavailable"),
    ("on_danger", "danger"),
    ("on_neutral", "neutral"),
    ("on_selected", "selected"),
    ("on_notice", "notice"),
    ("on_dark", "dark"),
    ("on_dark_muted", "dark"),
)


@dataclass(frozen=True)
class Sizes:
    """Pixel sizes derived from the physical screen.

    Args:
        width_px: the screen's width in pixels (``[terminal] width``).
        width_mm: its physical width (``[terminal] screen_width_mm``).
    """

    width_px: int
    width_mm: float
    text_scale: float = (
        1.0  # the counter's "larger text" toggle: every font ×1.3, targets unchanged or larger
    )

    @property
    def px_per_mm(self) -> float:
        return self.width_px / self.width_mm

    def mm(self, millimetres: float) -> float:
        """Millimetres on the screen → pixels."""
        return millimetres * self.px_per_mm

    @property
    def touch(self) -> float:
        """Smallest touch target side (15 mm) in pixels."""
        return self.mm(MIN_TOUCH_MM)

    @property
    def button(self) -> float:
        """Height of an ordinary button (18 mm; taller with larger text)."""
        return max(self.mm(18) * self.text_scale, self.touch)

    @property
    def big_button(self) -> float:
        """Height of a main action button: department, cancel, hang up (26 mm; taller with larger text)."""
        return self.mm(26) * self.text_scale

    @property
    def font_small(self) -> float:
        return max(self.mm(5.6), 20) * self.text_scale

    @property
    def font_body(self) -> float:
        return max(self.mm(8.0), 28) * self.text_scale

    @property
    def font_title(self) -> float:
        return max(self.mm(12.0), 40) * self.text_scale

    @property
    def font_huge(self) -> float:
        return max(self.mm(16.0), 54) * self.text_scale

    @property
    def gap(self) -> float:
        """Space between touch targets (4 mm) so that a shaky finger does not hit a neighbour."""
        return self.mm(4)
