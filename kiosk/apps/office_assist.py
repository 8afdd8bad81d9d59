"""The staff station's part of papers, marks and the written conversation (筆談), as a mixin of
:class:`~kiosk.apps.office_ui.OfficeApp`.

While a call has a media session, a :class:`~kiosk.assist.channel.StationAssist` talks to the counter through the
session's data channel. This mixin lists the station's papers (``[papers] folder``), renders and hands one over,
says what became of it (arrived, shown, printed or why not), places marks on the document picture, sends written
messages and shows the resident's replies and handwriting; everything is wiped when the call ends.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from kivy.properties import (
    BooleanProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)

from common.logs import event
from kiosk.assist.channel import PrintReport, StationAssist
from kiosk.assist.messages import MAX_MARKS, Mark

__all__ = ["OfficeAssistMixin"]

log = logging.getLogger(__name__)

MARK_MODES = ("point", "circle", "arrow")


class OfficeAssistMixin:
    """Papers, marks and writing for the staff station (Kivy properties for ``office_assist.kv``)."""

    assist = ObjectProperty(None, allownone=True)
    assist_version = NumericProperty(0)
    papers = ListProperty([])  # paths of the papers that can be handed over
    paper_busy = BooleanProperty(False)
    paper_status = StringProperty("")
    paper_sent = StringProperty("")  # id of the paper last handed over ("" = none)
    writing_on = BooleanProperty(False)
    reply_text = StringProperty("")
    replies_text = StringProperty("")
    mark_mode = StringProperty("point")
    staff_marks = ListProperty([])
    marks_note = StringProperty("")
    _paper_failure = ""  # why the last paper could not be handed over (rendering), until the next one
    _assist_lang_bound = False

    # provided by OfficeApp / TerminalApp (annotations only)
    session: Any
    config_file: Any
    tr: Any
    strings: Any
    lang: Any
    _spawn: Any
    fbind: Any
    show_view: Any
    screens: Any

    # -- life with the call ----------------------------------------------------------------------
    def _assist_open(self) -> None:
        if self.session is None:
            return
        self._assist_close()
        self.assist = StationAssist.attach(self.session, self._assist_changed)
        if not self._assist_lang_bound:
            # The status lines are made in Python: remake them when staff switch the language.
            self._assist_lang_bound = True
            self.fbind("lang", lambda *_: self._assist_project())
        from kiosk.video.papers import list_papers

        self.papers = (
            [str(p) for p in list_papers(self.config_file.papers_folder)]
            if self.config_file.papers_folder
            else []
        )
        screen = self.screens.get("assist") if self.screens else None
        if screen is not None:
            screen.show_papers(list(self.papers))
        self._assist_project()

    def _assist_close(self) -> None:
        if self.assist is not None:
            self.assist.on_change = None
            self.assist.wipe()
        if getattr(self, "_closed", False):
            # The app has stopped: touching Kivy properties now would make kv rules (and Kivy's cached ``app``)
            # run against a stopped app; the assist's contents are wiped all the same.
            return
        self.assist = None
        self.paper_busy = False
        self.paper_sent = ""
        self._paper_failure = ""
        self._assist_project()

    def _assist_changed(self, _what: str) -> None:
        self._assist_project()

    # -- for kv ----------------------------------------------------------------------------------
    @staticmethod
    def paper_name(path: str) -> str:
        return Path(path).stem

    def _assist_project(self) -> None:
        a = self.assist
        self.writing_on = bool(a is not None and a.writing)
        replies = a.replies if a is not None else []
        self.reply_text = self.tr("office.assist.reply_" + replies[-1]) if replies else ""
        self.replies_text = (
            self.tr("office.assist.list_separator").join(
                self.tr("office.assist.reply_" + r) for r in replies[-6:]
            )
            if replies
            else ""
        )
        self.staff_marks = list(a.document_marks) if a is not None else []
        self.marks_note = (
            self.tr("office.assist.marks_cleared") if a is not None and a.marks_cleared_reason else ""
        )
        self.paper_status = self._paper_status()
        self.assist_version += 1

    def _paper_status(self) -> str:
        a = self.assist
        paper = a.papers.get(self.paper_sent) if a is not None and self.paper_sent else None
        if paper is None:
            if self.paper_busy:
                return self.tr("office.assist.rendering")
            if self._paper_failure:
                return self.tr("office.assist.paper_failed", why=self._paper_failure)
            return ""
        parts = [
            self.tr(
                "office.assist.received", title=paper.title, n=len(paper.received), pages=len(paper.pages)
            )
        ]
        if paper.errors:
            parts.append(self.tr("office.assist.damaged"))
        parts.append(
            self.tr("office.assist.shown", page=paper.shown_page + 1)
            if paper.shown_page is not None
            else self.tr("office.assist.closed")
        )
        for page, report in sorted(paper.printed.items()):
            key = {"printed": "printed", "printing": "printing"}.get(report.state, "print_failed")
            parts.append(self.tr(f"office.assist.{key}", page=page + 1, why=self._print_reason(report)))
        return "\n".join(parts)

    def _print_reason(self, report: PrintReport) -> str:
        """Why a page did not print, in the station's language (the counter's words for a code we do not know)."""
        key = f"office.assist.print_reason.{report.reason}"
        if report.reason and key in self.strings:
            return str(self.tr(key))
        return report.message or report.state

    # -- papers ----------------------------------------------------------------------------------
    def hand_paper(self, path: str) -> None:
        """Render (PDF) and hand a paper to the resident; its first page appears on the counter."""
        if self.assist is None or self.paper_busy:
            return
        self.paper_busy = True
        self._assist_project()
        self._spawn(self._hand_paper(self.assist, path))

    async def _hand_paper(self, assist: StationAssist, path: str) -> None:
        from kiosk.video.papers import PaperError, load_paper

        try:
            pages = await asyncio.get_running_loop().run_in_executor(None, load_paper, path)
        except PaperError as err:
            event(log, "paper_failed", logging.WARNING, path=path, problem=err)
            self.paper_busy = False
            self._paper_failure = str(err)
            self._assist_project()
            return
        self.paper_busy = False
        self._paper_failure = ""
        if self.assist is not assist:
            return  # the call ended while rendering
        if self.paper_sent:
            assist.take_back(self.paper_sent)
        self.paper_sent = assist.send_paper(pages, Path(path).stem)
        self._assist_project()

    def take_back_paper(self) -> None:
        if self.assist is not None and self.paper_sent:
            self.assist.take_back(self.paper_sent)
            self.paper_sent = ""
            self._assist_project()

    # -- marks -----------------------------------------------------------------------------------
    def set_mark_mode(self, mode: str) -> None:
        if mode not in MARK_MODES:
            raise ValueError(f"mark mode must be one of {MARK_MODES}, got {mode!r}")
        self.mark_mode = mode

    def place_mark(self, start: tuple[float, float], end: tuple[float, float], *, final: bool) -> None:
        """A touch on the document picture (fractions): a pointer follows the finger; a circle (centre, then
        radius) or an arrow (tail, then head) is placed when the finger lifts."""
        a = self.assist
        if a is None:
            return
        mode = self.mark_mode
        if mode == "point":
            kept = [m for m in a.document_marks if m.kind != "point"]
            a.set_marks(kept[-(MAX_MARKS - 1) :] + [Mark("point", *end)])
        elif final and mode == "circle":
            r = ((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2) ** 0.5
            a.set_marks(
                list(a.document_marks)[-(MAX_MARKS - 1) :]
                + [Mark("circle", *start, r=min(max(r, 0.03), 0.5))]
            )
        elif final and mode == "arrow" and (start[0] - end[0]) ** 2 + (start[1] - end[1]) ** 2 > 0.0004:
            a.set_marks(
                list(a.document_marks)[-(MAX_MARKS - 1) :] + [Mark("arrow", *start, x2=end[0], y2=end[1])]
            )

    def clear_marks(self) -> None:
        if self.assist is not None:
            self.assist.set_marks([])

    # -- writing ---------------------------------------------------------------------------------
    def toggle_staff_writing(self) -> None:
        if self.assist is not None:
            self.assist.set_writing(not self.assist.writing)

    def send_writing(self, text: str) -> bool:
        """Send a written message (the counter shows it very large); False when there is nothing to send."""
        if self.assist is None or not text.strip():
            return False
        self.assist.send_text(text)
        return True
