"""What the indicator lamp should show, from relay messages (pure: no I/O, no event loop, no device module).

:class:`LampBoard` takes relay messages and link changes and gives the desired :class:`ChannelState` of every
channel the lamp config uses. It is the pure core of the lamp agent (``kiosk/lamp_agent.py``), which drives a
:class:`~kiosk.devices.lamp.LampDevice` from it; the device layer imports :class:`ChannelState` from here.
The rules are written out in ``kiosk/lamp_agent.py``'s docstring and ``docs/devices.md`` ("Lamp").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.messages import ServerMessage
from kiosk.config import LampConfig

__all__ = ["ChannelState", "LampBoard", "Ring", "channel_labels", "config_channels"]


class ChannelState(enum.Enum):
    """What one lamp channel should show."""

    OFF = "off"
    ON = "on"
    BLINK = "blink"


def config_channels(config: LampConfig) -> list[int]:
    """Every channel a lamp config uses (departments, in-call, fault), sorted, each once."""
    chans = set(config.channels.values())
    chans.update(c for c in (config.in_call_channel, config.fault_channel) if c)
    return sorted(chans)


@dataclass(frozen=True)
class Ring:
    """A call ringing for a department: a new call, or an invitation into a call in progress."""

    department: str
    invite: bool = False


def channel_labels(config: LampConfig) -> dict[int, str]:
    """What each channel shows, for logs and the technician check: ``juumin``, ``juumin+zeimu``, ``in call``."""
    labels: dict[int, list[str]] = {}
    for dept, ch in sorted(config.channels.items(), key=lambda kv: kv[1]):
        labels.setdefault(ch, []).append(dept)
    if config.in_call_channel:
        labels[config.in_call_channel] = ["in call"]
    if config.fault_channel:
        labels[config.fault_channel] = ["fault"]
    return {ch: "+".join(names) for ch, names in sorted(labels.items())}


class LampBoard:
    """What the lamp should show, from relay messages (pure: no I/O, no event loop).

    Feed it every message the terminal receives (:meth:`on_message`), every link change (:meth:`on_link`)
    and, on a staff station, the messages it sends (:meth:`on_sent`); read :meth:`desired`.

    Calls are tracked by id, so two calls for one department keep its channel lit until both are gone.
    The terminal's role (from ``welcome``) decides how ``taken`` is read: a lamp terminal is told about every
    call of its departments, so ``taken`` means "in progress"; a staff station is only told when *another*
    station answered, and its own calls arrive as ``call_state``.
    """

    def __init__(self, config: LampConfig) -> None:
        self.config = config
        self.channels = config_channels(config)
        self.role = "lamp"
        self.departments: list[str] = []  # watched, from welcome
        self.ringing: dict[str, Ring] = {}  # call id → ring
        self.in_progress: set[str] = set()  # call ids
        self.relay_up = False
        self.fault = False
        self.testing: set[str] = set()  # departments lit by a lamp test from a counter (until end_test)

    # -- events ---------------------------------------------------------------------------------------------
    def on_message(self, msg: ServerMessage) -> None:
        """One message from the relay (validated on arrival by the relay client); other types are ignored."""
        if msg["type"] == "welcome":
            self.role = msg["role"]
            self.departments = [d["id"] for d in msg["departments"]]
            # The relay re-sends everything that is ringing or in progress right after welcome.
            self.ringing.clear()
            self.in_progress.clear()
            self.testing.clear()
            self.relay_up, self.fault = True, False
        elif msg["type"] == "lamp_test":
            self.testing = set(msg["departments"])
        elif msg["type"] == "incoming":
            self.ringing[msg["call"]] = Ring(msg["department"], invite="invited_by" in msg)
        elif msg["type"] == "taken":
            ring = self.ringing.pop(msg["call"], None)
            if self.role == "lamp" and not (ring is not None and ring.invite):
                self.in_progress.add(msg["call"])
        elif msg["type"] == "call_state":
            # A staff station's own call (after answering, or after reconnecting while in one).
            if msg["state"] == "active":
                self.ringing.pop(msg["call"], None)
                self.in_progress.add(msg["call"])
            elif msg["state"] == "ended":
                self.ringing.pop(msg["call"], None)
                self.in_progress.discard(msg["call"])
        elif msg["type"] == "ended":
            self.ringing.pop(msg["call"], None)
            self.in_progress.discard(msg["call"])

    def on_sent(self, msg: Mapping[str, Any]) -> None:
        """A message this terminal sent: after a station's own ``decline`` the relay says no more about that call."""
        if msg.get("type") == "decline" and isinstance(msg.get("call"), str):
            self.ringing.pop(msg["call"], None)

    def on_link(self, state: str, detail: str = "") -> None:
        """A relay link change (``connecting``, ``up``, ``down``, ``unauthorized``)."""
        if state == "up":
            self.relay_up, self.fault = True, False
        elif state in ("down", "unauthorized"):
            # Whatever was ringing may have been answered or ended meanwhile: show nothing stale.
            self.relay_up, self.fault = False, True
            self.ringing.clear()
            self.in_progress.clear()
            self.testing.clear()

    def end_test(self) -> None:
        """The lamp test's time is up: its channels show the calls again."""
        self.testing.clear()

    # -- output ---------------------------------------------------------------------------------------------
    def desired(self) -> dict[int, ChannelState]:
        """The state every configured channel should show now."""
        out = {ch: ChannelState.OFF for ch in self.channels}
        lit = ChannelState.BLINK if self.config.blink else ChannelState.ON
        for ring in self.ringing.values():
            ch = self.config.channels.get(ring.department)
            if ch:
                out[ch] = lit
        for dept in self.testing:
            ch = self.config.channels.get(dept)
            if ch:
                out[ch] = ChannelState.ON
        if self.config.in_call_channel and self.in_progress:
            out[self.config.in_call_channel] = ChannelState.ON
        if self.config.fault_channel and self.fault:
            out[self.config.fault_channel] = ChannelState.ON
        return out

    def ringing_count(self) -> dict[str, int]:
        """Department → number of calls ringing for it."""
        counts: dict[str, int] = {}
        for ring in self.ringing.values():
            counts[ring.department] = counts.get(ring.department, 0) + 1
        return counts

    def welcome_problems(self) -> list[str]:
        """Mismatches between the config and the departments the relay says this terminal watches."""
        if not self.departments:
            return []
        problems = [
            f"[lamp.channels] has '{d}', but the relay does not send this terminal its calls "
            f"(watched: {', '.join(self.departments)})"
            for d in self.config.channels
            if d not in self.departments
        ]
        if self.role == "lamp":
            problems += [
                f"the relay sends calls for '{d}', but [lamp.channels] gives it no channel"
                for d in self.departments
                if d not in self.config.channels
            ]
        return problems
