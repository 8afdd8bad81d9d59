"""The counter app's part of papers, marks, printing and the written conversation (筆談), as a mixin of
:class:`~kiosk.apps.counter.CounterApp`.

While a call has a media session, a :class:`~kiosk.assist.channel.CounterAssist` holds what staff handed over; it
talks through the session's :class:`~kiosk.video.control.ControlLink`. This mixin projects its state onto Kivy
properties for the kv files, carries out the resident's touches (page, print, close, replies, handwriting), prints
through :class:`~kiosk.devices.printer.CupsPrinter` in a thread, clears the document marks when the paper under
the camera moves, and wipes everything when the call ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kivy.clock import Clock
from kivy.properties import (
    BooleanProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)

from common.logs import event
from kiosk.assist.channel import CounterAssist
from kiosk.assist.marks import PaperMotion

__all__ = ["CounterAssistMixin"]

log = logging.getLogger(__name__)

MOTION_CHECK_S = 0.4  # how often the document picture is compared while marks are shown


class CounterAssistMixin:
    """Papers, marks, printing and writing for :class:`~kiosk.apps.counter.CounterApp` (Kivy properties for kv)."""

    assist = ObjectProperty(None, allownone=True)
    assist_version = NumericProperty(0)
    paper_open = BooleanProperty(False)
    paper_data = ObjectProperty(None, allownone=True)
    paper_fmt = StringProperty("png")
    paper_title = StringProperty("")
    paper_page = NumericProperty(0)
    paper_pages = NumericProperty(0)
    paper_marks = ListProperty([])
    document_marks = ListProperty([])
    writing_on = BooleanProperty(False)
    staff_text = StringProperty("")
    can_print = BooleanProperty(False)
    printing = BooleanProperty(False)
    print_message = StringProperty("")
    _print_key = ""  # the string key of print_message (translated on every projection)
    _assist_lang_bound = False

    # provided by CounterApp / TerminalApp (annotations only: nothing here shadows them)
    session: Any
    local: Any
    config_file: Any
    writing_requested: bool
    tr: Any
    _spawn: Any
    fbind: Any

    # -- life with the call ----------------------------------------------------------------------
    def _assist_open(self) -> None:
        """A media session started: wire a fresh CounterAssist to its data channel."""
        session = self.session
        if session is None:
            return
        self._assist_close()
        assist = CounterAssist.attach(session, on_change=self._assist_changed)
        session.control.on_open = self._assist_member_open
        self.assist = assist
        if not self._assist_lang_bound:
            # Texts set from Python (the print result) follow a language switch like the kv ones.
            self._assist_lang_bound = True
            self.fbind("lang", lambda *_: self._assist_project())
        self._motion = PaperMotion()
        self._motion_event = Clock.schedule_interval(self._check_paper_motion, MOTION_CHECK_S)
        printer = self.config_file.printer
        self._printer: Any = None
        if printer is not None:
            from kiosk.devices.printer import CupsPrinter

            self._printer = CupsPrinter(printer)
        self.can_print = self._printer is not None
        self._assist_project()

    def _assist_member_open(self, member: str) -> None:
        assist = self.assist
        if assist is not None and (self.writing_requested or assist.writing):
            # The resident asked for writing on the start screen (or it is on): tell each staff member who joins.
            assist.writing = True
            self.session.control.send([_writing_on()], member)
            self._assist_project()

    def _assist_close(self) -> None:
        """The call is over: nothing of what was handed over stays on screen or in memory."""
        event = getattr(self, "_motion_event", None)
        if event is not None:
            event.cancel()
            self._motion_event = None
        if self.assist is not None:
            self.assist.on_change = None
            self.assist.wipe()
        if getattr(self, "_closed", False):
            return  # the app has stopped: no kv rule may run against it any more (wiped all the same)
        self.assist = None
        self.printing = False
        self._print_key = ""
        self._assist_project()

    # -- projection ------------------------------------------------------------------------------
    def _assist_changed(self, what: str) -> None:
        if what == "marks" and self.assist is not None and self.assist.document_marks:
            document = self.local.document if self.local is not None else None
            self._motion.anchor(document.latest_frame() if document is not None else None)
        if what == "paper":
            self._print_key = ""
        self._assist_project()

    def _assist_project(self) -> None:
        a = self.assist
        page = a.page if a is not None else None
        self.paper_open = page is not None
        if page is not None:
            if self.paper_data is not page.data:
                self.paper_fmt = page.format
                self.paper_data = page.data
            self.paper_title = page.title
            self.paper_page = page.page
            self.paper_pages = page.pages
        else:
            self.paper_data = None
            self.paper_title = ""
            self.paper_page = self.paper_pages = 0
        self.paper_marks = list(a.marks_on_page) if a is not None else []
        self.document_marks = list(a.document_marks) if a is not None else []
        self.writing_on = bool(a is not None and a.writing)
        self.staff_text = a.last_text if a is not None else ""
        self.print_message = self.tr(self._print_key) if self._print_key else ""
        self.assist_version += 1

    # -- the resident's touches ------------------------------------------------------------------
    def paper_turn(self, step: int) -> None:
        if self.assist is not None:
            self.assist.turn_page(step)

    def paper_close(self) -> None:
        if self.assist is not None:
            self.assist.close_paper()

    def toggle_writing(self) -> None:
        if self.assist is not None:
            self.assist.set_writing(not self.assist.writing)

    def writing_reply(self, answer: str) -> None:
        if self.assist is not None:
            self.assist.reply(answer)

    def writing_clear(self) -> None:
        if self.assist is not None:
            self.assist.clear_strokes()

    def print_paper(self) -> None:
        """Print the page shown (one touch); the resident and staff are told whether it printed."""
        a = self.assist
        page = a.page if a is not None else None
        if a is None or page is None or self.printing:
            return
        if self._printer is None:
            a.print_status(page.id, page.page, "unavailable", "this counter has no printer", "no_printer")
            return
        self.printing = True
        self._print_key = ""
        a.print_status(page.id, page.page, "printing")
        self._spawn(self._print(a, page))

    async def _print(self, assist: CounterAssist, page: Any) -> None:
        data = bytes(page.data)
        title = f"kiosk {page.id} p{page.page + 1}"
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, lambda: self._printer.print_page(data, title=title))
        finally:
            data = b""
        if self.assist is not assist:  # the call ended meanwhile: nothing to show
            return
        self.printing = False
        self._print_key = "paper.printed" if result.ok else "paper.print_failed"
        assist.print_status(page.id, page.page, result.state, result.message, result.reason)
        event(log, "print", paper=page.id, page=page.page, state=result.state, message=result.message or None)

    def _check_paper_motion(self, _dt: float) -> None:
        a = self.assist
        document = self.local.document if self.local is not None else None
        if a is None or not a.document_marks or document is None or not self._motion.anchored:
            return
        frame = document.latest_frame()
        if frame is not None and self._motion.moved(frame):
            event(log, "paper_moved", difference=round(self._motion.last_difference, 1), marks="cleared")
            a.clear_document_marks("moved")


def _writing_on() -> str:
    from kiosk.assist.messages import encode

    return encode("writing", on=True)
