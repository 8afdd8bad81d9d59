"""The texts the counter's screens show, composed from the machine's state, the config and the strings: department
names, phones and hours, the start screen's titles and notice, results, call members, the technician's
diagnostics. A mixin of :class:`~kiosk.apps.counter.CounterApp`, called from the kv files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common import messages as msgs
from common.protocol import LAMP_TEST_SECONDS
from kiosk.cli import link_problem
from kiosk.config import TerminalConfig
from kiosk.counter_state import CounterMachine, OfferedDepartment
from kiosk.start_layout import towns_of

__all__ = ["CounterTextsMixin"]


class CounterTextsMixin:
    """Texts for the kv files of :class:`~kiosk.apps.counter.CounterApp`."""

    # provided by CounterApp / TerminalApp / KioskApp (annotations only: nothing here shadows them)
    machine: CounterMachine
    config_file: TerminalConfig
    local: Any
    url: str
    lang: str
    office_phone: str
    tr: Callable[..., str]

    def _department(self, dept_id: str) -> OfferedDepartment | None:
        if self.machine.result_department is not None and self.machine.result_department.id == dept_id:
            return self.machine.result_department
        return self.machine.department(dept_id)

    def dept_name(self, dept_id: str, lang: str) -> str:
        d = self._department(dept_id)
        return d.name(lang) if d is not None else ""

    def dept_phone(self, dept_id: str) -> str:
        d = self._department(dept_id)
        return d.phone if d is not None else ""

    def dept_hours(self, dept_id: str, lang: str) -> str:
        d = self._department(dept_id)
        return d.hours(lang) if d is not None else ""

    def start_notice(self, lang: str, nobody: bool = False, _fallback_key: str = "") -> str:
        """The start screen's band: the counter's rule, or, when nobody can answer, the phone number and hours."""
        if not nobody:
            return self.tr("start.notice", lang) + (
                "" if lang == "ja" else "\n" + self.tr("start.notice", "ja")
            )
        fallback = next((d for d in self.machine.departments if d.phone), None)
        phone = fallback.phone if fallback is not None else self.office_phone
        if not phone:
            return self.tr("start.nobody_later", lang)
        hours = fallback.hours(lang) if fallback is not None else self.config_file.ui.fallback_hours
        return self.tr("start.nobody" if hours else "start.nobody_no_hours", lang, phone=phone, hours=hours)

    def out_of_service_phone(self, lang: str, phone: str) -> str:
        """The out-of-service screen's next step: a phone number (and hours), from the relay or counter.toml."""
        if not phone:
            return ""
        known = next((d for d in self.machine.departments if d.phone == phone), None)
        hours = known.hours(lang) if known is not None else self.config_file.ui.fallback_hours
        key = "out_of_service.phone_hours" if hours else "out_of_service.phone"
        return self.tr(key, lang, phone=phone, hours=hours)

    def start_title(self, mode: str, town_id: str, pages: int, lang: str) -> str:
        if mode == "towns":
            return self.tr("start.choose_town", lang)
        town = next((t for t in towns_of(self.machine.departments) if t.id == town_id), None)
        if town is not None:
            key = "start.choose_in_town_pages" if pages > 1 else "start.choose_in_town"
            return self.tr(key, lang, town=town.name(lang), pages=pages)
        return (
            self.tr("start.choose_pages", lang, pages=pages) if pages > 1 else self.tr("start.choose", lang)
        )

    def town_emblem(self, town_id: str) -> str:
        """The emblem image configured for a town (``[emblems]`` in counter.toml), or ""."""
        return self.config_file.emblems.get(town_id, "")

    def result_title(self, outcome: str, dept_id: str, lang: str) -> str:
        if not outcome:
            return ""
        return self.tr(f"result.{outcome}", lang, department=self.dept_name(dept_id, lang))

    def member_labels(self, members: list[str], lang: str) -> list[str]:
        return [self.tr("call.staff", lang, n=i + 1) for i in range(len(members))]

    def members_text(self, members: list[str], lang: str) -> str:
        names = [self.tr("call.you", lang)] + self.member_labels(list(members), lang)
        return self.tr("call.members", lang, names="、".join(names) if lang == "ja" else ", ".join(names))

    def _lamp_test_text(self, msg: msgs.LampTestSent) -> str:
        sep = "、" if self.lang == "ja" else ", "
        departments = sep.join(self.dept_name(d, self.lang) for d in msg["departments"])
        lamps, stations = msg["lamps"], msg["stations"]
        if not lamps and not stations:
            return self.tr("counter_tech.lamp_none", departments=departments)
        none = self.tr("counter_tech.none")
        return self.tr(
            "counter_tech.lamp_sent",
            lamps=sep.join(lamps) or none,
            stations=sep.join(stations) or none,
            departments=departments,
            seconds=LAMP_TEST_SECONDS,
        )

    def diagnostics_text(self, lang: str, _version: float = 0) -> str:
        m = self.machine
        problem = link_problem(m.link_state, m.link_detail, self.url)
        relay = (
            self.tr("tech.relay_problem", lang, problem=problem)
            if problem
            else self.tr("tech.relay_state", lang, state=m.link_state, detail=self.url)
        )
        lines = [
            self.tr("tech.terminal", lang, id=f"{m.terminal or '?'} {m.terminal_name}".strip()),
            self.tr("counter_tech.state", lang, state=m.state.name),
            self.tr("tech.relay", lang) + ": " + relay,
        ]
        media = self.config_file.media
        specs = {
            "tech.camera": media.camera.source if media and media.camera else "",
            "tech.document_camera": media.document_camera.source if media and media.document_camera else "",
            "tech.microphone": media.audio.input if media else "",
        }
        for key, src in (
            ("tech.camera", self.local and self.local.camera),
            ("tech.document_camera", self.local and self.local.document),
            ("tech.microphone", self.local and self.local.audio),
        ):
            status = getattr(src, "status", "—") if src else "—"
            if status != "ok":
                verdict = self.tr("tech.device_missing", lang, detail=status)
            elif specs[key].startswith("synthetic:"):
                verdict = self.tr("tech.device_synthetic", lang)  # it works, but it vouches for no device
            else:
                verdict = self.tr("tech.device_ok", lang)
            lines.append(self.tr(key, lang) + ": " + verdict)
        if media is not None and media.audio.output == "null":
            lines.append(self.tr("tech.speaker", lang) + ": " + self.tr("tech.speaker_null", lang))
        causes = m.out_of_service_causes()
        lines.append(
            self.tr("counter_tech.causes", lang, causes="; ".join(causes))
            if causes
            else self.tr("counter_tech.no_causes", lang)
        )
        return "\n".join(lines)
