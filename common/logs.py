"""Structured logging: one ``key=value`` line per event, readable by people and by journald filters."""

from __future__ import annotations

import logging
import sys
from typing import Any


def _fmt(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event as ``event=NAME k=v ...``."""
    if logger.isEnabledFor(level):
        parts = [f"event={name}"] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
        logger.log(level, " ".join(parts))


def setup_logging(level: str | int = "INFO", stream: Any = None) -> None:
    """Log to stderr (journald picks it up under systemd) with time, level and logger name."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())
    # The websockets library logs every HTTP request at INFO; our own events say what matters.
    logging.getLogger("websockets").setLevel(logging.WARNING)
