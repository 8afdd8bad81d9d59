"""Who is online and what that means for each department: the relay core's indexes, presence and colleagues (pure).

:class:`PresenceIndex` is the part of :class:`relay_server.core.RelayCore` that keeps, for every change of a
terminal (online, away, in a call), the indexes that answer "which stations of this department are online, available,
free" without scanning every terminal, and turns changes into the ``presence`` messages counters get and the
``colleagues`` messages stations get. It knows nothing of calls beyond ``call_of`` (who is in one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.protocol import ROLES
from relay_server.actions import Action, Send
from relay_server.config import RelayConfig


@dataclass
class Online:
    role: str
    away: bool = False


class PresenceIndex:
    """Terminals online (role, away), who is in a call, and the indexes and messages that follow from them.

    Args:
        config: the validated relay config (departments, terminals, offices).
    """

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.online: dict[str, Online] = {}
        self.call_of: dict[str, str] = {}  # member terminal → call id
        self.sent_presence: dict[str, dict[str, str]] = {}
        # Indexes kept up to date by _reindex() on every change, so no event scans every terminal:
        # online terminals by (role, department); available (online, not away) stations by department and how
        # many of them are free (not in a call); each terminal's last contribution; departments to re-evaluate.
        depts = list(config.departments)
        self._online_in: dict[tuple[str, str], set[str]] = {(r, d): set() for r in ROLES for d in depts}
        self._available: dict[str, set[str]] = {d: set() for d in depts}
        self._free: dict[str, int] = dict.fromkeys(depts, 0)
        self._indexed: dict[str, tuple[bool, bool, bool]] = {}
        self._dirty: set[str] = set()
        self._presence: dict[str, str] = {}
        # Static: the staff stations of each office, as listed in an office's welcome.
        self._stations_of_office: dict[str, set[str]] = {o: set() for o in config.offices}
        self._station_cards: dict[str, dict[str, Any]] = {}
        for term in config.terminals.values():
            if term.role == "office":
                self._station_cards[term.id] = {
                    "id": term.id,
                    "name": term.name,
                    "departments": list(term.departments),
                }
                for d in term.departments:
                    self._stations_of_office[config.departments[d].office].add(term.id)
        # Colleagues to invite: the stations of a station's office(s), whatever their department (a question that
        # crosses departments is why one invites), but not every station of a large deployment.
        self._colleagues: dict[str, tuple[str, ...]] = {}
        for sid in self._station_cards:
            offices = {config.departments[d].office for d in config.terminals[sid].departments}
            self._colleagues[sid] = tuple(
                sorted({c for o in offices for c in self._stations_of_office[o]} - {sid})
            )
        self._station_dirty: set[str] = set()  # stations whose status changed since the colleagues were told

    # -- queries -------------------------------------------------------------------------------------------
    def role(self, terminal: str) -> str:
        return self.config.terminals[terminal].role

    def serves(self, terminal: str, department: str) -> bool:
        return department in self.config.terminals[terminal].departments

    def is_open(self, department: str, now: float) -> bool:
        return self.config.departments[department].hours.is_open(datetime.fromtimestamp(now, UTC))

    def stations_for(self, department: str) -> list[str]:
        """Online, not-away stations serving ``department``."""
        return sorted(self._available[department])

    def lamps_for(self, department: str) -> list[str]:
        return sorted(self._online_in["lamp", department])

    def online_in(self, role: str, department: str) -> int:
        """How many terminals of ``role`` for ``department`` are connected (for metrics)."""
        return len(self._online_in[role, department])

    def presence(self, department: str, now: float) -> str:
        if not self.is_open(department, now):
            return "closed"
        if not self._available[department]:
            return "offline"
        if self._free[department] == 0:
            return "busy"
        return "available"

    def presence_map(self, counter: str, now: float) -> dict[str, str]:
        return {d: self.presence(d, now) for d in self.config.terminals[counter].departments}

    # -- keeping the indexes and telling terminals ---------------------------------------------------------
    def _reindex(self, terminal: str) -> None:
        """Bring the indexes in line with ``terminal``'s state (online, away, in a call); O(its departments)."""
        t = self.config.terminals[terminal]
        o = self.online.get(terminal)
        online = o is not None
        available = online and t.role == "office" and not (o.away if o else False)
        free = available and terminal not in self.call_of
        old = self._indexed.get(terminal, (False, False, False))
        if old == (online, available, free):
            return
        self._indexed[terminal] = (online, available, free)
        for d in t.departments:
            if online != old[0]:
                group = self._online_in[t.role, d]
                group.add(terminal) if online else group.discard(terminal)
            if available != old[1]:
                self._available[d].add(terminal) if available else self._available[d].discard(terminal)
            if free != old[2]:
                self._free[d] += 1 if free else -1
        if t.role == "office":
            self._dirty.update(t.departments)
            if (online, available) != old[:2]:  # not on every call: busy stations can be invited all the same
                self._station_dirty.add(terminal)

    def station_status(self, station: str) -> str:
        """``available``, ``away`` or ``offline``: what a colleague's invite list shows (a station in a call is
        ``available``: an invitation rings it all the same)."""
        online, available, _free = self._indexed.get(station, (False, False, False))
        return "available" if available else "away" if online else "offline"

    def _colleague_updates(self) -> list[Action]:
        """Tell the online colleagues of every station whose status changed (``colleagues`` message)."""
        if not self._station_dirty:
            return []
        changed = sorted(self._station_dirty)
        self._station_dirty.clear()
        told: dict[str, dict[str, str]] = {}
        for station in changed:
            status = self.station_status(station)
            for colleague in self._colleagues.get(station, ()):
                if colleague in self.online:
                    told.setdefault(colleague, {})[station] = status
        return [Send(c, {"type": "colleagues", "stations": stations}) for c, stations in sorted(told.items())]

    def _presence_updates(self, now: float, everything: bool = False) -> list[Action]:
        """Re-evaluate presence of the departments touched since last time; tell the counters that offer them."""
        depts = list(self.config.departments) if everything else sorted(self._dirty)
        self._dirty.clear()
        changed = []
        for d in depts:
            p = self.presence(d, now)
            if self._presence.get(d) != p:
                self._presence[d] = p
                changed.append(d)
        counters = sorted({c for d in changed for c in self._online_in["counter", d]})
        return [a for c in counters for a in self._send_presence(c, now)] + self._colleague_updates()

    def _send_presence(self, counter: str, now: float) -> list[Action]:
        current = self.presence_map(counter, now)
        if self.sent_presence.get(counter) == current:
            return []
        self.sent_presence[counter] = current
        return [Send(counter, {"type": "presence", "departments": current})]
