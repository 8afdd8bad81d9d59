"""The counter kiosk's call state machine: pure, no Kivy, no I/O.

The app feeds it events (relay messages, link changes, touches, timers, device checks) through
:meth:`CounterMachine.handle`, which returns commands for the app to carry out (send a message, start or
cancel a timer, ring, start or stop media (the app forwards every relay message to the media session
itself while one exists), reset the language, exit). Screens show :attr:`CounterMachine.state`
and read the rest of what they need from the machine's public attributes.

Every state change goes through :meth:`CounterMachine._go`, which logs ``old -> new`` and raises
:class:`InvalidTransition` (naming both states) for a change that :data:`TRANSITIONS` does not allow
(:func:`kiosk.machine.check_transition`, shared with the staff station's machine).
Timers are events too: the machine asks for ``StartTimer(name, seconds)`` and later receives
``TimerFired(name)``; a fired timer it no longer expects is ignored.

Why it is one module: it is one state machine. Its handlers are short and share the machine's state (the call,
the timers, presence, the PIN) and one transition table; spread over modules, which event moves which state would
no longer be visible in one place. Its vocabulary (states, data, events, commands) is in
:mod:`kiosk.counter_events`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from common import messages as msgs
from common.logs import event
from kiosk.counter_events import (  # the machine's vocabulary, re-exported
    BackPressed,
    CancelPressed,
    CheckDevices,
    CounterCall,
    DepartmentChosen,
    DevicesChecked,
    ExitApp,
    HangUpPressed,
    MediaEnded,
    MediaReconnecting,
    OfferedDepartment,
    Outcome,
    PinEntered,
    ReloadConfig,
    ResetLanguage,
    SendFailed,
    StartMedia,
    State,
    StopMedia,
    TechClosed,
    TechGesture,
    Timeouts,
    Touched,
)
from kiosk.machine import (
    CancelTimer,
    Command,
    Event,
    InvalidTransition,
    LinkChanged,
    RelayMessage,
    Ring,
    Send,
    StartTimer,
    TimerFired,
    TransitionTable,
    check_transition,
)
from kiosk.video.membership import resume_message

log = logging.getLogger(__name__)

__all__ = [
    "State",
    "Outcome",
    "OfferedDepartment",
    "CounterCall",
    "CounterMachine",
    "InvalidTransition",
    "Timeouts",
    # events
    "Event",
    "LinkChanged",
    "RelayMessage",
    "DevicesChecked",
    "Touched",
    "DepartmentChosen",
    "CancelPressed",
    "HangUpPressed",
    "BackPressed",
    "TechGesture",
    "PinEntered",
    "TechClosed",
    "TimerFired",
    "SendFailed",
    "MediaEnded",
    "MediaReconnecting",
    # commands
    "Command",
    "Send",
    "StartTimer",
    "CancelTimer",
    "Ring",
    "StartMedia",
    "StopMedia",
    "CheckDevices",
    "ResetLanguage",
    "ExitApp",
    "ReloadConfig",
]


TRANSITIONS: TransitionTable[State] = TransitionTable(
    "counter",
    {
        State.STARTING: frozenset({State.START, State.OUT_OF_SERVICE, State.PIN}),
        State.OUT_OF_SERVICE: frozenset({State.START, State.PIN}),
        State.START: frozenset({State.CALLING, State.RESULT, State.OUT_OF_SERVICE, State.PIN}),
        State.CALLING: frozenset(
            {State.IN_CALL, State.RESULT, State.START, State.OUT_OF_SERVICE, State.THANKS}
        ),
        State.IN_CALL: frozenset({State.THANKS}),
        State.RESULT: frozenset({State.START, State.OUT_OF_SERVICE}),
        State.THANKS: frozenset({State.START, State.OUT_OF_SERVICE}),
        State.PIN: frozenset({State.TECH, State.START, State.OUT_OF_SERVICE, State.STARTING}),
        State.TECH: frozenset({State.START, State.OUT_OF_SERVICE, State.STARTING}),
    },
)

# Screens that return to START after ``idle`` seconds without a touch (not the call screens).
IDLE_STATES = frozenset({State.START, State.RESULT, State.THANKS, State.PIN, State.TECH})

# Timer names.
T_IDLE = "idle"
T_RESULT = "result"
T_THANKS = "thanks"
T_LINK_GRACE = "link_grace"
T_DEVICE_RETRY = "device_retry"
T_STARTUP = "startup"
T_CALL_LOST = "call_lost"  # ringing while the relay is away: give up after the relay's grace period
T_RESUME = "resume"  # welcomed again while ringing: the relay must confirm the call (call_state) by then


# -- the machine ---------------------------------------------------------------------------------
class CounterMachine:
    """State machine of the resident's kiosk.

    Args:
        timeouts: timer lengths.
        pin: the technician PIN; empty disables the technician menu.
        clock: monotonic seconds (injected so tests control time).
    """

    def __init__(
        self, timeouts: Timeouts | None = None, *, pin: str = "", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        self.pin = pin
        self.clock = clock
        self.state = State.STARTING
        self.departments: list[OfferedDepartment] = []
        self.presence: dict[str, str] = {}
        self.terminal = ""
        self.terminal_name = ""
        self.link_state = "connecting"
        self.link_detail = ""
        self.welcomed = False
        self.device_problems: tuple[str, ...] | None = None  # None: not checked yet
        self.call: CounterCall | None = None
        self.outcome: Outcome | None = None
        self.result_department: OfferedDepartment | None = None
        self.pin_error = False
        self.pin_attempts = 0
        self.reconnecting = False  # in a call whose media is being rebuilt: the screen says so, calmly
        self.ended_by_media = False  # the last call ended because its media could not be restored
        self._timers: set[str] = set()
        self._cancelled_ids: list[str] = []  # calls the resident cancelled: an 'answered' for one is hung up
        self._out: list[Command] = []
        # The dispatch tables: every event type this machine takes, every relay message type it reacts to.
        self.event_handlers: dict[type[Event], Callable[[Any], None]] = {
            LinkChanged: self._on_LinkChanged,
            DevicesChecked: self._on_DevicesChecked,
            Touched: self._on_Touched,
            TimerFired: self._on_TimerFired,
            DepartmentChosen: self._on_DepartmentChosen,
            CancelPressed: self._on_CancelPressed,
            HangUpPressed: self._on_HangUpPressed,
            BackPressed: self._on_BackPressed,
            TechGesture: self._on_TechGesture,
            PinEntered: self._on_PinEntered,
            TechClosed: self._on_TechClosed,
            SendFailed: self._on_SendFailed,
            MediaEnded: self._on_MediaEnded,
            MediaReconnecting: self._on_MediaReconnecting,
            RelayMessage: self._on_RelayMessage,
        }
        # Each message handler takes the definition of common.messages its key names (validated on arrival by the
        # relay client), hence ``Any`` for the table's argument: a Callable's argument cannot vary with the key.
        self.message_handlers: dict[str, Callable[[Any], None]] = {
            "welcome": self._msg_welcome,
            "presence": self._msg_presence,
            "ringing": self._msg_ringing,
            "answered": self._msg_answered,
            "call_state": self._msg_call_state,
            "joined": self._msg_joined,
            "left": self._msg_left,
            "ended": self._msg_ended,
            "error": self._msg_error,
        }
        self.history: list[tuple[State, State]] = []
        self._started = False

    # -- queries ---------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Relay welcomed us and every camera is present."""
        return self.link_state == "up" and self.welcomed and self.device_problems == ()

    def department(self, dept_id: str) -> OfferedDepartment | None:
        return next((d for d in self.departments if d.id == dept_id), None)

    def availability(self, dept_id: str) -> str:
        """``available``, ``busy``, ``closed`` or ``offline`` (unknown departments count as offline)."""
        return self.presence.get(dept_id, "offline")

    def out_of_service_causes(self) -> list[str]:
        """Technical causes for the technician (not shown large to residents)."""
        causes = []
        if self.link_state != "up" or not self.welcomed:
            causes.append(f"relay {self.link_state}: {self.link_detail}".rstrip(": "))
        if self.device_problems:
            causes.extend(self.device_problems)
        elif self.device_problems is None:
            causes.append("devices not checked yet")
        return causes

    # -- the one entry point ---------------------------------------------------------------------
    def start(self) -> list[Command]:
        """Commands to run once at start-up (check devices, start-up timer)."""
        self._started = True
        self._timer(T_STARTUP, self.timeouts.startup)
        self._out.append(CheckDevices())
        return self._flush()

    def handle(self, event: Event) -> list[Command]:
        """Feed one event; returns the commands to carry out, in order."""
        if isinstance(event, TimerFired):
            if event.name not in self._timers:
                return []  # cancelled or superseded
            self._timers.discard(event.name)
        method = self.event_handlers.get(type(event))
        if method is None:
            raise TypeError(f"CounterMachine cannot handle {type(event).__name__}")
        method(event)
        return self._flush()

    # -- transitions -----------------------------------------------------------------------------
    def _go(self, new: State, why: str = "") -> None:
        old = self.state
        if not check_transition(TRANSITIONS, old, new, why, log):
            return
        self.state = new
        self.history.append((old, new))
        self._leave(old)
        self._enter(new)

    def _leave(self, old: State) -> None:
        if old is State.CALLING:
            self._out.append(Ring(False))
            self._cancel(T_CALL_LOST)
            self._cancel(T_RESUME)
        if old is State.RESULT:
            self._cancel(T_RESULT)
        if old is State.THANKS:
            self._cancel(T_THANKS)
        if old is State.OUT_OF_SERVICE:
            self._cancel(T_DEVICE_RETRY)
        if old in (State.PIN, State.TECH):
            self.pin_error = False

    def _enter(self, new: State) -> None:
        if new in IDLE_STATES:
            self._timer(T_IDLE, self.timeouts.idle)
        else:
            self._cancel(T_IDLE)
        if new is not State.STARTING:
            self._cancel(T_STARTUP)
        if new is State.START:
            self.outcome = None
            self.result_department = None
            self.ended_by_media = False
        elif new is State.CALLING:
            self._out.append(Ring(True))
        elif new is State.RESULT:
            self._timer(T_RESULT, self.timeouts.result)
        elif new is State.THANKS:
            self._timer(T_THANKS, self.timeouts.thanks)
        elif new is State.OUT_OF_SERVICE:
            if self.device_problems:
                self._timer(T_DEVICE_RETRY, self.timeouts.device_retry)

    def _home(self, why: str) -> None:
        """Back to START when ready, else to OUT_OF_SERVICE."""
        self._go(State.START if self.ready else State.OUT_OF_SERVICE, why)

    def _end_call(self) -> None:
        """Forget everything about the call (nothing of it may remain)."""
        self.call = None
        self.reconnecting = False
        self._out.append(StopMedia())

    # -- timers ----------------------------------------------------------------------------------
    def _timer(self, name: str, seconds: float) -> None:
        self._timers.add(name)
        self._out.append(StartTimer(name, seconds))

    def _cancel(self, name: str) -> None:
        if name in self._timers:
            self._timers.discard(name)
            self._out.append(CancelTimer(name))

    def _flush(self) -> list[Command]:
        out, self._out = self._out, []
        return out

    # -- event handlers --------------------------------------------------------------------------
    def _on_LinkChanged(self, ev: LinkChanged) -> None:
        self.link_state, self.link_detail = ev.state, ev.detail
        if ev.state == "up":
            self._cancel(T_LINK_GRACE)
            self._cancel(T_CALL_LOST)
            if self.state in (State.STARTING, State.OUT_OF_SERVICE) and self.ready:
                self._go(State.START, "relay up")
            return
        self.welcomed = False
        if ev.state == "unauthorized":
            if self.state in (State.STARTING, State.START, State.RESULT, State.THANKS):
                self._go(State.OUT_OF_SERVICE, "token rejected")
            return
        if self.state in (State.START, State.RESULT, State.THANKS):
            if T_LINK_GRACE not in self._timers:
                self._timer(T_LINK_GRACE, self.timeouts.link_grace)
        elif self.state is State.STARTING and ev.state == "down":
            self._go(State.OUT_OF_SERVICE, f"relay unreachable: {ev.detail}")
        elif self.state is State.CALLING and T_CALL_LOST not in self._timers:
            # The relay keeps a ringing call for its grace period; past that, it is gone.
            self._timer(T_CALL_LOST, self.timeouts.call_lost)
        # IN_CALL: the relay keeps our place for its grace period, and media goes on peer to peer.

    def _on_DevicesChecked(self, ev: DevicesChecked) -> None:
        self.device_problems = tuple(ev.problems)
        if self.state is State.STARTING:
            if ev.problems:
                self._go(State.OUT_OF_SERVICE, "; ".join(ev.problems))
            elif self.ready:
                self._go(State.START, "ready")
        elif self.state is State.OUT_OF_SERVICE:
            if self.ready:
                self._go(State.START, "devices back")
            elif ev.problems:
                self._timer(T_DEVICE_RETRY, self.timeouts.device_retry)

    def _on_Touched(self, ev: Touched) -> None:
        if self.state in IDLE_STATES:
            self._timer(T_IDLE, self.timeouts.idle)

    def _on_TimerFired(self, ev: TimerFired) -> None:
        name = ev.name
        if name == T_IDLE:
            if self.state is State.START:
                self._out.append(ResetLanguage())
                self._timer(T_IDLE, self.timeouts.idle)
            elif self.state in IDLE_STATES:
                self._home("idle")
                self._out.append(ResetLanguage())
        elif name == T_RESULT and self.state is State.RESULT:
            self._home("result shown long enough")
            self._out.append(ResetLanguage())
        elif name == T_THANKS and self.state is State.THANKS:
            self._home("thank-you shown long enough")
            self._out.append(ResetLanguage())
        elif name == T_LINK_GRACE:
            if self.link_state != "up" and self.state in (State.START, State.RESULT, State.THANKS):
                self._go(State.OUT_OF_SERVICE, f"relay {self.link_state}: {self.link_detail}")
        elif name == T_DEVICE_RETRY and self.state is State.OUT_OF_SERVICE:
            self._out.append(CheckDevices())
        elif name in (T_CALL_LOST, T_RESUME) and self.state is State.CALLING and self.call is not None:
            # Never leave the resident waiting on a call the relay has forgotten: say so, with the phone.
            dept = self.call.department
            self._end_call()
            self._result(Outcome.FAILED, dept)
        elif name == T_STARTUP and self.state is State.STARTING:
            self._go(
                State.OUT_OF_SERVICE, "start-up took too long: " + "; ".join(self.out_of_service_causes())
            )

    def _on_DepartmentChosen(self, ev: DepartmentChosen) -> None:
        if self.state is not State.START:
            event(log, "department_ignored", department=ev.department, state=self.state.name)
            return
        dept = self.department(ev.department)
        if dept is None:
            raise ValueError(
                f"unknown department {ev.department!r}; offered: {[d.id for d in self.departments]}"
            )
        status = self.availability(dept.id)
        if status in ("closed", "offline"):
            # No call: say so at once, with the phone number.
            self._result(Outcome.CLOSED if status == "closed" else Outcome.UNAVAILABLE, dept)
            return
        self.call = CounterCall(department=dept, started_at=self.clock())
        self._out.append(Send({"type": "call", "department": dept.id}))
        self._go(State.CALLING, f"calling {dept.id}")

    def _on_CancelPressed(self, ev: CancelPressed) -> None:
        if self.state is not State.CALLING or self.call is None:
            return
        if self.call.id:
            self._out.append(Send({"type": "cancel", "call": self.call.id}))
            self._cancelled_ids.append(self.call.id)
            del self._cancelled_ids[:-8]  # only the last few can still be crossing on the wire
        # Without a call id the relay has not answered ``call`` yet: ``ringing`` will be cancelled on arrival.
        self._cancelled_call = not self.call.id
        self._end_call()
        self._home("cancelled")

    _cancelled_call = False

    def _on_HangUpPressed(self, ev: HangUpPressed) -> None:
        if self.state is not State.IN_CALL or self.call is None:
            return
        self._out.append(Send({"type": "hangup", "call": self.call.id}))
        self._end_call()
        self._go(State.THANKS, "hung up")

    def _on_BackPressed(self, ev: BackPressed) -> None:
        if self.state in (State.RESULT, State.THANKS):
            self._home("back pressed")
            self._out.append(ResetLanguage())
        elif self.state in (State.PIN, State.TECH):
            self._on_TechClosed(TechClosed())

    def _on_TechGesture(self, ev: TechGesture) -> None:
        if not self.pin:
            event(log, "tech_gesture_ignored", problem="no PIN configured")
            return
        if self.state in (State.STARTING, State.OUT_OF_SERVICE, State.START):
            self.pin_error = False
            self._go(State.PIN, "technician gesture")

    def _on_PinEntered(self, ev: PinEntered) -> None:
        if self.state is not State.PIN:
            return
        if self.pin and ev.pin == self.pin:
            self.pin_attempts = 0
            self._go(State.TECH, "PIN accepted")
        else:
            self.pin_attempts += 1
            self.pin_error = True
            event(log, "tech_pin_wrong", logging.WARNING, attempt=self.pin_attempts)
            self._timer(T_IDLE, self.timeouts.idle)

    def _on_TechClosed(self, ev: TechClosed) -> None:
        if self.state in (State.PIN, State.TECH):
            self._home("technician menu closed")

    def _on_SendFailed(self, ev: SendFailed) -> None:
        if (
            ev.msg_type == "call"
            and self.state is State.CALLING
            and self.call is not None
            and not self.call.id
        ):
            dept = self.call.department
            self._end_call()
            self._result(Outcome.FAILED, dept)

    def _on_MediaEnded(self, ev: MediaEnded) -> None:
        if self.state is State.IN_CALL:
            self._end_call()
            self.ended_by_media = ev.reason == "media_failed"
            self._go(State.THANKS, f"media ended ({ev.reason})")

    def _on_MediaReconnecting(self, ev: MediaReconnecting) -> None:
        if self.state is State.IN_CALL and self.reconnecting != ev.active:
            self.reconnecting = ev.active
            event(log, "media_reconnecting" if ev.active else "media_back")

    # -- relay messages --------------------------------------------------------------------------
    def _on_RelayMessage(self, ev: RelayMessage) -> None:
        handler = self.message_handlers.get(ev.msg["type"])
        if handler is not None:
            handler(ev.msg)

    def _msg_welcome(self, msg: msgs.Welcome) -> None:
        self.welcomed = True
        self.terminal = msg["terminal"]
        self.terminal_name = msg.get("name", "")
        self.departments = [OfferedDepartment.from_message(d) for d in msg["departments"]]
        self.presence = {d.id: self.presence.get(d.id, "offline") for d in self.departments}
        if self.state is State.CALLING and self.call is not None and self.call.id:
            self._timer(T_RESUME, self.timeouts.resume)  # cancelled by call_state for our call
        elif self.state is State.IN_CALL and self.call is not None and self.call.id:
            # Still in the consultation: vouch for it, so a relay restarted under it re-creates it.
            resume = resume_message(
                self.terminal, self.call.id, self.call.department.id, self.terminal, self.call.members
            )
            if resume is not None:
                self._out.append(Send(resume))
        # The client reports the link ``up`` just before it delivers ``welcome``.
        if self.state in (State.STARTING, State.OUT_OF_SERVICE) and self.ready:
            self._go(State.START, "relay up")

    def _msg_presence(self, msg: msgs.Presence) -> None:
        self.presence.update(msg["departments"])

    def _is_our_call(self, call_id: str) -> bool:
        return self.call is not None and bool(self.call.id) and call_id == self.call.id

    def _msg_ringing(self, msg: msgs.Ringing) -> None:
        call_id = msg["call"]
        if self._cancelled_call:
            # The resident cancelled before the relay confirmed the call: cancel it now. (The relay answers
            # 'call' messages in order, so this 'ringing' is the cancelled call's even if a new call is waiting.)
            self._cancelled_call = False
            self._cancelled_ids.append(call_id)
            self._out.append(Send({"type": "cancel", "call": call_id}))
        elif self.state is State.CALLING and self.call is not None and not self.call.id:
            self.call.id = call_id

    def _msg_answered(self, msg: msgs.Answered) -> None:
        call_id = msg["call"]
        if call_id in self._cancelled_ids and not self._is_our_call(call_id):
            # Staff answered a call the resident had already cancelled (the two crossed on the wire): the
            # resident meant to leave, so end it rather than leave the station talking to an empty kiosk.
            self._cancelled_ids.remove(call_id)
            event(log, "answered_after_cancel", call=call_id, action="hangup")
            self._out.append(Send({"type": "hangup", "call": call_id}))
            return
        if self.state is not State.CALLING or not self._is_our_call(call_id):
            return
        assert self.call is not None
        by = msg["by"]
        self.call.answered_at = self.clock()
        self.call.members = [by]
        self._out.append(StartMedia(self.call.id, by))
        self._go(State.IN_CALL, f"answered by {by}")

    def _msg_call_state(self, msg: msgs.CallState) -> None:
        if not self._is_our_call(msg["call"]):
            return
        assert self.call is not None
        self._cancel(T_RESUME)
        members = [m for m in msg["members"] if m != self.terminal]
        if self.state is State.IN_CALL:
            self.call.members = members

    def _msg_joined(self, msg: msgs.Joined) -> None:
        if self.state is not State.IN_CALL or not self._is_our_call(msg["call"]):
            return
        assert self.call is not None
        who = msg["terminal"]
        if who and who != self.terminal and who not in self.call.members:
            self.call.members.append(who)

    def _msg_left(self, msg: msgs.Left) -> None:
        if self.state is not State.IN_CALL or not self._is_our_call(msg["call"]):
            return
        assert self.call is not None
        who = msg["terminal"]
        if who in self.call.members:
            self.call.members.remove(who)

    def _msg_ended(self, msg: msgs.Ended) -> None:
        if not self._is_our_call(msg["call"]):
            return
        assert self.call is not None
        reason = msg["reason"]
        dept = self.call.department
        if self.state is State.CALLING:
            self._end_call()
            if reason == "unanswered":
                self._result(Outcome.UNANSWERED, dept)
            elif reason == "cancelled":
                self._home("cancelled")
            else:
                self._result(Outcome.FAILED, dept)
        elif self.state is State.IN_CALL:
            if reason == "shutdown":
                return  # the relay is going away, not the consultation: media goes on peer to peer
            self._end_call()
            self._go(State.THANKS, f"call ended ({reason})")

    def _msg_error(self, msg: msgs.Error) -> None:
        if msg.get("ref") != "call" or self.state is not State.CALLING or self.call is None:
            event(
                log,
                "relay_error",
                code=msg["code"],
                ref=msg.get("ref"),
                message=msg["message"],
                state=self.state.name,
            )
            return
        code = msg["code"]
        if (
            code == "already_in_call"
            and not self.call.id
            and msg.get("call") in self._cancelled_ids
            and not self.call.retried
        ):
            # Our new call reached the relay before the cancel of the previous one: that cancel is on its way
            # (sent with it again here, harmless twice), so ask once more.
            self.call.retried = True
            self._out.append(Send({"type": "cancel", "call": msg["call"]}))
            self._out.append(Send({"type": "call", "department": self.call.department.id}))
            return
        dept = self.call.department.with_fallback(msg.get("fallback"))
        self._end_call()
        outcome = {"closed": Outcome.CLOSED, "unavailable": Outcome.UNAVAILABLE}.get(code, Outcome.FAILED)
        self._result(outcome, dept)

    def _result(self, outcome: Outcome, dept: OfferedDepartment) -> None:
        self.outcome = outcome
        self.result_department = dept
        self._go(State.RESULT, outcome.value)
