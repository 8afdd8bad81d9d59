"""The counter's and the station's state machines across a relay restart, wired to the relay's real core (all
pure: no sockets, no clock): both stay in the call through the old relay's 'ended' (shutdown), vouch for it after
the new relay's welcome, and are back in the same call there, with the lamp showing it taken again."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import pytest
from helpers import COUNTER, LAMP, OFFICE1, make_relay_config, relay_msg

from common import protocol
from kiosk import counter_state, office_state
from kiosk.machine import LinkChanged, Send
from relay_server.core import Action, RelayCore
from relay_server.core import Send as RelaySend

NOW = 1_790_000_000.0
Machine = counter_state.CounterMachine | office_state.OfficeMachine


class Wire:
    """One relay core and the terminals' machines: relay messages go to the machines, their 'Send's to the core."""

    def __init__(self, core: RelayCore, machines: dict[str, Machine]) -> None:
        self.core = core
        self.machines = machines
        self.inbox: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.sent: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def run(self, actions: list[Action], now: float = NOW) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if not isinstance(action, RelaySend):
                continue
            self.inbox[action.to].append(action.msg)
            machine = self.machines.get(action.to)
            if machine is not None:
                queue += self.commands(action.to, machine.handle(relay_msg(action.msg)), now)

    def commands(self, terminal: str, commands: list[Any], now: float = NOW) -> list[Action]:
        out: list[Action] = []
        for cmd in commands:
            if isinstance(cmd, Send):
                self.sent[terminal].append(cmd.msg)
                out += self.core.receive(terminal, protocol.parse(protocol.encode(cmd.msg)), now)
        return out

    def connect(self, terminal: str, now: float = NOW) -> None:
        machine = self.machines.get(terminal)
        if machine is not None:
            self.run(self.commands(terminal, machine.handle(LinkChanged("up", "ws://relay")), now), now)
        self.run(self.core.connect(terminal, now), now)

    def act(self, terminal: str, event: Any, now: float = NOW) -> None:
        self.run(self.commands(terminal, self.machines[terminal].handle(event), now), now)


def new_core() -> RelayCore:
    ids = (f"call{i}" for i in itertools.count(1))
    return RelayCore(make_relay_config(), lambda: next(ids))


@pytest.mark.parametrize("how", ["shutdown", "crash"])
def test_both_sides_are_back_in_the_same_call_after_a_relay_restart(how: str) -> None:
    counter = counter_state.CounterMachine(counter_state.Timeouts(idle=60, result=20, thanks=8))
    counter.start()
    counter.handle(counter_state.DevicesChecked(()))
    station = office_state.OfficeMachine(clock=lambda: 0.0, wall=lambda: NOW)
    machines: dict[str, Machine] = {COUNTER: counter, OFFICE1: station}
    old = Wire(new_core(), machines)
    for t in (OFFICE1, COUNTER, LAMP):
        old.connect(t)
    old.act(COUNTER, counter_state.DepartmentChosen("juumin"))
    cid = old.core.call_of[COUNTER]
    old.act(OFFICE1, office_state.AnswerPressed(cid))
    assert counter.state is counter_state.State.IN_CALL and station.state is office_state.State.IN_CALL

    if how == "shutdown":  # SIGTERM: 'ended' (shutdown) first; a crash just drops the sockets
        old.run(old.core.shutdown(NOW + 10))
        assert [m["reason"] for m in old.inbox[COUNTER] if m["type"] == "ended"] == ["shutdown"]
    for machine in machines.values():
        machine.handle(LinkChanged("down", "relay gone"))
    assert counter.state is counter_state.State.IN_CALL and station.state is office_state.State.IN_CALL

    new = Wire(new_core(), machines)
    new.connect(LAMP, NOW + 20)
    new.connect(COUNTER, NOW + 21)
    assert new.sent[COUNTER] == [
        {"type": "resume", "call": cid, "department": "juumin", "members": [COUNTER, OFFICE1]}
    ]
    assert new.inbox[LAMP][-1] == {"type": "taken", "call": cid, "by": OFFICE1}
    new.connect(OFFICE1, NOW + 22)
    assert new.sent[OFFICE1] == [
        {"type": "resume", "call": cid, "department": "juumin", "members": [COUNTER, OFFICE1]}
    ]
    for t in (COUNTER, OFFICE1):
        assert [m["offline"] for m in new.inbox[t] if m["type"] == "call_state"][-1] == []
    assert counter.state is counter_state.State.IN_CALL and counter.call is not None
    assert (counter.call.id, counter.call.members) == (cid, [OFFICE1])
    assert station.state is office_state.State.IN_CALL and station.call is not None
    assert (station.call.id, station.call.members) == (cid, [COUNTER, OFFICE1])
    assert new.core.call_of == {COUNTER: cid, OFFICE1: cid}

    # The resumed call is an ordinary call on the new relay: the station hangs up (its media session sends the
    # 'hangup'), the counter thanks the resident.
    new.act(OFFICE1, office_state.HangUpPressed(), NOW + 60)
    new.run(new.core.receive(OFFICE1, {"type": "hangup", "call": cid}, NOW + 60))
    assert counter.state is counter_state.State.THANKS and station.state is office_state.State.WAITING
    assert new.inbox[LAMP][-1]["type"] == "ended"


def test_a_counter_whose_station_never_comes_back_thanks_the_resident() -> None:
    """The station does not come back to the restarted relay: after grace_period the call ends (disconnected) and
    the counter leaves the call screen."""
    counter = counter_state.CounterMachine(counter_state.Timeouts(idle=60, result=20, thanks=8))
    counter.start()
    counter.handle(counter_state.DevicesChecked(()))
    old = Wire(new_core(), {COUNTER: counter})
    old.connect(OFFICE1)
    old.connect(COUNTER)
    old.act(COUNTER, counter_state.DepartmentChosen("juumin"))
    cid = old.core.call_of[COUNTER]
    old.run(old.core.receive(OFFICE1, {"type": "answer", "call": cid}, NOW))
    counter.handle(LinkChanged("down", "relay gone"))
    new = Wire(new_core(), {COUNTER: counter})
    new.connect(COUNTER, NOW + 20)
    assert counter.state is counter_state.State.IN_CALL
    new.run(new.core.timer(("resume", cid), NOW + 40))
    assert new.inbox[COUNTER][-1] == {"type": "ended", "call": cid, "reason": "disconnected", "by": OFFICE1}
    assert counter.state is counter_state.State.THANKS
