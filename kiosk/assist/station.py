"""A staff station's side of papers, marks and writing during one call: the papers handed over (and what the
counter said of them), the marks placed, the resident's replies and handwriting. Pure; see
:mod:`kiosk.assist.channel` for how both sides work.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from common.logs import event
from kiosk.assist.messages import Mark, Message, encode, is_page_transfer, page_messages
from kiosk.assist.side import PrintReport, SendFn, Side

__all__ = ["PageImage", "SentPaper", "StationAssist"]

log = logging.getLogger(__name__)


# -- a staff station --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageImage:
    """One page ready to send: an encoded image (PNG or JPEG) and its size."""

    data: bytes
    format: str
    width: int
    height: int


@dataclass
class SentPaper:
    """A paper staff handed over: what the counter confirmed, shows, printed."""

    id: str
    title: str
    pages: list[PageImage]
    received: set[int] = field(default_factory=set)
    errors: dict[int, str] = field(default_factory=dict)  # page (-1: unknown) → why it did not arrive intact
    shown_page: int | None = None  # what the resident has on screen (None: closed)
    printed: dict[int, PrintReport] = field(default_factory=dict)


class StationAssist(Side):
    """A staff station's side: papers sent, marks placed, the resident's replies and handwriting.

    Args:
        send: queues messages for the counter.
        terminal: this station's id (paper ids start with it, so two staff members never collide).
    """

    def __init__(
        self, send: SendFn, terminal: str = "office", on_change: Callable[[str], Any] | None = None
    ) -> None:
        super().__init__(send, on_change)
        self.terminal = terminal
        self.papers: dict[str, SentPaper] = {}
        self.replies: list[str] = []
        self.strokes: dict[int, list[tuple[float, float]]] = {}
        self.document_marks: tuple[Mark, ...] = ()
        self.marks_cleared_reason = ""
        self.text_seq = 0
        self.texts: list[str] = []
        self._ids = itertools.count(1)

    @classmethod
    def attach(cls, session: Any, on_change: Callable[[str], Any] | None = None) -> StationAssist:
        """A StationAssist talking to the counter of a staff station's call session (its ``control`` link)."""
        control = session.control
        assist = cls(lambda msgs: control.send(msgs, session.counter_id), session.terminal_id, on_change)
        control.on_message = assist.on_message

        def resumed(member: str) -> None:
            if member == session.counter_id:
                control.retract(member, is_page_transfer)
                control.send(assist.resume_messages(), member)

        control.on_resume = resumed
        return assist

    def send_paper(self, pages: Iterable[PageImage], title: str = "") -> str:
        """Hand a paper (1..20 pages) to the resident; returns its id. The counter shows its first page."""
        pages = list(pages)
        if not pages:
            raise ValueError("a paper needs at least one page")
        pid = f"{self.terminal}-{next(self._ids)}"
        self.papers[pid] = SentPaper(pid, title, pages)
        out: list[str] = []
        for i, p in enumerate(pages):
            out += page_messages(
                pid, i, len(pages), p.data, fmt=p.format, width=p.width, height=p.height, title=title
            )
        self._send(out)
        self._changed("paper")
        return pid

    def resume_messages(self) -> list[str]:
        """What to send once the data channel to the counter is new (the media path was rebuilt): every page of
        the papers handed over that the counter has not confirmed, whole. The caller first withdraws the page
        messages still queued for the lost channel (:func:`~kiosk.assist.messages.is_page_transfer`), so that no
        page arrives in pieces from two channels."""
        out: list[str] = []
        for paper in self.papers.values():
            for i, p in enumerate(paper.pages):
                if i not in paper.received:
                    out += page_messages(
                        paper.id,
                        i,
                        len(paper.pages),
                        p.data,
                        fmt=p.format,
                        width=p.width,
                        height=p.height,
                        title=paper.title,
                    )
        if out:
            event(log, "papers_sent_again", messages=len(out))
        return out

    def show_page(self, paper_id: str, page: int) -> None:
        self._send([encode("paper_page", id=paper_id, page=page)])

    def take_back(self, paper_id: str) -> None:
        """Remove a paper from the counter's screen and memory."""
        if self.papers.pop(paper_id, None) is not None:
            self._send([encode("paper_close", id=paper_id)])
            self._changed("paper")

    def set_marks(
        self,
        marks: Iterable[Mark],
        *,
        target: str = "document",
        paper_id: str | None = None,
        page: int | None = None,
    ) -> None:
        """Replace the marks on the document picture (or a paper page) with ``marks`` (empty: clear them)."""
        marks = tuple(marks)
        self._send([encode("marks", target=target, id=paper_id, page=page, marks=list(marks))])
        if target == "document":
            self.document_marks = marks
            self.marks_cleared_reason = ""
        self._changed("marks")

    def send_text(self, text: str) -> None:
        """Staff's written message, shown very large on the counter (switches the written mode on)."""
        text = text.strip()
        if not text:
            return
        self.texts.append(text)
        self._send([encode("text", seq=self.text_seq, text=text)])
        self.text_seq += 1
        self.writing = True
        self._changed("text")

    # -- messages from the counter ----------------------------------------------------------------
    def _on_paper_received(self, member: str, msg: Message) -> None:
        paper = self.papers.get(msg["id"])
        if paper is not None:
            paper.received.add(msg["page"])
            paper.errors.pop(msg["page"], None)  # it arrived after all (sent again)
            if len(paper.received) == len(paper.pages):
                paper.errors.clear()
            self._changed("paper")

    def _on_paper_error(self, member: str, msg: Message) -> None:
        paper = self.papers.get(msg["id"])
        if paper is not None:
            paper.errors[msg.get("page", -1)] = msg["message"]
        self._changed("paper")

    def _on_paper_page(self, member: str, msg: Message) -> None:
        paper = self.papers.get(msg["id"])
        if paper is not None:
            paper.shown_page = msg["page"]
            self._changed("paper")

    def _on_paper_close(self, member: str, msg: Message) -> None:
        paper = self.papers.get(msg["id"])
        if paper is not None:
            paper.shown_page = None
            self._changed("paper")

    def _on_print_status(self, member: str, msg: Message) -> None:
        paper = self.papers.get(msg["id"])
        if paper is not None:
            paper.printed[msg["page"]] = PrintReport(
                msg["state"], msg.get("message", ""), msg.get("reason", "")
            )
            self._changed("print")

    def _on_marks_cleared(self, member: str, msg: Message) -> None:
        if msg["target"] == "document":
            self.document_marks = ()
            self.marks_cleared_reason = msg["reason"]
            self._changed("marks")

    def _on_reply(self, member: str, msg: Message) -> None:
        self.replies.append(msg["reply"])
        self._changed("reply")

    def _on_stroke(self, member: str, msg: Message) -> None:
        self.strokes.setdefault(msg["stroke"], []).extend(msg["points"])
        self._changed("strokes")

    def _on_strokes_clear(self, member: str, msg: Message) -> None:
        self.strokes.clear()
        self._changed("strokes")

    def wipe(self) -> None:
        self.papers.clear()
        self.replies.clear()
        self.strokes.clear()
        self.texts.clear()
        self.document_marks = ()
        self.writing = False
        self._changed("wiped")
