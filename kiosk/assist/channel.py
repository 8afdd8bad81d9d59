"""Each side's state of papers, marks and writing during one call: messages in, state and messages out. Pure.

:class:`CounterAssist` (the resident's kiosk) and :class:`StationAssist` (a staff station) are fed the
data-channel messages of :mod:`kiosk.assist.messages` (:meth:`on_message`) and the user's intents (methods), keep
what the screens show, and send through an injected ``send(messages)`` (the call session queues them on the data
channel in order: :meth:`kiosk.video.session.CallSession.send_control`). ``on_change`` is called after every change
so that screens redraw. Everything lives in memory only and :meth:`wipe` zeroes it when the call ends.

A bad message is logged and dropped (one side's bug never ends the call); a damaged page is answered with
``paper_error`` so that staff see it did not arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kiosk.assist.messages import (
    MAX_STROKE_POINTS,
    REPLIES,
    AssistError,
    Mark,
    Message,
    PaperAssembler,
    PaperPage,
    encode,
)
from kiosk.assist.side import PrintReport, SendFn, Side
from kiosk.assist.station import PageImage, SentPaper, StationAssist

__all__ = ["CounterAssist", "PageImage", "PrintReport", "SentPaper", "StationAssist"]


# -- the counter ------------------------------------------------------------------------------------------------
class CounterAssist(Side):
    """The kiosk's side: papers received and shown, marks to draw, the written conversation.

    Args:
        send: queues messages for every staff member of the call.
        on_change: called with what changed (``paper``, ``marks``, ``writing``, ``text``, ``strokes``, ``print``).
    """

    def __init__(self, send: SendFn, on_change: Callable[[str], Any] | None = None) -> None:
        super().__init__(send, on_change)
        self._assembler = PaperAssembler()
        self.papers: dict[str, dict[int, PaperPage]] = {}
        self.shown: tuple[str, int] | None = None  # (paper id, page) on screen
        self.closed: set[str] = (
            set()
        )  # papers the resident closed (kept in memory; staff may show them again)
        self.document_marks: tuple[Mark, ...] = ()
        self.paper_marks: dict[tuple[str, int], tuple[Mark, ...]] = {}
        self.texts: list[str] = []  # staff's written messages, newest last
        self.text_seq = -1
        self.strokes: list[list[tuple[float, float]]] = []  # the resident's handwriting
        self.print_state: dict[tuple[str, int], PrintReport] = {}
        self._stroke_sent: list[int] = []

    @classmethod
    def attach(cls, session: Any, on_change: Callable[[str], Any] | None = None) -> CounterAssist:
        """A CounterAssist talking to every staff member of the counter's call session (its ``control`` link);
        after a rebuilt media path it tells each staff member again what it holds (:meth:`resume_messages`)."""
        control = session.control
        assist = cls(lambda msgs: control.send(msgs), on_change)
        control.on_message = assist.on_message
        control.on_resume = lambda member: control.send(assist.resume_messages(member), member)
        return assist

    # -- what the screens read ------------------------------------------------------------------
    @property
    def page(self) -> PaperPage | None:
        """The page shown, or None."""
        if self.shown is None:
            return None
        return self.papers.get(self.shown[0], {}).get(self.shown[1])

    def page_count(self, paper_id: str) -> int:
        pages = self.papers.get(paper_id, {})
        return next(iter(pages.values())).pages if pages else 0

    @property
    def marks_on_page(self) -> tuple[Mark, ...]:
        return self.paper_marks.get(self.shown, ()) if self.shown is not None else ()

    @property
    def last_text(self) -> str:
        return self.texts[-1] if self.texts else ""

    # -- messages from staff ----------------------------------------------------------------------
    def _on_paper_begin(self, member: str, msg: Message) -> None:
        self._assembler.feed(msg)

    def _on_paper_chunk(self, member: str, msg: Message) -> None:
        self._assembler.feed(msg)

    def _on_paper_end(self, member: str, msg: Message) -> None:
        page = self._assembler.feed(msg)
        assert page is not None
        pages = self.papers.setdefault(page.id, {})
        again = pages.get(page.page)
        pages[page.page] = page
        self._send([encode("paper_received", id=page.id, page=page.page)])
        if again is not None:
            again.wipe()  # sent again after the media path was rebuilt: same page, nothing else changes
        elif page.id in self.closed:
            pass  # the resident closed this paper while its later pages came: it stays closed
        elif self.shown is None or self.shown[0] != page.id and page.page == 0:
            self.shown = (page.id, 0) if 0 in self.papers[page.id] else (page.id, page.page)
            self._send([encode("paper_page", id=self.shown[0], page=self.shown[1])])
        self._changed("paper")

    def _on_bad(self, member: str, data: Any, err: AssistError) -> None:
        kind = data.get("assist") if isinstance(data, Mapping) else None
        if isinstance(kind, str) and kind.startswith("paper_") and isinstance(data, Mapping):
            self._send([encode("paper_error", id=str(data.get("id", "?")), message=str(err)[:300])])

    def _on_paper_page(self, member: str, msg: Message) -> None:
        key = (msg["id"], msg["page"])
        if key[0] in self.papers and key[1] in self.papers[key[0]]:
            self.closed.discard(key[0])  # staff show it again
            self.shown = key
            self._changed("paper")

    def _on_paper_close(self, member: str, msg: Message) -> None:
        """Staff took a paper back: it goes from the screen and from memory."""
        pages = self.papers.pop(msg["id"], {})
        self.closed.discard(msg["id"])
        for p in pages.values():
            p.wipe()
        if self.shown is not None and self.shown[0] == msg["id"]:
            self.shown = self._another_paper()
        self._changed("paper")

    def _on_marks(self, member: str, msg: Message) -> None:
        if msg["target"] == "document":
            self.document_marks = tuple(msg["marks"])
        else:
            self.paper_marks[(msg["id"], msg["page"])] = tuple(msg["marks"])
        self._changed("marks")

    def _on_text(self, member: str, msg: Message) -> None:
        if msg["seq"] <= self.text_seq:
            return  # repeated
        self.text_seq = msg["seq"]
        self.texts.append(msg["text"])
        if not self.writing:
            self.writing = True
            self._changed("writing")
        self._changed("text")

    # -- the resident's intents -------------------------------------------------------------------
    def turn_page(self, step: int) -> None:
        """Next (+1) or previous (-1) page of the paper shown."""
        if self.shown is None:
            return
        pid, page = self.shown
        pages = self.papers.get(pid, {})
        target = page + step
        if target in pages:
            self.shown = (pid, target)
            self._send([encode("paper_page", id=pid, page=target)])
            self._changed("paper")

    def close_paper(self) -> None:
        """The resident closes the paper shown (it stays in memory: staff can show it again)."""
        if self.shown is None:
            return
        pid = self.shown[0]
        self.shown = None
        self.closed.add(pid)
        self._send([encode("paper_close", id=pid)])
        self._changed("paper")

    def clear_document_marks(self, reason: str) -> None:
        """Marks on the document camera's picture no longer apply (the paper moved)."""
        if self.document_marks:
            self.document_marks = ()
            self._send([encode("marks_cleared", target="document", reason=reason)])
            self._changed("marks")

    def print_status(self, paper_id: str, page: int, state: str, message: str = "", reason: str = "") -> None:
        """Report a print job of a page (``printing``, ``printed``, ``failed``, ``unavailable``) to staff, with
        why not as a code of :data:`~kiosk.assist.messages.PRINT_REASONS` (shown in the station's language) and
        ``message`` (the details, for the log)."""
        self.print_state[(paper_id, page)] = PrintReport(state, message, reason)
        self._send(
            [
                encode(
                    "print_status",
                    id=paper_id,
                    page=page,
                    state=state,
                    message=message or None,
                    reason=reason or None,
                )
            ]
        )
        self._changed("print")

    def reply(self, answer: str) -> None:
        """One of the large reply buttons: ``yes``, ``no``, ``again`` (please repeat), ``slowly``."""
        if answer not in REPLIES:
            raise ValueError(f"reply must be one of {REPLIES}, got {answer!r}")
        self._send([encode("reply", reply=answer)])
        self._changed("reply")

    def stroke_to(self, x: float, y: float, *, new: bool = False, done: bool = False) -> None:
        """A point of the resident's handwriting (fractions of the pad); sent live in small batches."""
        if new or not self.strokes:
            self.strokes.append([])
            self._stroke_sent.append(0)
        stroke = self.strokes[-1]
        stroke.append((min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)))
        sent = self._stroke_sent[-1]
        if done or len(stroke) - sent >= 4:
            self._flush_stroke(done)
        self._changed("strokes")

    def end_stroke(self) -> None:
        if self.strokes:
            self._flush_stroke(True)

    def _flush_stroke(self, done: bool) -> None:
        index = len(self.strokes) - 1
        stroke, sent = self.strokes[index], self._stroke_sent[index]
        points = stroke[sent:]
        while points or done:
            batch, points = points[:MAX_STROKE_POINTS], points[MAX_STROKE_POINTS:]
            self._send([encode("stroke", stroke=index, points=batch, done=done and not points)])
            if not points:
                break
        self._stroke_sent[index] = len(stroke)

    def clear_strokes(self) -> None:
        self.strokes.clear()
        self._stroke_sent.clear()
        self._send([encode("strokes_clear")])
        self._changed("strokes")

    def resume_messages(self, member: str) -> list[str]:
        """What staff member ``member`` must hear again once the data channel to them is new (the media path was
        rebuilt): every page of their papers held here, the page shown or the papers closed, what was printed.
        Confirmations sent on the lost channel may never have arrived; these make the station's status true."""
        out: list[str] = []
        mine = [pid for pid in self.papers if pid.startswith(member + "-")]
        for pid in mine:
            out += [encode("paper_received", id=pid, page=n) for n in sorted(self.papers[pid])]
            if pid in self.closed:
                out.append(encode("paper_close", id=pid))
        if self.shown is not None and self.shown[0] in mine:
            out.append(encode("paper_page", id=self.shown[0], page=self.shown[1]))
        for (pid, page), report in self.print_state.items():
            if pid in mine and report.state != "printing":
                out.append(
                    encode(
                        "print_status",
                        id=pid,
                        page=page,
                        state=report.state,
                        message=report.message or None,
                        reason=report.reason or None,
                    )
                )
        return out

    def _another_paper(self) -> tuple[str, int] | None:
        for pid, pages in self.papers.items():
            if pages and pid not in self.closed:
                return pid, min(pages)
        return None

    def wipe(self) -> None:
        """The call ended: nothing of it stays in memory."""
        for pages in self.papers.values():
            for p in pages.values():
                p.wipe()
        self.papers.clear()
        self._assembler.reset()
        self.shown = None
        self.closed.clear()
        self.document_marks = ()
        self.paper_marks.clear()
        self.texts.clear()
        self.strokes.clear()
        self._stroke_sent.clear()
        self.print_state.clear()
        self.writing = False
        self._changed("wiped")
