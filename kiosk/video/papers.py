"""Papers a staff station hands over the screen: PNG/JPEG files as they are, PDF pages rendered with poppler.

``pdftoppm`` (Debian ``poppler-utils``) renders each PDF page to PNG at :data:`RENDER_DPI` (sharp on a 40-inch
screen and on paper, ~0.3-1 MB a page); nothing is written to disk (the PNG comes back on its standard output).
:func:`list_papers` lists a station's folder of prepared papers (記入例, leaflets, maps: ``[papers] folder``).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

from kiosk.assist.channel import PageImage
from kiosk.assist.messages import MAX_PAGE_BYTES, MAX_PAGES

__all__ = ["PAPER_SUFFIXES", "PaperError", "image_size", "list_papers", "load_paper", "render_pdf_page"]

RENDER_DPI = 110
PAPER_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg")


class PaperError(Exception):
    """A paper that cannot be sent: unreadable, not an image or PDF, too large, or poppler missing."""


def image_size(data: bytes) -> tuple[str, int, int]:
    """Format and size of a PNG or JPEG file, read from its header (no decoding)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                break
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return "jpeg", w, h
            i += 2 + length
    raise PaperError("not a PNG or JPEG image")


def _run(args: list[str], timeout: float = 60.0) -> bytes:
    if shutil.which(args[0]) is None:
        raise PaperError(f"'{args[0]}' not found: install poppler-utils to hand over PDF papers")
    try:
        r = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        raise PaperError(f"{args[0]}: {err}") from err
    if r.returncode != 0:
        raise PaperError(f"{args[0]} failed on {args[-1]}: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout


def pdf_pages(path: Path) -> int:
    """Number of pages of a PDF (``pdfinfo``)."""
    m = re.search(rb"^Pages:\s+(\d+)", _run(["pdfinfo", str(path)]), re.MULTILINE)
    if m is None:
        raise PaperError(f"{path}: pdfinfo found no page count")
    return int(m.group(1))


def render_pdf_page(path: Path, page: int, dpi: int = RENDER_DPI) -> PageImage:
    """Page ``page`` (1-based) of a PDF as a PNG."""
    data = _run(
        ["pdftoppm", "-png", "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile", str(path)]
    )
    fmt, w, h = image_size(data)
    return PageImage(data, fmt, w, h)


def load_paper(path: str | Path) -> list[PageImage]:
    """Every page of a paper (at most :data:`MAX_PAGES`), ready for :meth:`StationAssist.send_paper`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PAPER_SUFFIXES:
        raise PaperError(f"{path}: papers are {', '.join(PAPER_SUFFIXES)} files")
    if suffix == ".pdf":
        count = pdf_pages(path)
        if count > MAX_PAGES:
            raise PaperError(f"{path}: {count} pages; at most {MAX_PAGES} can be handed over at once")
        pages = [render_pdf_page(path, n) for n in range(1, count + 1)]
    else:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise PaperError(f"{path}: {err}") from err
        fmt, w, h = image_size(data)
        pages = [PageImage(data, fmt, w, h)]
    for i, p in enumerate(pages):
        if len(p.data) > MAX_PAGE_BYTES:
            raise PaperError(f"{path}: page {i + 1} is {len(p.data)} bytes, over {MAX_PAGE_BYTES}")
    return pages


def list_papers(folder: str | Path) -> list[Path]:
    """The papers in a folder (PDF, PNG, JPEG), sorted by name; empty when there is no such folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PAPER_SUFFIXES)
