"""The relay's small pure guards (issue 13 rows 4 and 5): log lines per key per minute, and log values that
cannot forge lines."""

from __future__ import annotations

import logging

from common.logs import MAX_VALUE_CHARS, event
from relay_server.guards import LogLimiter, RepeatFilter


def test_log_limiter_one_line_per_key_per_interval_with_the_count_held_back() -> None:
    """Row 4: the first line of a key passes, repeats within the interval are held back and counted."""
    lim = LogLimiter(60.0)
    assert lim.allow("198.18.0.1", 0.0) == 0
    assert [lim.allow("198.18.0.1", t) for t in (1.0, 2.0, 59.0)] == [None, None, None]
    assert lim.allow("198.18.0.2", 3.0) == 0  # another key is independent
    assert lim.allow("198.18.0.1", 61.0) == 3  # the next line says three were held back


def test_repeat_filter_quiets_a_library_logger() -> None:
    """Row 4: the same library message (e.g. websockets' handshake errors, asyncio's accept errors) is logged once
    a minute, not once per socket."""
    logger = logging.getLogger("relay.test-repeat")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.addFilter(RepeatFilter(LogLimiter(60.0)))
    logger.propagate = False
    try:
        for _ in range(1000):
            logger.error("opening handshake failed")
        logger.error("another message")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["opening handshake failed", "another message"]


def test_log_values_are_escaped_and_cut() -> None:
    """Row 5: CR, LF, ESC, U+2028 and lone surrogates in a value are escaped; long values are cut."""
    logger = logging.getLogger("relay.test-fmt")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        event(
            logger, "auth_failed", problem='x\r\nevent=forged\x1b[2J\u2028\ud800 "q" \\', token="A" * 10_000
        )
    finally:
        logger.removeHandler(handler)
    (line,) = lines
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert "\\r\\nevent=forged\\x1b[2J\\u2028\\ud800" in line and '\\"q\\"' in line
    assert len(line) < 2 * MAX_VALUE_CHARS + 200
    line.encode("utf-8")  # a journal line, always encodable
