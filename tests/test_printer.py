"""The counter's printer against a real CUPS with the cups-pdf virtual printer: a page prints and the PDF produced
holds that page; a disabled printer or a missing queue says why not."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from printing import pdf_queue, produced_pdf, render_gray, same_picture

from kiosk.config import PrinterConfig
from kiosk.devices.printer import CupsPrinter
from kiosk.video.papers import load_paper

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "config" / "papers" / "記入例 住民異動届.pdf"


@pytest.fixture(scope="module")
def queue() -> Iterator[str]:
    with pdf_queue() as q:
        yield q


def test_a_page_prints_and_the_pdf_holds_that_page(queue: str) -> None:
    """A rendered PDF page printed with lp comes out of cups-pdf as a PDF showing the same page."""
    page = load_paper(PAPER)[0]
    result = CupsPrinter(PrinterConfig(queue, timeout=60)).print_page(page.data, title="kiosk-test-print")
    assert result.ok, result.message
    pdf = produced_pdf(result.job)
    try:
        original = cv2.imdecode(np.frombuffer(page.data, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert original is not None
        assert same_picture(render_gray(pdf), np.asarray(original)) > 0.8
    finally:
        pdf.unlink()


def test_a_disabled_printer_says_so_and_prints_nothing(queue: str) -> None:
    """A printer that is switched off in CUPS gives 'failed' with the reason, without submitting a job."""
    subprocess.run(["cupsdisable", queue], check=True)
    try:
        result = CupsPrinter(PrinterConfig(queue)).print_page(b"\x89PNG", title="never")
        assert result.state == "failed" and "disabled" in result.message and not result.job
        assert result.reason == "disabled"
    finally:
        subprocess.run(["cupsenable", queue], check=True)


def test_a_missing_queue_names_it() -> None:
    """A queue that does not exist is reported by name, with where to look."""
    result = CupsPrinter(PrinterConfig("NO_SUCH_QUEUE_X")).print_page(b"x")
    assert result.state == "failed" and "NO_SUCH_QUEUE_X" in result.message and "lpstat" in result.message
    assert result.reason == "no_queue"


def test_printer_alerts_become_words_staff_can_act_on() -> None:
    """CUPS alerts such as media-empty-error (a real printer out of paper) are reported as 'out of paper'."""

    def lpstat(args: list[str], **_: object) -> subprocess.CompletedProcess[bytes]:
        out = b"printer HL is idle.  enabled since today\n\tAlerts: media-empty-error offline-report\n"
        return subprocess.CompletedProcess(args, 0, out, b"")

    result = CupsPrinter(PrinterConfig("HL"), run=lpstat).print_page(b"x")
    assert result.state == "failed" and result.message == "out of paper, printer offline"
    assert result.reason == "out_of_paper"  # the first alert: the one staff see in their language
