"""Papers, marks and writing as pure logic: message checks, page transfer with hashes, both sides of a call wired
back to back (no aiortc), mark geometry on letterboxed pictures, and when the paper moved."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kiosk.assist.channel import CounterAssist, PageImage, PrintReport, StationAssist
from kiosk.assist.marks import PaperMotion, fit_rect, screen_mark, to_fraction, to_screen
from kiosk.assist.messages import (
    CHUNK_CHARS,
    SCHEMAS,
    AssistError,
    Mark,
    PaperAssembler,
    encode,
    is_page_transfer,
    page_messages,
    parse,
)


def pair() -> tuple[CounterAssist, StationAssist, list[str], list[str]]:
    """A counter and a station whose sends are delivered to each other at once (and recorded)."""
    to_station: list[str] = []
    to_counter: list[str] = []
    counter: CounterAssist
    station: StationAssist

    def c_send(msgs: list[str]) -> None:
        to_station.extend(msgs)
        for m in msgs:
            station.on_message("counter-1", m)

    def s_send(msgs: list[str]) -> None:
        to_counter.extend(msgs)
        for m in msgs:
            counter.on_message("office-1", m)

    counter = CounterAssist(c_send)
    station = StationAssist(s_send, "office-1")
    return counter, station, to_station, to_counter


@pytest.mark.parametrize(
    "bad, why",
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"assist": "nope"}', "unknown 'assist' kind"),
        ('{"assist": "reply"}', "needs field 'reply'"),
        ('{"assist": "reply", "reply": "maybe"}', "reply must be"),
        ('{"assist": "text", "seq": true, "text": "x"}', "must be int"),
        (
            '{"assist": "marks", "target": "document", "marks": [{"kind": "star", "x": 0.1, "y": 0.1}]}',
            "kind must be",
        ),
        (
            '{"assist": "marks", "target": "document", "marks": [{"kind": "point", "x": 7, "y": 0.1}]}',
            "near 0..1",
        ),
        ('{"assist": "marks", "target": "paper", "marks": []}', "need its 'id'"),
        ('{"assist": "stroke", "stroke": 0, "points": [[0.1]]}', "must be [x, y]"),
        ('{"assist": "print_status", "id": "a", "page": 0, "state": "done"}', "print state"),
    ],
)
def test_malformed_messages_are_refused_with_the_reason(bad: str, why: str) -> None:
    """Every malformed message gets an AssistError naming what is wrong."""
    with pytest.raises(AssistError, match=why.replace("[", r"\[").replace("..", r"\.\.")):
        parse(bad)


def test_encode_refuses_to_send_a_malformed_message_and_every_kind_is_documented() -> None:
    """Nothing malformed leaves this side; docs/protocol.md names every kind."""
    with pytest.raises(AssistError):
        encode("reply", reply="perhaps")
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    missing = [k for k in SCHEMAS if f"`{k}`" not in doc]
    assert not missing, f"assist messages missing from docs/protocol.md: {missing}"


def test_a_page_goes_over_in_chunks_and_a_damaged_one_is_refused() -> None:
    """A 50 kB page arrives bit-identical through chunked text; one flipped character is caught by the SHA-256."""
    data = bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8))
    msgs = list(page_messages("p1", 0, 1, data, fmt="png", width=10, height=10, title="記入例"))
    assert len(msgs) == 2 + -(-len(data) * 4 // 3 // CHUNK_CHARS) and all(len(m) < 16 * 1024 for m in msgs)
    asm = PaperAssembler()
    pages = [asm.feed(parse(m)) for m in msgs]
    assert pages[-1] is not None and bytes(pages[-1].data) == data and pages[-1].title == "記入例"
    damaged = json.loads(msgs[1])
    damaged["data"] = ("A" if damaged["data"][0] != "A" else "B") + damaged["data"][1:]
    asm.feed(parse(msgs[0]))
    asm.feed(parse(damaged))
    for m in msgs[2:-1]:
        asm.feed(parse(m))
    with pytest.raises(AssistError, match="SHA-256"):
        asm.feed(parse(msgs[-1]))


def test_paper_pages_print_status_and_close_both_ways() -> None:
    """Staff hand over a 2-page paper: the counter shows page 1, pages on, prints; staff see each step; wipe clears."""
    counter, station, _, _ = pair()
    pages = [PageImage(b"\x89PNG page one", "png", 100, 141), PageImage(b"\x89PNG page two", "png", 100, 141)]
    pid = station.send_paper(pages, "記入例")
    assert (
        counter.shown == (pid, 0) and counter.page is not None and bytes(counter.page.data) == pages[0].data
    )
    assert station.papers[pid].received == {0, 1} and station.papers[pid].shown_page == 0
    counter.turn_page(1)
    assert counter.shown == (pid, 1) and station.papers[pid].shown_page == 1
    counter.turn_page(1)  # no third page
    assert counter.shown == (pid, 1)
    counter.print_status(pid, 1, "printed")
    assert station.papers[pid].printed[1] == PrintReport("printed")
    counter.print_status(pid, 0, "failed", "out of paper", "out_of_paper")
    assert station.papers[pid].printed[0] == PrintReport("failed", "out of paper", "out_of_paper")
    counter.close_paper()
    assert counter.page is None and station.papers[pid].shown_page is None
    kept = counter.papers[pid][0].data
    counter.wipe()
    assert not counter.papers and set(kept) == {0}


def test_a_paper_closed_while_its_later_pages_arrive_stays_closed() -> None:
    """The resident closes page 1 before page 2 has arrived: page 2 arriving does not open the paper again; staff
    showing it again does."""
    counter, _station, to_station, _ = pair()
    first = list(page_messages("office-1-1", 0, 2, b"\x89PNG one", fmt="png", width=10, height=14))
    second = list(page_messages("office-1-1", 1, 2, b"\x89PNG two", fmt="png", width=10, height=14))
    for m in first:
        counter.on_message("office-1", m)
    assert counter.shown == ("office-1-1", 0)
    counter.close_paper()
    for m in second:
        counter.on_message("office-1", m)
    assert counter.shown is None and set(counter.papers["office-1-1"]) == {0, 1}
    assert '{"assist":"paper_received","id":"office-1-1","page":1}' in to_station
    counter.on_message("office-1", encode("paper_page", id="office-1-1", page=1))
    assert counter.shown == ("office-1-1", 1)


def test_a_paper_cut_off_by_a_lost_channel_is_completed_from_what_each_side_says_again() -> None:
    """The channel dies in the middle of page 2 of 3 (the rest and the counter's confirmations lost): on the new
    channel the station sends what was not confirmed, whole, and the counter repeats what it holds; the counter
    ends with every page intact, showing the page it showed, and the station's status is true."""
    to_station: list[str] = []
    to_counter: list[str] = []
    counter = CounterAssist(to_station.extend)
    station = StationAssist(to_counter.extend, "office-1")
    pages = [PageImage(bytes([i]) * 40000, "png", 100, 141) for i in range(3)]
    pid = station.send_paper(pages, "記入例")
    cut = next(i for i, m in enumerate(to_counter) if '"page":1,"n":2' in m)
    for m in to_counter[:cut]:
        counter.on_message("office-1", m)
    assert set(counter.papers[pid]) == {0} and counter.shown == (pid, 0)
    to_counter.clear()
    to_station.clear()  # lost with the channel: the station never heard of page 1
    assert station.papers[pid].received == set()

    again = station.resume_messages()
    assert sum(is_page_transfer(m) for m in again) == len(again)
    assert [json.loads(m)["page"] for m in again if '"paper_begin"' in m] == [0, 1, 2]
    for m in again:
        counter.on_message("office-1", m)
    for m in counter.resume_messages("office-1"):
        station.on_message("counter-1", m)
    for m in to_station:
        station.on_message("counter-1", m)
    assert not counter.errors and {n: bytes(p.data) for n, p in counter.papers[pid].items()} == {
        i: p.data for i, p in enumerate(pages)
    }
    assert counter.shown == (pid, 0)  # page 1 sent again did not move the screen
    assert station.papers[pid].received == {0, 1, 2} and station.papers[pid].shown_page == 0
    assert not station.papers[pid].errors
    assert counter.resume_messages("office-2") == []  # another staff member's papers are not theirs


def test_a_page_damaged_once_and_sent_again_is_no_longer_reported_damaged() -> None:
    """A paper_error for a page, then the page arrives: the station's status no longer says it is missing."""
    station = StationAssist(lambda msgs: None, "office-1")

    def to_station(msgs: list[str]) -> None:
        for m in msgs:
            station.on_message("counter-1", m)

    counter = CounterAssist(to_station)
    pid = station.send_paper([PageImage(b"\x89PNG x", "png", 10, 10)])  # lost on the way
    station.on_message("counter-1", encode("paper_error", id=pid, page=0, message="SHA-256 does not match"))
    assert station.papers[pid].errors == {0: "SHA-256 does not match"}
    again = station.resume_messages()
    assert len(again) == 3  # begin, one chunk, end
    for m in again:
        counter.on_message("office-1", m)
    assert not station.papers[pid].errors and station.papers[pid].received == {0}


def test_staff_take_a_paper_back() -> None:
    """A paper staff take back leaves the counter's screen and memory."""
    counter, station, _, _ = pair()
    pid = station.send_paper([PageImage(b"\x89PNG x", "png", 10, 10)])
    held = counter.papers[pid][0].data
    station.take_back(pid)
    assert counter.page is None and pid not in counter.papers and set(held) == {0}


def test_marks_and_written_conversation_both_ways() -> None:
    """Marks reach the counter; the paper moving clears them and tells staff; text, replies and strokes flow."""
    counter, station, _, _ = pair()
    station.set_marks([Mark("circle", 0.5, 0.25, r=0.1), Mark("arrow", 0.1, 0.9, x2=0.3, y2=0.7)])
    assert [m.kind for m in counter.document_marks] == ["circle", "arrow"] and counter.document_marks[
        0
    ].r == 0.1
    counter.clear_document_marks("moved")
    assert not station.document_marks and station.marks_cleared_reason == "moved"
    station.send_text("ご住所を書いてください")
    assert counter.writing and counter.last_text == "ご住所を書いてください"
    counter.reply("again")
    counter.reply("yes")
    assert station.replies == ["again", "yes"]
    for i in range(10):
        counter.stroke_to(0.1 * i, 0.5, new=i == 0)
    counter.end_stroke()
    flat = [v for point in counter.strokes[0] for v in point]
    assert [v for point in station.strokes[0] for v in point] == pytest.approx(flat) and len(flat) == 20
    counter.clear_strokes()
    assert not station.strokes
    counter.set_writing(False)
    assert not station.writing


def test_a_bad_message_is_dropped_and_the_conversation_goes_on() -> None:
    """A malformed message is logged and dropped; a damaged paper is answered with paper_error."""
    counter, station, to_station, _ = pair()
    counter.on_message("office-1", '{"assist": "text", "seq": 0}')
    counter.on_message("office-1", {"assist": "paper_end", "id": "x", "page": 0})
    assert len(counter.errors) == 2 and any('"paper_error"' in m for m in to_station)
    station.send_text("はい")
    assert counter.last_text == "はい"


def test_marks_land_on_the_same_place_of_the_picture_on_any_screen() -> None:
    """A mark placed on a 16:9 picture in one widget is drawn at the same picture point in another, letterboxed."""
    staff = fit_rect(1920, 1080, 0, 0, 1000, 1000)  # pillar/letterbox differ on each side
    kiosk = fit_rect(1920, 1080, 850, 200, 400, 500)
    assert staff is not None and kiosk is not None
    frac = to_fraction(*to_screen(0.75, 0.2, staff), staff)
    assert frac == pytest.approx((0.75, 0.2))
    sx, sy = to_screen(0.75, 0.2, kiosk)
    assert sx == pytest.approx(850 + 300) and sy == pytest.approx(
        200 + 250 + 112.5 / 2 * 2 * 0.8 - 0.0, abs=60
    )
    assert to_fraction(850, 200, kiosk) is None  # the letterbox band is not the picture
    circle = screen_mark(Mark("circle", 0.5, 0.5, r=0.1), kiosk)
    assert circle.r == pytest.approx(40) and (circle.x, circle.y) == pytest.approx((1050, 450))


def test_paper_motion_ignores_noise_and_sees_the_paper_moved() -> None:
    """Camera noise never clears the marks; the paper pushed aside does, after two frames."""
    from kiosk.video.synthetic import render_document_page

    page = np.asarray(render_document_page(320, 180)).copy()
    motion = PaperMotion()
    motion.anchor(page)
    rng = np.random.default_rng(2)
    for _ in range(5):
        noisy = np.clip(page.astype(np.int16) + rng.integers(-6, 7, page.shape), 0, 255).astype(np.uint8)
        assert not motion.moved(noisy)
    shifted = np.roll(page, 60, axis=1)
    assert not motion.moved(shifted) and motion.moved(shifted) and not motion.anchored
