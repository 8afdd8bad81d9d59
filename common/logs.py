"""Structured logging: one ``key=value`` line per event, readable by people and by journald filters."""

from __future__ import annotations

import logging
import sys
from typing import Any

MAX_VALUE_CHARS = 200  # a value longer than this is cut (a client's text must not flood the journal)


def _escape_char(c: str) -> str:
    if c == "\n":
        return "\\n"
    if c == "\r":
        return "\\r"
    if c == "\t":
        return "\\t"
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def _fmt(value: Any) -> str:
    """One value of a log line: control characters, line breaks and quotes escaped, cut at MAX_VALUE_CHARS.

    Text from terminals ends up here, so no value may end a line or forge another one (CR, LF, ESC,
    U+2028 …) and none may be longer than a line is worth.
    """
    text = str(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + f"…(+{len(text) - MAX_VALUE_CHARS} chars)"
    printable = text.isprintable()  # false for every control, format, surrogate and line-separator char
    if text and printable and not any(c in text for c in ' ="\\'):
        return text
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    if not printable:
        text = "".join(c if c.isprintable() else _escape_char(c) for c in text)
    return '"' + text + '"'


def event(
    logger: logging.Logger, name: str, level: int = logging.INFO, *, exc_info: bool = False, **fields: Any
) -> None:
    """Log one event as ``event=NAME k=v ...`` (fields that are ``None`` left out); ``exc_info`` adds the traceback
    of the exception being handled. The one way this project writes an operational log line
    (``tests/test_logging_style.py`` refuses ``log.info(...)`` and friends anywhere else)."""
    if logger.isEnabledFor(level):
        parts = [f"event={name}"] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
        logger.log(level, " ".join(parts), exc_info=exc_info)


def setup_logging(level: str | int = "INFO", stream: Any = None) -> None:
    """Log to stderr (journald picks it up under systemd) with time, level and logger name."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())
    # The websockets library logs every HTTP request at INFO; our own events say what matters.
    logging.getLogger("websockets").setLevel(logging.WARNING)
