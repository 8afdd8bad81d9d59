"""Synthetic pictures: the moving test scene, the A4 form under the document camera, the placeholder.

Pure rendering with numpy and Pillow (no capture, no event loop), so the same pictures serve the
demo, the tests and the benchmarks. ``DOCUMENT_LINES``/``DOCUMENT_TEXT`` are the exact text printed on
the synthetic form, for OCR benchmarks to compare against.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from common.logs import event
from kiosk.video.stamp import draw_frame_stamp, stamp_block_size

__all__ = [
    "DOCUMENT_LINES",
    "DOCUMENT_TEXT",
    "IPAEX_GOTHIC",
    "DocumentLine",
    "SyntheticScene",
    "load_font",
    "render_document_page",
    "render_placeholder",
]

log = logging.getLogger(__name__)

IPAEX_GOTHIC = Path("/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.lru_cache(maxsize=32)
def load_font(size: int, *, require_cjk: bool = False) -> Font:
    """The IPAex Gothic font at ``size`` px (Japanese and Latin).

    Args:
        size: pixel size.
        require_cjk: raise instead of falling back to Pillow's built-in Latin-only font.

    Raises:
        FileNotFoundError: the font is missing and ``require_cjk`` is set.
    """
    try:
        return ImageFont.truetype(str(IPAEX_GOTHIC), size)
    except OSError as err:
        if require_cjk:
            raise FileNotFoundError(
                f"Japanese font {IPAEX_GOTHIC} is missing (Debian package fonts-ipaexfont-gothic; "
                "scripts/setup installs it)"
            ) from err
        event(
            log, "font_missing", logging.WARNING, font=IPAEX_GOTHIC, effect="Japanese text renders as boxes"
        )
        return ImageFont.load_default(size)


# ---------------------------------------------------------------------------------------------------
# The moving test scene of synthetic:camera


class SyntheticScene:
    """A moving test picture with a readable clock and a machine-readable stamp, as cheap as a real camera.

    Each call to :meth:`render` makes the next frame: a fixed colour-bar background, a square that sweeps left
    and right, the wall-clock time and frame number as text, and the frame stamp (:mod:`kiosk.video.stamp`) with
    the frame number and the capture time in the top-left corner.

    Everything is drawn once, at construction: the background, the square and the clock's glyphs (``0``–``9``,
    ``:``, ``.``, ``#`` and space, on black cells). A frame is then one copy of the background plus a few small
    pastes and the stamp — well under a millisecond at 1280×720, less than a USB camera's MJPG decode — so a
    benchmark on synthetic cameras measures the call's pipeline, not the drawing of its test pattern (drawing the
    clock with Pillow for every frame cost a tenth of a core at 720p30).
    """

    GLYPHS = "0123456789:.# "

    def __init__(self, width: int, height: int) -> None:
        if stamp_block_size(width, height) is None:
            raise ValueError(f"synthetic camera: {width}×{height} is too small (at least 96×16)")
        self.width = width
        self.height = height
        self.counter = 0
        self._background = self._render_background(width, height)
        self._box = max(8, height // 6)
        self._square = self._render_square(self._box)
        self._font_size = max(10, height // 14)
        self._glyphs = self._render_glyphs(load_font(self._font_size), self._font_size)

    @staticmethod
    def _render_background(width: int, height: int) -> npt.NDArray[np.uint8]:
        bars = np.array(
            [
                [192, 192, 192],
                [192, 192, 0],
                [0, 192, 192],
                [0, 192, 0],
                [192, 0, 192],
                [192, 0, 0],
                [0, 0, 192],
            ],
            dtype=np.uint8,
        )
        columns = bars[(np.arange(width) * len(bars)) // width]
        image = np.repeat(columns[None, :, :], height, axis=0)
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        image[height * 3 // 4 :, :, :] = ramp.astype(np.uint8)[None, :, None]
        image.setflags(write=False)
        return np.ascontiguousarray(image)

    @staticmethod
    def _render_square(box: int) -> npt.NDArray[np.uint8]:
        square = np.full((box, box, 3), 255, dtype=np.uint8)
        square[box // 4 : 3 * box // 4, box // 4 : 3 * box // 4] = (20, 20, 20)
        return square

    @classmethod
    def _render_glyphs(cls, font: Font, size: int) -> dict[str, npt.NDArray[np.uint8]]:
        """One fixed-width cell per clock character: white text with a black outline on black."""
        stroke = max(1, size // 12)
        cell_w = (
            max(int(font.getlength(c)) for c in cls.GLYPHS) + 2 * stroke
            if isinstance(font, ImageFont.FreeTypeFont)
            else size
        )
        cell_h = int(size * 1.3) + 2 * stroke
        glyphs = {}
        for char in cls.GLYPHS:
            cell = Image.new("RGB", (cell_w, cell_h), (0, 0, 0))
            ImageDraw.Draw(cell).text(
                (stroke, stroke),
                char,
                fill=(255, 255, 255),
                font=font,
                stroke_width=stroke,
                stroke_fill=(0, 0, 0),
            )
            glyphs[char] = np.asarray(cell).copy()
        return glyphs

    def render(self, now: float | None = None) -> npt.NDArray[np.uint8]:
        """The next frame (a new array) stamped with the frame counter and ``now`` (default: time.time())."""
        now = time.time() if now is None else now
        frame = self._background.copy()
        travel = max(1, self.width - self._box)
        step = self.counter * max(2, self.width // 90)
        x = step % (2 * travel)
        x = x if x < travel else 2 * travel - x
        y = (self.height - self._box) // 2
        frame[y : y + self._box, x : x + self._box] = self._square
        self._draw_clock(frame, now)
        draw_frame_stamp(frame, self.counter, int(now * 1000))
        self.counter += 1
        return frame

    def _draw_clock(self, frame: npt.NDArray[np.uint8], now: float) -> None:
        local = time.localtime(now)
        text = f"{time.strftime('%H:%M:%S', local)}.{int(now * 1000) % 1000:03d}  #{self.counter}"
        cell_h, cell_w = next(iter(self._glyphs.values())).shape[:2]
        top = self.height - int(self._font_size * 1.6)
        left = self._font_size // 2
        rows = min(cell_h, self.height - top)
        for i, char in enumerate(text):
            x = left + i * cell_w
            if x + cell_w > self.width or rows <= 0:
                break
            frame[top : top + rows, x : x + cell_w] = self._glyphs.get(char, self._glyphs[" "])[:rows]


# ---------------------------------------------------------------------------------------------------
# The A4 form of synthetic:document


@dataclass(frozen=True)
class DocumentLine:
    """One run of text on the synthetic form, in page millimetres (A4 = 210 × 297 mm).

    ``x_mm``/``y_mm`` is the top-left corner of the run; ``size_mm`` the font size (2.5 mm ≈ 7 pt).
    """

    text: str
    x_mm: float
    y_mm: float
    size_mm: float


#: The text on the synthetic form, top to bottom and left to right (a fictitious resident).
DOCUMENT_LINES: tuple[DocumentLine, ...] = (
    DocumentLine("様式第12号", 15, 12, 3.0),
    DocumentLine("受付番号 No. 2025-004817", 140, 12, 3.0),
    DocumentLine("住民異動届（転入）", 60, 24, 8.0),
    DocumentLine("Notification of Moving In", 70, 35, 4.5),
    DocumentLine("届出日 令和7年4月1日 (2025-04-01)", 15, 48, 4.0),
    DocumentLine("住所", 18, 62, 4.5),
    DocumentLine("〒060-8611 北海道札幌市中央区北1条西2丁目1番地", 45, 62, 4.5),
    DocumentLine("Address: 1-1 Kita 1-jo Nishi 2-chome, Chuo-ku, Sapporo", 45, 70, 3.5),
    DocumentLine("フリガナ トウベツ ハナコ", 45, 84, 3.0),
    DocumentLine("氏名", 18, 90, 4.5),
    DocumentLine("当別 花子", 45, 90, 6.0),
    DocumentLine("Name: HANAKO TOBETSU", 110, 91, 4.0),
    DocumentLine("生年月日", 18, 108, 4.5),
    DocumentLine("昭和58年7月14日 (1983-07-14)", 45, 108, 4.5),
    DocumentLine("性別 女", 150, 108, 4.5),
    DocumentLine("電話番号", 18, 124, 4.5),
    DocumentLine("090-1234-5678", 45, 124, 4.5),
    DocumentLine("世帯主", 18, 140, 4.5),
    DocumentLine("当別 太郎", 45, 140, 4.5),
    DocumentLine("続柄 妻", 150, 140, 4.5),
    DocumentLine("転入前の住所", 18, 156, 4.0),
    DocumentLine("北海道石狩郡当別町白樺町58番地9", 45, 156, 4.5),
    DocumentLine("Previous address: 58-9 Shirakaba-cho, Tobetsu-cho, Ishikari-gun", 45, 164, 3.0),
    DocumentLine("転入日 令和7年3月28日", 18, 178, 4.0),
    DocumentLine("個人番号 1234 5678 9012", 110, 178, 4.0),
    DocumentLine("国民健康保険 記号 札幌-07 番号 00123456", 18, 192, 3.0),
    DocumentLine("国民年金 基礎年金番号 4321-987654", 18, 199, 3.0),
    DocumentLine("手数料 0円 / 交付枚数 2通 / 350円", 18, 206, 3.0),
    DocumentLine("※ 記入内容に誤りがないことを確認してください。", 15, 240, 2.5),
    DocumentLine("Please check that all entries are correct before signing.", 15, 246, 2.5),
    DocumentLine("署名 Signature", 120, 258, 3.5),
    DocumentLine("様式第12号（2024.10改訂） Form 12 rev. 2024-10  1/1  TEL 011-211-2111", 15, 284, 2.2),
)

#: Just the text of :data:`DOCUMENT_LINES`, in the same order.
DOCUMENT_TEXT: tuple[str, ...] = tuple(line.text for line in DOCUMENT_LINES)

_PAGE_MM = (210.0, 297.0)
_FIELD_ROWS_MM = (58, 80, 102, 118, 134, 150, 172)  # horizontal rules of the form table


@functools.lru_cache(maxsize=4)
def render_document_page(width: int, height: int) -> npt.NDArray[np.uint8]:
    """The A4 form lying on a desk, as the document camera sees it (read-only, cached).

    The page stands upright and fills 96 % of the frame height (or of the width, for a portrait
    frame), centred on a dark desk.

    Raises:
        FileNotFoundError: the Japanese font is missing.
    """
    scale = min(height * 0.96 / _PAGE_MM[1], width * 0.96 / _PAGE_MM[0])  # px per mm
    page_w, page_h = int(_PAGE_MM[0] * scale), int(_PAGE_MM[1] * scale)
    left, top = (width - page_w) // 2, (height - page_h) // 2
    image = Image.new("RGB", (width, height), (58, 48, 40))
    draw = ImageDraw.Draw(image)
    draw.rectangle((left, top, left + page_w - 1, top + page_h - 1), fill=(250, 250, 246))

    def px(x_mm: float, y_mm: float) -> tuple[int, int]:
        return left + round(x_mm * scale), top + round(y_mm * scale)

    rule = max(1, round(0.3 * scale))
    for y in _FIELD_ROWS_MM:
        draw.line((px(15, y), px(195, y)), fill=(90, 90, 90), width=rule)
    draw.line((px(15, _FIELD_ROWS_MM[0]), px(15, _FIELD_ROWS_MM[-1])), fill=(90, 90, 90), width=rule)
    draw.line((px(195, _FIELD_ROWS_MM[0]), px(195, _FIELD_ROWS_MM[-1])), fill=(90, 90, 90), width=rule)
    draw.line((px(40, _FIELD_ROWS_MM[0]), px(40, _FIELD_ROWS_MM[-1])), fill=(90, 90, 90), width=rule)
    draw.rectangle((*px(118, 254), *px(195, 270)), outline=(90, 90, 90), width=rule)
    for line in DOCUMENT_LINES:
        font = load_font(max(6, round(line.size_mm * scale)), require_cjk=True)
        draw.text(px(line.x_mm, line.y_mm), line.text, fill=(15, 15, 20), font=font)
    array = np.asarray(image).copy()
    array.setflags(write=False)
    return array


# ---------------------------------------------------------------------------------------------------
# The placeholder shown while a camera is unavailable

PLACEHOLDER_TITLE = "カメラが使用できません"
PLACEHOLDER_SUBTITLE = "camera unavailable"


@functools.lru_cache(maxsize=8)
def render_placeholder(width: int, height: int) -> npt.NDArray[np.uint8]:
    """The "カメラが使用できません / camera unavailable" picture at this size (read-only, cached)."""
    image = Image.new("RGB", (width, height), (38, 42, 50))
    draw = ImageDraw.Draw(image)
    title = min(height // 11, width * 8 // (10 * len(PLACEHOLDER_TITLE)))
    subtitle = min(height // 18, width * 8 // (10 * len(PLACEHOLDER_SUBTITLE) // 2))
    for text, size, dy, colour in (
        (PLACEHOLDER_TITLE, title, -0.6, (240, 240, 240)),
        (PLACEHOLDER_SUBTITLE, subtitle, 0.9, (190, 196, 206)),
    ):
        font = load_font(max(8, size))
        box = draw.textbbox((0, 0), text, font=font)
        text_w, text_h = box[2] - box[0], box[3] - box[1]
        x = (width - text_w) // 2 - box[0]
        y = height // 2 + int(dy * max(8, size)) - text_h // 2 - box[1]
        draw.text((x, y), text, fill=colour, font=font)
    array = np.asarray(image).copy()
    array.setflags(write=False)
    return array
