"""The texts and list rows the station's screens show, composed from the machine's state and the strings:
department and station names, the bar's title, waiting times, the call's title, missed calls, the call's members
and invitations. A mixin of :class:`~kiosk.apps.office_ui.OfficeApp`, called from the kv files and its refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kiosk.config import TerminalConfig
from kiosk.office_state import InviteStatus, OfficeMachine

__all__ = ["OfficeTextsMixin"]

STATION_STATUS_KEYS = {
    "available": "office.invite.station_available",
    "away": "office.invite.station_away",
    "offline": "office.invite.station_offline",
}


def _mmss(seconds: float) -> tuple[int, int]:
    s = max(0, int(seconds))
    return s // 60, s % 60


class OfficeTextsMixin:
    """Texts for :class:`~kiosk.apps.office_ui.OfficeApp`'s screens."""

    # provided by OfficeApp / TerminalApp / KioskApp (annotations only: nothing here shadows them)
    machine: OfficeMachine
    config_file: TerminalConfig
    session: Any
    lang: str
    tr: Callable[..., str]

    def dept_name(self, dept_id: str, lang: str) -> str:
        d = self.machine.department(dept_id)
        return d.name(lang) if d is not None else dept_id

    def station_status_text(self, status: str, lang: str) -> str:
        """What the invite picker says of a colleague's status (``colleagues`` / ``welcome.stations``)."""
        return self.tr(STATION_STATUS_KEYS.get(status, "office.invite.station_offline"), lang)

    def station_name(self, terminal: str) -> str:
        if terminal and terminal == self.machine.terminal:
            return self.machine.terminal_name or terminal
        s = self.machine.station(terminal)
        return s.name if s is not None else terminal

    def station_title(self, lang: str, _version: float = 0) -> str:
        m = self.machine
        if not m.terminal:
            return self.config_file.relay.url
        return self.tr("office.bar.station", lang, name=m.terminal_name or m.terminal, id=m.terminal)

    def waited_text(self, since: float, lang: str, _tick: float = 0) -> str:
        minutes, seconds = _mmss(time.monotonic() - since)
        return self.tr("office.waiting.waited", lang, minutes=minutes, seconds=seconds)

    def call_title(self, lang: str, _tick: float = 0, _version: float = 0) -> str:
        m = self.machine
        call = m.call
        if call is None:
            entry = m.ringing.get(m.answering or "")
            if entry is None:
                return ""
            dept, counter, since = entry.department, entry.counter_name or entry.counter, time.monotonic()
        else:
            dept, counter, since = call.department, call.counter_name or call.counter, call.answered_at
        minutes, seconds = _mmss(time.monotonic() - since)
        return self.tr(
            "office.call.title",
            lang,
            department=self.dept_name(dept, lang),
            counter=counter,
            minutes=minutes,
            seconds=seconds,
        )

    def _missed_row(self, x: Any) -> tuple[str, str]:
        lang = self.lang
        at = datetime.fromtimestamp(x.at).strftime("%H:%M")
        minutes, seconds = _mmss(x.waited)
        waited = self.tr("office.missed.duration", lang, minutes=minutes, seconds=seconds)
        title = self.tr("office.missed.line", lang, time=at, department=self.dept_name(x.department, lang))
        key = (
            "office.missed.detail_cancelled" if x.reason == "cancelled" else "office.missed.detail_unanswered"
        )
        return title, self.tr(key, lang, counter=x.counter_name or x.counter, waited=waited)

    def _member_rows(self) -> list[tuple[str, str, bool]]:
        m = self.machine
        assert m.call is not None
        rows = []
        for member in m.call.members:
            connected = self.session is not None and self.session.connection_state(member) == "connected"
            if member == m.call.counter:
                rows.append(
                    (
                        self.tr("office.call.resident_member", counter=m.call.counter_name or member),
                        "resident",
                        connected,
                    )
                )
            elif member == m.terminal:
                rows.append((self.tr("office.call.you", name=self.station_name(member)), "you", True))
            else:
                rows.append(
                    (self.tr("office.call.colleague", name=self.station_name(member)), "staff", connected)
                )
        return rows

    def _invite_rows(self) -> list[tuple[str, str]]:
        m = self.machine
        assert m.call is not None
        rows = []
        for inv in m.call.invites:
            target = (
                self.dept_name(inv.target, self.lang)
                if inv.kind == "department"
                else self.station_name(inv.target)
            )
            fields = {"target": target, "by": self.station_name(inv.by), "code": inv.detail}
            if inv.status is InviteStatus.JOINED and inv.by in m.call.members:
                continue  # shown in the members list
            rows.append((self.tr(f"office.invite.{inv.status.value}", **fields), inv.status.value))
        return rows[-3:]
