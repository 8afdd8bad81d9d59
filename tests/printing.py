"""A real CUPS with a virtual PDF printer for the printing tests: cupsd started if it is not running, a queue of
this test run's own (``KIOSK_TEST_<pid>``, removed afterwards), and the PDFs it writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

PPD = "lsb/usr/cups-pdf/CUPS-PDF_opt.ppd"
OUT_DIR = Path.home() / "PDF"  # cups-pdf's "Out ${HOME}/PDF" for the job's user (/etc/cups/cups-pdf.conf)


def _scheduler_running() -> bool:
    r = subprocess.run(["lpstat", "-r"], capture_output=True, text=True, check=False)
    return "scheduler is running" in r.stdout


def ensure_cupsd(timeout: float = 20.0) -> None:
    """Start cupsd (it daemonizes) unless it runs already; wait until lpstat sees it."""
    if shutil.which("lpstat") is None or shutil.which("cupsd") is None:
        raise RuntimeError(
            "CUPS is not installed: scripts/setup installs cups, cups-client and printer-driver-cups-pdf"
        )
    if _scheduler_running():
        return
    subprocess.run(["cupsd"], check=True, timeout=30)
    deadline = time.monotonic() + timeout
    while not _scheduler_running():
        if time.monotonic() > deadline:
            raise RuntimeError("cupsd did not come up")
        time.sleep(0.1)


@contextmanager
def pdf_queue() -> Iterator[str]:
    """A cups-pdf queue of this process (``KIOSK_TEST_<pid>``), enabled and accepting; removed afterwards."""
    ensure_cupsd()
    queue = f"KIOSK_TEST_{os.getpid()}"
    subprocess.run(
        ["lpadmin", "-p", queue, "-v", "cups-pdf:/", "-m", PPD, "-E"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield queue
    finally:
        subprocess.run(["lpadmin", "-x", queue], check=False, capture_output=True, timeout=30)


def produced_pdf(job: str, timeout: float = 30.0) -> Path:
    """The PDF cups-pdf wrote for ``job`` (``QUEUE-N`` → ``*-job_N.pdf``), once it is complete."""
    number = job.rsplit("-", 1)[1]
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(OUT_DIR.glob(f"*-job_{number}.pdf"), key=lambda p: p.stat().st_mtime)
        if found and found[-1].stat().st_size > 0:
            r = subprocess.run(["pdfinfo", str(found[-1])], capture_output=True, check=False)
            if r.returncode == 0:
                return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no PDF for job {job} in {OUT_DIR} within {timeout} s")
        time.sleep(0.1)


def render_gray(pdf: Path, dpi: int = 40) -> np.ndarray:
    """The first page of a PDF as a grey picture (pdftoppm)."""
    import cv2

    png = subprocess.run(
        ["pdftoppm", "-png", "-gray", "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile", str(pdf)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    gray = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert gray is not None, f"pdftoppm gave no picture for {pdf}"
    return np.asarray(gray)


def same_picture(printed: np.ndarray, original: np.ndarray) -> float:
    """Correlation of two pictures after cropping each to its ink (non-white) and scaling to one size."""
    import cv2

    def ink(gray: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(gray < 200)
        crop = gray[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        return cv2.resize(crop, (60, 80), interpolation=cv2.INTER_AREA).astype(np.float32)

    a, b = ink(printed), ink(original)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
