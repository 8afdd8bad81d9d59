"""The counter's printer: one page handed over the screen, printed through CUPS with ``lp``.

The printer is a CUPS queue (``[printer] queue``): a real printer beside the screen in the field, the virtual PDF
printer of ``printer-driver-cups-pdf`` in tests and the demo. :meth:`CupsPrinter.print_page` is blocking (run it
in an executor): it checks the queue first (missing, disabled, out of paper, offline), pipes the image to
``lp`` on its standard input (nothing is written to disk by us; CUPS spools and deletes it), then follows the job
until CUPS reports it completed, or cancels it after ``timeout`` seconds. The result says, in words staff can act
on, whether the page printed or why not.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from common.logs import event
from kiosk.config import PrinterConfig

__all__ = ["CupsPrinter", "PrintResult", "PrinterError"]

log = logging.getLogger(__name__)

_JOB_RE = re.compile(r"request id is (\S+)")
# printer-state-reasons that mean "this will not print now": the reason code the station translates
# (kiosk.assist.messages.PRINT_REASONS) and the words for the log.
REASONS = {
    "media-empty": ("out_of_paper", "out of paper"),
    "media-needed": ("out_of_paper", "out of paper"),
    "media-jam": ("paper_jam", "paper jam"),
    "offline": ("offline", "printer offline"),
    "paused": ("paused", "printer paused"),
    "toner-empty": ("out_of_ink", "out of toner"),
    "marker-supply-empty": ("out_of_ink", "out of ink/toner"),
    "door-open": ("cover_open", "a cover is open"),
    "cover-open": ("cover_open", "a cover is open"),
    "shutdown": ("switched_off", "printer switched off"),
    "connecting-to-device": ("unreachable", "printer not reachable"),
}


class PrinterError(Exception):
    """CUPS could not be asked (``lp``/``lpstat`` missing or failing); the message says which command and why."""

    def __init__(self, message: str, reason: str = "no_cups") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PrintResult:
    """``printed`` or ``failed`` (why: ``reason``, a code of :data:`kiosk.assist.messages.PRINT_REASONS` that the
    station shows in its language, and ``message``, the details), and the CUPS job id when there was one."""

    state: str
    message: str = ""
    job: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "printed"


Runner = Callable[..., subprocess.CompletedProcess[bytes]]


class CupsPrinter:
    """One CUPS queue.

    Args:
        config: ``[printer]`` of counter.toml.
        run: ``subprocess.run`` (injected so that a test can count calls; the real commands run by default).
        poll: seconds between job checks.
    """

    def __init__(self, config: PrinterConfig, *, run: Runner = subprocess.run, poll: float = 0.25) -> None:
        self.config = config
        self._run = run
        self.poll = poll

    def _cmd(
        self, *args: str, data: bytes | None = None, timeout: float = 15.0
    ) -> subprocess.CompletedProcess[bytes]:
        if shutil.which(args[0]) is None:
            raise PrinterError(f"'{args[0]}' not found: install cups-client (printing needs CUPS)")
        try:
            return self._run(list(args), input=data, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.SubprocessError) as err:
            raise PrinterError(f"{' '.join(args[:3])}: {err}") from err

    def status(self) -> tuple[bool, str, str]:
        """Whether the queue can print now, and if not why: the words (``printer offline``, ``out of paper``…)
        and the reason code (``offline``, ``out_of_paper``…; ``""`` when ready)."""
        queue = self.config.queue
        r = self._cmd("lpstat", "-l", "-p", queue)
        text = r.stdout.decode(errors="replace")
        if r.returncode != 0 or f"printer {queue} " not in text:
            err = r.stderr.decode(errors="replace").strip()
            return (
                False,
                f"no printer queue '{queue}' in CUPS ({err or 'lpstat found nothing'}); see lpstat -p",
                "no_queue",
            )
        if "disabled" in text.split("\n", 1)[0]:
            return False, f"printer '{queue}' is disabled (cupsenable {queue})", "disabled"
        alerts = re.search(r"Alerts:\s*(.*)", text)
        reasons = [
            a.strip().removesuffix("-error").removesuffix("-warning").removesuffix("-report")
            for a in (alerts.group(1).split() if alerts else [])
            if a.strip() != "none"
        ]
        stopping = [REASONS[r] for r in reasons if r in REASONS]
        if stopping:
            return False, ", ".join(dict.fromkeys(words for _code, words in stopping)), stopping[0][0]
        return True, "ready", ""

    def print_page(self, data: bytes, *, title: str = "kiosk") -> PrintResult:
        """Print one page image (PNG or JPEG) and wait until it printed, failed or timed out. Blocking."""
        try:
            ok, why, reason = self.status()
            if not ok:
                return PrintResult("failed", why, reason=reason)
            args = ["lp", "-d", self.config.queue, "-t", title[:60] or "kiosk"]
            for option in self.config.options:
                args += ["-o", option]
            r = self._cmd(*args, "-", data=data)
            out = r.stdout.decode(errors="replace")
            m = _JOB_RE.search(out)
            if r.returncode != 0 or m is None:
                return PrintResult(
                    "failed",
                    f"lp refused the page: {r.stderr.decode(errors='replace').strip() or out}",
                    reason="refused",
                )
            job = m.group(1)
            event(log, "print_job_submitted", job=job, queue=self.config.queue, bytes=len(data))
            return self._follow(job)
        except PrinterError as err:
            return PrintResult("failed", str(err), reason=err.reason)

    def _follow(self, job: str) -> PrintResult:
        deadline = time.monotonic() + self.config.timeout
        while time.monotonic() < deadline:
            pending = self._cmd("lpstat", "-W", "not-completed", "-o", self.config.queue).stdout.decode(
                errors="replace"
            )
            if not any(line.split()[:1] == [job] for line in pending.splitlines()):
                done = self._cmd("lpstat", "-W", "completed", "-o", self.config.queue).stdout.decode(
                    errors="replace"
                )
                if any(line.split()[:1] == [job] for line in done.splitlines()):
                    event(log, "print_job_completed", job=job)
                    return PrintResult("printed", "", job)
                return PrintResult(
                    "failed", f"job {job} was cancelled or aborted by CUPS", job, reason="cancelled"
                )
            ok, why, reason = self.status()
            if not ok:
                self._cmd("cancel", job)
                return PrintResult("failed", why, job, reason=reason)
            time.sleep(self.poll)  # a device thread, never the event loop
        self._cmd("cancel", job)
        return PrintResult(
            "failed",
            f"not printed within {self.config.timeout:.0f} s (job {job} cancelled)",
            job,
            reason="timeout",
        )
