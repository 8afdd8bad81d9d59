"""What staff and resident exchange beyond sound and video, as pure messages: papers, marks, writing.

These travel as JSON text messages on the call's data channel (``kiosk-control``, reliable and ordered, peer to
peer: never through the relay), next to the stills of :mod:`kiosk.video.still`. Every message is an object with
a string field ``"assist"`` naming its kind; :func:`parse` checks one against :data:`SCHEMAS` and returns it as a
frozen dataclass, :func:`encode` turns one back into text. ``docs/protocol.md`` ("Papers, marks and writing")
is the prose form; ``tests/test_assist_messages.py`` keeps the two in step.

Papers are images (a PDF page is rendered on the station first) sent in base64 chunks of text, so they never mix
with the binary chunks of a still; the receiver checks the SHA-256 of the whole file (:class:`PaperAssembler`).
Coordinates of marks and strokes are fractions of the picture (0..1, origin top left), so both sides draw them
at the same place on the paper whatever their screen sizes.

Pure: no I/O library.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHUNK_CHARS",
    "MARK_KINDS",
    "MAX_MARKS",
    "MAX_PAGES",
    "MAX_PAGE_BYTES",
    "MAX_STROKE_POINTS",
    "MAX_TEXT",
    "PRINT_REASONS",
    "PRINT_STATES",
    "REPLIES",
    "SCHEMAS",
    "AssistError",
    "Mark",
    "PaperAssembler",
    "PaperPage",
    "encode",
    "is_page_transfer",
    "page_messages",
    "parse",
]

CHUNK_CHARS = 12 * 1024  # base64 characters per chunk: a message stays well under 16 KiB
MAX_PAGE_BYTES = 8 * 1024 * 1024  # one page image (a 150 dpi A4 page as PNG is ~0.3-1.5 MB)
MAX_PAGES = 20
MAX_MARKS = 20
MAX_TEXT = 400
MAX_STROKE_POINTS = 200  # per message; a long stroke comes in several
FORMATS = ("png", "jpeg")
MARK_KINDS = ("point", "circle", "arrow")
TARGETS = ("document", "paper")
REPLIES = ("yes", "no", "again", "slowly")
PRINT_STATES = ("printing", "printed", "failed", "unavailable")
# Why a page did not print, as a code the station shows in its own language (``message`` keeps the details). A
# code not listed here (a newer counter) is accepted: the station then shows ``message``.
PRINT_REASONS = (
    "no_printer",
    "out_of_paper",
    "paper_jam",
    "offline",
    "paused",
    "out_of_ink",
    "cover_open",
    "switched_off",
    "unreachable",
    "no_queue",
    "disabled",
    "refused",
    "no_cups",
    "cancelled",
    "timeout",
)


class AssistError(ValueError):
    """A data-channel message that is not what :data:`SCHEMAS` says (the message names kind and field)."""


# kind → {field: (type or tuple of types, required)}. Every message also has "assist": kind.
_Num = (int, float)
SCHEMAS: dict[str, dict[str, tuple[Any, bool]]] = {
    # staff → counter: one page of a paper, then its chunks, then its end
    "paper_begin": {
        "id": (str, True),
        "page": (int, True),
        "pages": (int, True),
        "title": (str, False),
        "format": (str, True),
        "width": (int, True),
        "height": (int, True),
        "bytes": (int, True),
        "sha256": (str, True),
        "chunks": (int, True),
    },
    "paper_chunk": {"id": (str, True), "page": (int, True), "n": (int, True), "data": (str, True)},
    "paper_end": {"id": (str, True), "page": (int, True)},
    # counter → staff: the page arrived intact, or did not
    "paper_received": {"id": (str, True), "page": (int, True)},
    "paper_error": {"id": (str, True), "page": (int, False), "message": (str, True)},
    # both ways: which page is shown; the paper is closed (resident) or taken back (staff)
    "paper_page": {"id": (str, True), "page": (int, True)},
    "paper_close": {"id": (str, True)},
    # counter → staff: the resident printed a page
    "print_status": {
        "id": (str, True),
        "page": (int, True),
        "state": (str, True),
        "message": (str, False),
        "reason": (str, False),
    },
    # staff → counter: the marks on the document camera's picture or on a paper page (replaces the earlier ones)
    "marks": {"target": (str, True), "id": (str, False), "page": (int, False), "marks": (list, True)},
    # counter → staff: the counter cleared the marks itself (the paper under the camera moved)
    "marks_cleared": {"target": (str, True), "reason": (str, True)},
    # written conversation (筆談): the mode (both ways), staff's text, the resident's replies and handwriting
    "writing": {"on": (bool, True)},
    "text": {"seq": (int, True), "text": (str, True)},
    "reply": {"reply": (str, True)},
    "stroke": {"stroke": (int, True), "points": (list, True), "done": (bool, False)},
    "strokes_clear": {},
}


@dataclass(frozen=True)
class Mark:
    """A staff mark: a pointer, a circle (radius ``r``, a fraction of the picture's width) or an arrow to ``x2, y2``."""

    kind: str
    x: float
    y: float
    r: float = 0.0
    x2: float = 0.0
    y2: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "x": round(self.x, 4), "y": round(self.y, 4)}
        if self.kind == "circle":
            out["r"] = round(self.r, 4)
        if self.kind == "arrow":
            out["x2"], out["y2"] = round(self.x2, 4), round(self.y2, 4)
        return out


@dataclass(frozen=True)
class Message:
    """One parsed message: ``kind`` and its fields (checked), marks and points converted."""

    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def _fraction(v: Any, where: str) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not -0.5 <= v <= 1.5:
        raise AssistError(f"{where} must be a number near 0..1 (a fraction of the picture), got {v!r}")
    return float(v)


def _mark(m: Any, i: int) -> Mark:
    if not isinstance(m, Mapping):
        raise AssistError(f"marks[{i}] must be an object, got {type(m).__name__}")
    kind = m.get("kind")
    if kind not in MARK_KINDS:
        raise AssistError(f"marks[{i}].kind must be one of {', '.join(MARK_KINDS)}, got {kind!r}")
    x, y = _fraction(m.get("x"), f"marks[{i}].x"), _fraction(m.get("y"), f"marks[{i}].y")
    if kind == "circle":
        r = _fraction(m.get("r"), f"marks[{i}].r")
        if r <= 0:
            raise AssistError(f"marks[{i}].r must be greater than 0")
        return Mark(kind, x, y, r=r)
    if kind == "arrow":
        return Mark(
            kind,
            x,
            y,
            x2=_fraction(m.get("x2"), f"marks[{i}].x2"),
            y2=_fraction(m.get("y2"), f"marks[{i}].y2"),
        )
    return Mark(kind, x, y)


def parse(data: str | Mapping[str, Any]) -> Message:
    """Check one data-channel message (text or already decoded) and return it.

    Raises:
        AssistError: not JSON, not an object, unknown kind, a missing, mistyped or out-of-range field.
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as err:
            raise AssistError(f"not JSON: {err}") from None
    if not isinstance(data, Mapping):
        raise AssistError(f"a message must be a JSON object, got {type(data).__name__}")
    kind = data.get("assist")
    if kind not in SCHEMAS:
        raise AssistError(f"unknown 'assist' kind {kind!r}; known: {', '.join(SCHEMAS)}")
    schema = SCHEMAS[kind]
    out: dict[str, Any] = {}
    for name, (typ, required) in schema.items():
        if name not in data:
            if required:
                raise AssistError(f"'{kind}' needs field '{name}'")
            continue
        v = data[name]
        if not isinstance(v, typ) or (typ in (int, _Num) and isinstance(v, bool)):
            want = typ.__name__ if isinstance(typ, type) else "number"
            raise AssistError(f"field '{name}' of '{kind}' must be {want}, got {type(v).__name__}")
        out[name] = v
    _check(kind, out)
    return Message(kind, out)


def _check(kind: str, f: dict[str, Any]) -> None:
    for name in ("page", "n", "seq", "stroke"):
        if name in f and f[name] < 0:
            raise AssistError(f"field '{name}' of '{kind}' must be 0 or more, got {f[name]}")
    if kind == "paper_begin":
        _check_paper_begin(f)
    elif kind == "paper_chunk" and len(f["data"]) > CHUNK_CHARS + 4:
        raise AssistError(f"a chunk holds at most {CHUNK_CHARS} base64 characters, got {len(f['data'])}")
    elif kind == "print_status":
        if f["state"] not in PRINT_STATES:
            raise AssistError(f"print state must be one of {', '.join(PRINT_STATES)}, got {f['state']!r}")
        if len(f.get("reason", "")) > 40:
            raise AssistError(f"a print reason is a short code, got {len(f['reason'])} characters")
    elif kind in ("marks", "marks_cleared") and f["target"] not in TARGETS:
        raise AssistError(f"target must be one of {', '.join(TARGETS)}, got {f['target']!r}")
    if kind == "marks":
        if f["target"] == "paper" and ("id" not in f or "page" not in f):
            raise AssistError("marks on a paper need its 'id' and 'page'")
        if len(f["marks"]) > MAX_MARKS:
            raise AssistError(f"at most {MAX_MARKS} marks at a time, got {len(f['marks'])}")
        f["marks"] = tuple(_mark(m, i) for i, m in enumerate(f["marks"]))
    elif kind == "text" and len(f["text"]) > MAX_TEXT:
        raise AssistError(f"a text is at most {MAX_TEXT} characters, got {len(f['text'])}")
    elif kind == "reply" and f["reply"] not in REPLIES:
        raise AssistError(f"reply must be one of {', '.join(REPLIES)}, got {f['reply']!r}")
    elif kind == "stroke":
        pts = f["points"]
        if len(pts) > MAX_STROKE_POINTS:
            raise AssistError(f"at most {MAX_STROKE_POINTS} points per stroke message, got {len(pts)}")
        f["points"] = tuple(
            (_fraction(p[0], f"points[{i}][0]"), _fraction(p[1], f"points[{i}][1]"))
            if isinstance(p, list) and len(p) == 2
            else _bad_point(i, p)
            for i, p in enumerate(pts)
        )


def _check_paper_begin(f: dict[str, Any]) -> None:
    if f["format"] not in FORMATS:
        raise AssistError(f"paper format must be one of {', '.join(FORMATS)}, got {f['format']!r}")
    if not 1 <= f["pages"] <= MAX_PAGES or f["page"] >= f["pages"]:
        raise AssistError(f"page {f['page']} of {f['pages']}: a paper has 1..{MAX_PAGES} pages")
    if not 0 < f["bytes"] <= MAX_PAGE_BYTES:
        raise AssistError(f"a page is 1..{MAX_PAGE_BYTES} bytes, got {f['bytes']}")
    b64_chars = 4 * -(-f["bytes"] // 3)
    if f["chunks"] != -(-b64_chars // CHUNK_CHARS):
        raise AssistError(
            f"{f['bytes']} bytes come in {-(-b64_chars // CHUNK_CHARS)} chunks, not {f['chunks']}"
        )
    if len(f["sha256"]) != 64:
        raise AssistError("sha256 must be 64 hex digits")


def _bad_point(i: int, p: Any) -> tuple[float, float]:
    raise AssistError(f"points[{i}] must be [x, y], got {p!r}")


def encode(kind: str, **fields: Any) -> str:
    """One message as JSON text; checked with :func:`parse` so that nothing malformed ever leaves."""
    data: dict[str, Any] = {"assist": kind}
    for k, v in fields.items():
        if v is None:
            continue
        if k == "marks":
            v = [m.to_json() if isinstance(m, Mark) else m for m in v]
        elif k == "points":
            v = [[round(float(x), 4), round(float(y), 4)] for x, y in v]
        data[k] = v
    parse(data)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class PaperPage:
    """One received page: the image file exactly as the station sent it, in memory only."""

    id: str
    page: int
    pages: int
    title: str
    format: str
    width: int
    height: int
    data: bytearray  # wiped (zeroed) when the call ends

    def wipe(self) -> None:
        self.data[:] = bytes(len(self.data))


def page_messages(
    paper_id: str, page: int, pages: int, image: bytes, *, fmt: str, width: int, height: int, title: str = ""
) -> Iterator[str]:
    """The messages that carry one page: ``paper_begin``, its ``paper_chunk``s, ``paper_end``."""
    text = base64.b64encode(image).decode("ascii")
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
    yield encode(
        "paper_begin",
        id=paper_id,
        page=page,
        pages=pages,
        title=title or None,
        format=fmt,
        width=width,
        height=height,
        bytes=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
        chunks=len(chunks),
    )
    for n, chunk in enumerate(chunks):
        yield encode("paper_chunk", id=paper_id, page=page, n=n, data=chunk)
    yield encode("paper_end", id=paper_id, page=page)


def is_page_transfer(text: str) -> bool:
    """Whether an encoded message is part of a page's transfer (``paper_begin``, ``paper_chunk``, ``paper_end``)."""
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("assist") in ("paper_begin", "paper_chunk", "paper_end")


class PaperAssembler:
    """Receives ``paper_begin``/``paper_chunk``/``paper_end`` and returns each page once it is complete and intact."""

    def __init__(self) -> None:
        self._begin: Message | None = None
        self._parts: list[str] = []

    def feed(self, msg: Message) -> PaperPage | None:
        """Take one paper message; the finished page after its ``paper_end``.

        Raises:
            AssistError: out of order, wrong chunk count or size, or a SHA-256 that does not match (the page is
                dropped; the message says which).
        """
        if msg.kind == "paper_begin":
            self._begin, self._parts = msg, []
            return None
        b = self._begin
        if b is None or msg["id"] != b["id"] or msg["page"] != b["page"]:
            self.reset()
            raise AssistError(
                f"{msg.kind} for paper {msg['id']!r} page {msg['page']} without its paper_begin"
            )
        if msg.kind == "paper_chunk":
            if msg["n"] != len(self._parts) or len(self._parts) >= b["chunks"]:
                self.reset()
                raise AssistError(f"paper {b['id']!r} page {b['page']}: chunk {msg['n']} out of order")
            self._parts.append(msg["data"])
            return None
        parts = self._parts
        self.reset()
        if len(parts) != b["chunks"]:
            raise AssistError(f"paper {b['id']!r} page {b['page']}: {len(parts)} of {b['chunks']} chunks")
        try:
            data = bytearray(base64.b64decode("".join(parts), validate=True))
        except ValueError as err:
            raise AssistError(f"paper {b['id']!r} page {b['page']}: bad base64 ({err})") from None
        if len(data) != b["bytes"] or hashlib.sha256(data).hexdigest() != b["sha256"]:
            raise AssistError(f"paper {b['id']!r} page {b['page']}: SHA-256 or size does not match (damaged)")
        return PaperPage(
            b["id"], b["page"], b["pages"], b.get("title", ""), b["format"], b["width"], b["height"], data
        )

    def reset(self) -> None:
        self._begin, self._parts = None, []
