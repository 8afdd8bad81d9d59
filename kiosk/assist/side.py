"""What both sides of the papers/marks/writing conversation share: sending, change notification, the written
conversation's mode, dispatching each message to its ``_on_<kind>`` handler, and what became of a print job. Pure.

:class:`~kiosk.assist.channel.CounterAssist` (the kiosk) and :class:`~kiosk.assist.station.StationAssist` (a
staff station) build on :class:`Side`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from common.logs import event
from kiosk.assist.messages import AssistError, Message, encode, parse

__all__ = ["PrintReport", "SendFn", "Side"]

log = logging.getLogger(__name__)

SendFn = Callable[[list[str]], None]


@dataclass(frozen=True)
class PrintReport:
    """What became of printing one page: ``state``, the counter's details and why not as a code."""

    state: str
    message: str = ""
    reason: str = ""


class Side:
    """What both sides share: sending, change notification, the written conversation's mode, wiping."""

    def __init__(self, send: SendFn, on_change: Callable[[str], Any] | None = None) -> None:
        self._send = send
        self.on_change = on_change
        self.version = 0
        self.writing = False
        self.errors: list[str] = []  # bad messages received (for the log and tests)

    def _changed(self, what: str) -> None:
        self.version += 1
        if self.on_change is not None:
            try:
                self.on_change(what)
            except Exception:
                event(log, "assist_handler_failed", logging.ERROR, exc_info=True, what=what)

    def on_message(self, member: str, data: Mapping[str, Any] | str) -> None:
        """One data-channel message from ``member`` (bad ones are logged and dropped)."""
        try:
            msg = parse(data)
            handler = getattr(self, "_on_" + msg.kind, None)
            if handler is None:
                raise AssistError(f"'{msg.kind}' is not for this side")
            handler(member, msg)
        except AssistError as err:
            event(log, "assist_message_dropped", logging.WARNING, member=member, problem=err)
            self.errors.append(str(err))
            self._on_bad(member, data, err)

    def _on_bad(self, member: str, data: Any, err: AssistError) -> None:
        pass

    def set_writing(self, on: bool) -> None:
        """Switch the written conversation on or off (either side may), and tell the other side."""
        if on != self.writing:
            self.writing = on
            self._send([encode("writing", on=on)])
            self._changed("writing")

    def _on_writing(self, member: str, msg: Message) -> None:
        if msg["on"] != self.writing:
            self.writing = msg["on"]
            self._changed("writing")

    def wipe(self) -> None:
        raise NotImplementedError
