"""The counter kiosk's call state machine, driven directly with events (no Kivy, no event loop)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import relay_msg

from kiosk.counter_state import (
    BackPressed,
    CancelPressed,
    CancelTimer,
    CheckDevices,
    CounterMachine,
    DepartmentChosen,
    DevicesChecked,
    HangUpPressed,
    InvalidTransition,
    LinkChanged,
    MediaEnded,
    MediaReconnecting,
    Outcome,
    PinEntered,
    ResetLanguage,
    Ring,
    Send,
    StartMedia,
    StartTimer,
    State,
    StopMedia,
    TechClosed,
    TechGesture,
    Timeouts,
    TimerFired,
    Touched,
)

WELCOME: dict[str, Any] = {
    "type": "welcome",
    "terminal": "counter-sapporo-1",
    "role": "counter",
    "name": "札幌",
    "departments": [
        {
            "id": "juumin",
            "office": "tobetsu",
            "name": {"ja": "住民課", "en": "Residents Division"},
            "fallback": {"phone": "0133-23-2223", "hours_ja": "平日 8:45〜17:30", "hours_en": "Weekdays"},
        },
        {
            "id": "zeimu",
            "office": "tobetsu",
            "name": {"ja": "税務課", "en": "Taxation Division"},
            "fallback": {"phone": "0133-23-2224", "hours_ja": "平日", "hours_en": "Weekdays"},
        },
    ],
    "ice_servers": [],
}


def ready_machine(**presence: str) -> CounterMachine:
    """A machine on the START screen with the two demo departments."""
    m = CounterMachine(Timeouts(idle=60, result=20, thanks=8), pin="2468")
    m.start()
    m.handle(DevicesChecked(()))
    m.handle(LinkChanged("up", "ws://x"))
    m.handle(relay_msg(WELCOME))
    m.handle(
        relay_msg(
            {"type": "presence", "departments": {"juumin": "available", "zeimu": "available", **presence}}
        )
    )
    assert m.state is State.START
    return m


def in_call(m: CounterMachine) -> list[Any]:
    m.handle(DepartmentChosen("juumin"))
    m.handle(relay_msg({"type": "ringing", "call": "c1", "department": "juumin"}))
    return m.handle(relay_msg({"type": "answered", "call": "c1", "by": "office-tobetsu-1"}))


def test_start_up_reaches_start_when_relay_and_cameras_are_ready() -> None:
    """Start-up checks devices, and goes to START once the relay welcomed us and cameras are there."""
    m = CounterMachine()
    cmds = m.start()
    assert CheckDevices() in cmds and m.state is State.STARTING
    m.handle(LinkChanged("up"))
    m.handle(relay_msg(WELCOME))
    assert m.state is State.STARTING  # cameras not checked yet
    m.handle(DevicesChecked(()))
    assert m.state is State.START
    assert [d.id for d in m.departments] == ["juumin", "zeimu"]


def test_relay_down_at_start_up_is_out_of_service_then_recovers() -> None:
    """An unreachable relay at start-up shows out of service, and START follows when it comes up."""
    m = CounterMachine()
    m.start()
    m.handle(DevicesChecked(()))
    m.handle(LinkChanged("down", "ConnectionRefusedError"))
    assert m.state is State.OUT_OF_SERVICE
    assert any("ConnectionRefused" in c for c in m.out_of_service_causes())
    m.handle(LinkChanged("up"))
    m.handle(relay_msg(WELCOME))
    assert m.state is State.START


def test_missing_camera_is_retried_by_timer() -> None:
    """A missing camera keeps the kiosk out of service and is re-checked on a timer until it is back."""
    m = CounterMachine(Timeouts(device_retry=5))
    m.start()
    m.handle(LinkChanged("up"))
    m.handle(relay_msg(WELCOME))
    cmds = m.handle(DevicesChecked(("document camera: /dev/video2 not found",)))
    assert m.state is State.OUT_OF_SERVICE
    assert StartTimer("device_retry", 5) in cmds
    assert m.handle(TimerFired("device_retry")) == [CheckDevices()]
    m.handle(DevicesChecked(()))
    assert m.state is State.START


def test_answered_call_then_hang_up_forgets_the_call() -> None:
    """call → ringing → answered starts media with an offer; hang-up sends hangup, stops media, thanks."""
    m = ready_machine()
    cmds = m.handle(DepartmentChosen("juumin"))
    assert Send({"type": "call", "department": "juumin"}) in cmds and Ring(True) in cmds
    assert m.state is State.CALLING
    cmds = in_call(m)
    assert StartMedia("c1", "office-tobetsu-1") in cmds and Ring(False) in cmds
    assert m.state is State.IN_CALL and m.call is not None and m.call.members == ["office-tobetsu-1"]
    m.handle(relay_msg({"type": "joined", "call": "c1", "terminal": "office-tobetsu-2"}))
    assert m.call.members == ["office-tobetsu-1", "office-tobetsu-2"]
    cmds = m.handle(HangUpPressed())
    assert Send({"type": "hangup", "call": "c1"}) in cmds and StopMedia() in cmds
    assert m.state is State.THANKS and m.call is None
    cmds = m.handle(TimerFired("thanks"))
    assert m.state is State.START and ResetLanguage() in cmds


def test_media_failure_ends_the_call() -> None:
    """A media session that ends by itself (peer connection failed) leaves the call for the thank-you screen."""
    m = ready_machine()
    in_call(m)
    cmds = m.handle(MediaEnded("media_failed"))
    assert m.state is State.THANKS and StopMedia() in cmds


def test_media_reconnecting_is_a_calm_flag_of_the_call_not_its_end() -> None:
    """A media outage keeps the call on the in-call screen with 'reconnecting' set, cleared when media is back;
    an outage that outlasts the reconnect window ends at the thank-you screen, which then says why."""
    m = ready_machine()
    in_call(m)
    assert m.handle(MediaReconnecting(True)) == [] and m.reconnecting and m.state is State.IN_CALL
    m.handle(MediaReconnecting(False))
    assert not m.reconnecting and m.state is State.IN_CALL
    m.handle(MediaReconnecting(True))
    m.handle(MediaEnded("media_failed"))
    assert m.state is State.THANKS and m.ended_by_media and not m.reconnecting
    m.handle(BackPressed())
    assert m.state is State.START and not m.ended_by_media
    m.handle(MediaReconnecting(True))  # outside a call: nothing to show
    assert not m.reconnecting


def test_staff_hang_up_ends_the_call_for_the_resident() -> None:
    """``ended`` from the relay during a call shows the thank-you screen."""
    m = ready_machine()
    in_call(m)
    m.handle(relay_msg({"type": "ended", "call": "c1", "reason": "hangup", "by": "office-tobetsu-1"}))
    assert m.state is State.THANKS and m.call is None


def test_cancel_while_ringing() -> None:
    """Cancel sends ``cancel`` for the ringing call and returns to START with the ring off."""
    m = ready_machine()
    m.handle(DepartmentChosen("juumin"))
    m.handle(relay_msg({"type": "ringing", "call": "c1", "department": "juumin"}))
    cmds = m.handle(CancelPressed())
    assert Send({"type": "cancel", "call": "c1"}) in cmds and Ring(False) in cmds
    assert m.state is State.START and m.call is None


def test_cancel_before_ringing_cancels_when_ringing_arrives() -> None:
    """A cancel faster than the relay's ``ringing`` still cancels the call once its id is known."""
    m = ready_machine()
    m.handle(DepartmentChosen("juumin"))
    m.handle(CancelPressed())
    assert m.state is State.START
    cmds = m.handle(relay_msg({"type": "ringing", "call": "c9", "department": "juumin"}))
    assert cmds == [Send({"type": "cancel", "call": "c9"})]


def test_unanswered_shows_fallback_then_returns_by_itself() -> None:
    """A ring timeout shows the department's phone number, and START follows after the result timeout."""
    m = ready_machine()
    m.handle(DepartmentChosen("zeimu"))
    m.handle(relay_msg({"type": "ringing", "call": "c2", "department": "zeimu"}))
    cmds = m.handle(relay_msg({"type": "ended", "call": "c2", "reason": "unanswered"}))
    assert m.state is State.RESULT and m.outcome is Outcome.UNANSWERED
    assert m.result_department is not None and m.result_department.phone == "0133-23-2224"
    assert StartTimer("result", 20) in cmds
    m.handle(TimerFired("result"))
    assert m.state is State.START


@pytest.mark.parametrize(
    ("code", "outcome"),
    [("closed", Outcome.CLOSED), ("unavailable", Outcome.UNAVAILABLE), ("rate_limited", Outcome.FAILED)],
)
def test_call_error_shows_result_with_fallback(code: str, outcome: Outcome) -> None:
    """A relay error answering ``call`` shows the matching result with the error's fallback phone."""
    m = ready_machine()
    m.handle(DepartmentChosen("juumin"))
    m.handle(
        relay_msg(
            {
                "type": "error",
                "code": code,
                "message": "x",
                "ref": "call",
                "department": "juumin",
                "fallback": {"phone": "011-000-0000", "hours_ja": "平日", "hours_en": "Weekdays"},
            }
        )
    )
    assert m.state is State.RESULT and m.outcome is outcome
    assert m.result_department is not None and m.result_department.phone == "011-000-0000"
    m.handle(BackPressed())
    assert m.state is State.START


@pytest.mark.parametrize(
    ("presence", "outcome"), [("closed", Outcome.CLOSED), ("offline", Outcome.UNAVAILABLE)]
)
def test_greyed_department_explains_without_calling(presence: str, outcome: Outcome) -> None:
    """Touching a closed or offline department shows why and the phone number, without placing a call."""
    m = ready_machine(zeimu=presence)
    cmds = m.handle(DepartmentChosen("zeimu"))
    assert not any(isinstance(c, Send) for c in cmds)
    assert m.state is State.RESULT and m.outcome is outcome


def test_idle_timer_returns_to_start_and_touch_restarts_it() -> None:
    """Idle on a non-call screen goes back to START; a touch restarts the idle timer; calls are exempt."""
    m = ready_machine()
    assert StartTimer("idle", 60) in m.handle(Touched())
    assert m.handle(TimerFired("idle")) == [ResetLanguage(), StartTimer("idle", 60)]
    m.handle(DepartmentChosen("juumin"))
    assert m.handle(TimerFired("idle")) == []  # cancelled on entering CALLING
    assert m.state is State.CALLING


def test_wrong_pin_stays_and_right_pin_opens_menu() -> None:
    """A wrong PIN keeps the PIN screen with an error; the right one opens the technician menu."""
    m = ready_machine()
    m.handle(TechGesture())
    assert m.state is State.PIN
    m.handle(PinEntered("0000"))
    assert m.state is State.PIN and m.pin_error and m.pin_attempts == 1
    m.handle(PinEntered("2468"))
    assert m.state is State.TECH
    m.handle(TechClosed())
    assert m.state is State.START


def test_no_pin_configured_means_no_menu() -> None:
    """Without a PIN in the config the gesture does nothing: the app cannot be left."""
    m = CounterMachine(pin="")
    m.start()
    m.handle(TechGesture())
    assert m.state is State.STARTING


def test_link_blip_shorter_than_grace_is_not_shown() -> None:
    """A relay drop on START shows out of service only if it outlasts the grace timer."""
    m = ready_machine()
    m.handle(LinkChanged("down", "reset"))
    assert m.state is State.START
    m.handle(LinkChanged("up"))
    m.handle(relay_msg(WELCOME))
    assert m.handle(TimerFired("link_grace")) == []
    m.handle(LinkChanged("down", "reset"))
    m.handle(TimerFired("link_grace"))
    assert m.state is State.OUT_OF_SERVICE


def test_impossible_transition_names_both_states() -> None:
    """An impossible state change raises an error that names the old and the new state."""
    m = ready_machine()
    with pytest.raises(InvalidTransition, match="START -> IN_CALL"):
        m._go(State.IN_CALL)


def test_stale_timer_is_ignored() -> None:
    """A timer that was cancelled (e.g. result timer after Back) does nothing when it fires late."""
    m = ready_machine(zeimu="closed")
    m.handle(DepartmentChosen("zeimu"))
    cmds = m.handle(BackPressed())
    assert CancelTimer("result") in cmds
    assert m.handle(TimerFired("result")) == []
    assert m.state is State.START


def test_call_forgotten_by_a_restarted_relay_ends_with_the_phone_number() -> None:
    """Ringing, the relay restarts and knows nothing of the call: the resident gets the result screen, not a hang."""
    m = ready_machine()
    m.handle(DepartmentChosen("juumin"))
    m.handle(relay_msg({"type": "ringing", "call": "c1", "department": "juumin"}))
    cmds = m.handle(LinkChanged("down", "relay restarting"))
    assert StartTimer("call_lost", 20.0) in cmds and m.state is State.CALLING
    m.handle(LinkChanged("up"))
    cmds = m.handle(relay_msg(WELCOME))
    assert StartTimer("resume", 3.0) in cmds and m.state is State.CALLING
    cmds = m.handle(TimerFired("resume"))
    assert m.state is State.RESULT and m.outcome is Outcome.FAILED
    assert m.result_department is not None and m.result_department.phone == "0133-23-2223"
    assert StopMedia() in cmds


def test_call_kept_by_the_relay_carries_on_after_reconnect() -> None:
    """When the relay still has the ringing call, its call_state cancels the resume check."""
    m = ready_machine()
    m.handle(DepartmentChosen("juumin"))
    m.handle(relay_msg({"type": "ringing", "call": "c1", "department": "juumin"}))
    m.handle(LinkChanged("down", "blip"))
    m.handle(LinkChanged("up"))
    m.handle(relay_msg(WELCOME))
    cmds = m.handle(
        relay_msg(
            {
                "type": "call_state",
                "call": "c1",
                "state": "ringing",
                "department": "juumin",
                "counter": "counter-sapporo-1",
                "members": ["counter-sapporo-1"],
            }
        )
    )
    assert CancelTimer("resume") in cmds
    m.handle(TimerFired("resume"))  # a stale timer is ignored
    assert m.state is State.CALLING


def test_relay_shutdown_does_not_end_a_consultation() -> None:
    """'ended' with reason shutdown means the relay is going away; the call (peer to peer) goes on."""
    m = ready_machine()
    in_call(m)
    m.handle(relay_msg({"type": "ended", "call": "c1", "reason": "shutdown"}))
    assert m.state is State.IN_CALL
    m.handle(MediaEnded("hangup"))
    assert m.state is State.THANKS
