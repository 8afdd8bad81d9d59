"""Issue 13 row 3 and point 3: the counter's intent wins the cancel/answer race.

The counter's state machine and the relay's core are pure, so they are run together here with a station, joined by
three FIFO channels (as websockets are), and every step — a message delivered on one channel, a touch at the kiosk
(call, cancel, hang up), a staff action (answer, hang up) — is picked at random. Thousands of such interleavings must
all end with the kiosk and the relay agreeing: a kiosk that shows the start screen has no call at the relay, so the
next resident is never refused with ``already_in_call``.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import make_relay_config, relay_msg
from test_counter_state import WELCOME

from common.messages import Cancel
from common.protocol import ProtocolError, encode, parse
from kiosk.counter_state import (
    CancelPressed,
    CounterMachine,
    DepartmentChosen,
    DevicesChecked,
    HangUpPressed,
    LinkChanged,
    Send,
    State,
    Timeouts,
)
from relay_server.core import CallState, RelayCore
from relay_server.core import Send as RelaySend

COUNTER, STATION = "counter-sapporo-1", "office-tobetsu-1"
CONFIG = make_relay_config()
NOW = 1_790_000_000.0


@dataclass
class World:
    """One kiosk, one relay core, one station, and the three channels between them."""

    rng: random.Random
    relay: RelayCore
    counter: CounterMachine
    to_relay: dict[str, deque[dict[str, Any]]] = field(
        default_factory=lambda: {COUNTER: deque(), STATION: deque()}
    )
    to_counter: deque[dict[str, Any]] = field(default_factory=deque)
    to_station: deque[dict[str, Any]] = field(default_factory=deque)
    station_ringing: set[str] = field(default_factory=set)
    station_call: str | None = None
    touches_left: int = 3
    trace: list[str] = field(default_factory=list)

    def relay_out(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, RelaySend):
                (self.to_counter if a.to == COUNTER else self.to_station).append(a.msg)

    def counter_out(self, commands: list[Any]) -> None:
        for c in commands:
            if isinstance(c, Send):
                self.to_relay[COUNTER].append(c.msg)

    # -- the steps -------------------------------------------------------------------------------
    def steps(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for who, q in self.to_relay.items():
            if q:
                out.append(("relay<-" + who, who))
        if self.to_counter:
            out.append(("counter<-relay", None))
        if self.to_station:
            out.append(("station<-relay", None))
        if self.touches_left:
            if self.counter.state is State.START:
                out.append(("touch department", None))
            elif self.counter.state is State.CALLING:
                out.append(("touch cancel", None))
            elif self.counter.state is State.IN_CALL:
                out.append(("touch hang up", None))
        for call in sorted(self.station_ringing):
            out.append(("staff answer", call))
        if self.station_call is not None and self.counter.state is State.IN_CALL:
            # Staff hang up during a conversation. (Had they hung up a call the kiosk had left, the relay would
            # have been rescued by them: the bug was that it needed rescuing, so that is not modelled.)
            out.append(("staff hang up", self.station_call))
        return out

    def do(self, name: str, arg: Any) -> None:
        self.trace.append(name)
        if name.startswith("relay<-"):
            msg = self.to_relay[arg].popleft()
            try:
                self.relay_out(self.relay.receive(arg, parse(encode(msg)), NOW))
            except ProtocolError as err:
                (self.to_counter if arg == COUNTER else self.to_station).append(err.to_message())
        elif name == "counter<-relay":
            self.counter_out(self.counter.handle(relay_msg(self.to_counter.popleft())))
        elif name == "station<-relay":
            self.station_receives(self.to_station.popleft())
        elif name == "touch department":
            self.touches_left -= 1
            self.counter_out(self.counter.handle(DepartmentChosen("juumin")))
        elif name == "touch cancel":
            self.touches_left -= 1
            self.counter_out(self.counter.handle(CancelPressed()))
        elif name == "touch hang up":
            self.touches_left -= 1
            self.counter_out(self.counter.handle(HangUpPressed()))
        elif name == "staff answer":
            self.station_ringing.discard(arg)
            self.to_relay[STATION].append({"type": "answer", "call": arg})
        elif name == "staff hang up":
            self.to_relay[STATION].append({"type": "hangup", "call": arg})
            self.station_call = None

    def station_receives(self, msg: dict[str, Any]) -> None:
        kind, call = msg["type"], str(msg.get("call"))
        if kind == "incoming":
            self.station_ringing.add(call)
        elif kind == "call_state":
            self.station_call = call
        elif kind in ("ended", "taken"):
            self.station_ringing.discard(call)
            if self.station_call == call:
                self.station_call = None

    def run(self, max_steps: int = 400) -> None:
        """Random steps until nothing can happen any more."""
        for _ in range(max_steps):
            steps = self.steps()
            if not steps:
                return
            self.do(*self.rng.choice(steps))
        raise AssertionError("did not settle: " + " / ".join(self.trace[-30:]))

    def quiesce(self) -> None:
        """Deliver everything in flight (no more touches, staff only answer calls that ring)."""
        self.touches_left = 0
        for _ in range(200):
            steps = [s for s in self.steps() if s[0] != "staff hang up"]
            if not steps:
                return
            self.do(*steps[0])
        raise AssertionError("messages kept flowing")


def new_world(seed: int) -> World:
    counter = CounterMachine(Timeouts())
    counter.start()
    counter.handle(DevicesChecked(()))
    counter.handle(LinkChanged("up", "ws://relay"))
    relay = RelayCore(CONFIG, iter(f"c{i}" for i in range(1000)).__next__)
    w = World(random.Random(seed), relay, counter)
    w.relay_out(relay.connect(STATION, NOW))
    w.to_station.clear()
    w.relay_out(relay.connect(COUNTER, NOW))
    w.to_counter.clear()
    counter.handle(relay_msg(WELCOME))
    counter.handle(
        relay_msg({"type": "presence", "departments": {"juumin": "available", "zeimu": "available"}})
    )
    assert counter.state is State.START
    return w


def check_agree(w: World) -> None:
    """After everything in flight is delivered, kiosk and relay agree, and a new call can start."""
    w.quiesce()
    state, call_at_relay = w.counter.state, w.relay.call_of.get(COUNTER)
    where = f"kiosk {state.name}, relay call {call_at_relay}; steps: {' / '.join(w.trace)}"
    if state is State.IN_CALL:
        assert call_at_relay is not None and w.relay.calls[call_at_relay].state is CallState.ACTIVE, where
        return
    assert call_at_relay is None, "kiosk left a call the relay still holds: " + where
    if state is State.START:  # the next resident is not refused
        w.counter_out(w.counter.handle(DepartmentChosen("juumin")))
        w.quiesce()
        assert w.counter.state is State.CALLING, where
        assert not [m for m in w.to_counter if m.get("code") == "already_in_call"], where


RUNS = 4000


def test_no_interleaving_leaves_the_kiosk_stuck() -> None:
    """Row 3 / point 3: over 4,000 random interleavings of touches, staff actions and deliveries, a kiosk that is
    no longer in a call never has a call left at the relay."""
    for seed in range(RUNS):
        w = new_world(seed)
        w.run()
        check_agree(w)


def _old_relay_cancel(self: RelayCore, terminal: str, msg: dict[str, Any], now: float) -> list[Any]:
    """The relay's rule before issue 13: a cancel after the answer was refused with not_ringing."""
    call = self._member_call(terminal, msg, "cancel")
    if call.state is not CallState.RINGING:
        raise ProtocolError("not_ringing", f"call {call.id} was already answered; use 'hangup'", "cancel")
    return self._end(call, "cancelled", now, by=terminal)


def test_the_kiosk_alone_settles_the_race_with_an_older_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point 3, kiosk side: against a relay that still refuses a late cancel, the kiosk hangs up the call it sees
    answered after cancelling, so no interleaving leaves a call behind either."""
    monkeypatch.setattr(RelayCore, "_on_cancel", _old_relay_cancel)
    for seed in range(RUNS // 2):
        w = new_world(seed)
        w.run()
        check_agree(w)


def test_the_race_happens_in_these_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleavings really reach the race: in many runs the relay gets the cancel after it took the answer."""
    late = []
    original = RelayCore._on_cancel

    def counting(self: RelayCore, terminal: str, msg: Cancel, now: float) -> list[Any]:
        call = self.calls.get(msg["call"])
        late.append(call is not None and call.state is CallState.ACTIVE)
        return original(self, terminal, msg, now)

    monkeypatch.setattr(RelayCore, "_on_cancel", counting)
    for seed in range(RUNS // 4):
        new_world(seed).run()
    assert sum(late) > 20, (sum(late), len(late))


def test_answered_after_cancel_is_hung_up_by_the_kiosk() -> None:
    """Row 3, kiosk side: 'answered' for a call the resident cancelled makes the kiosk send 'hangup' for it, and the
    kiosk stays on the start screen."""
    w = new_world(0)
    w.counter.handle(DepartmentChosen("juumin"))
    w.counter.handle(relay_msg({"type": "ringing", "call": "c9", "department": "juumin"}))
    assert Send({"type": "cancel", "call": "c9"}) in w.counter.handle(CancelPressed())
    out = w.counter.handle(relay_msg({"type": "answered", "call": "c9", "by": STATION}))
    assert Send({"type": "hangup", "call": "c9"}) in out and w.counter.state is State.START
    assert w.counter.handle(relay_msg({"type": "answered", "call": "c9", "by": STATION})) == []  # once
