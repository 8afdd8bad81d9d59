"""LampBoard: relay messages and link changes in, channel states out (pure, no event loop); config checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import server_msg

from kiosk.config import ConfigError, LampConfig, load_terminal_config
from kiosk.devices.lamp import ChannelState
from kiosk.lamp_agent import LampBoard, channel_labels

ON, OFF, BLINK = ChannelState.ON, ChannelState.OFF, ChannelState.BLINK
CONFIG = LampConfig(
    "lcus", "loop://", {"juumin": 1, "zeimu": 2, "hoken": 3}, in_call_channel=4, fault_channel=5
)


def welcome(
    role: str = "lamp", departments: tuple[str, ...] = ("juumin", "zeimu", "hoken")
) -> dict[str, object]:
    return {
        "type": "welcome",
        "terminal": "lamp-tobetsu-1",
        "role": role,
        "ice_servers": [],
        "departments": [{"id": d, "name": {"ja": d, "en": d}} for d in departments],
    }


def incoming(call: str, dept: str, **extra: str) -> dict[str, object]:
    return {"type": "incoming", "call": call, "department": dept, "from": "counter-sapporo-1", **extra}


def board(config: LampConfig = CONFIG, role: str = "lamp") -> LampBoard:
    b = LampBoard(config)
    b.on_link("up", "")
    b.on_message(server_msg(welcome(role)))
    return b


def test_starts_all_off() -> None:
    """Before anything happens every configured channel, extra channels included, is off."""
    assert LampBoard(CONFIG).desired() == {1: OFF, 2: OFF, 3: OFF, 4: OFF, 5: OFF}


def test_ringing_lights_its_department_only() -> None:
    """An incoming call lights the channel of its department and no other."""
    b = board()
    b.on_message(server_msg(incoming("c1", "zeimu")))
    assert b.desired() == {1: OFF, 2: ON, 3: OFF, 4: OFF, 5: OFF}


@pytest.mark.parametrize("reason", ["cancelled", "unanswered", "hangup", "disconnected", "shutdown"])
def test_every_end_reason_turns_the_channel_off(reason: str) -> None:
    """Cancelled, unanswered, hung up, disconnected or shut down: the call's lamp goes off."""
    b = board()
    b.on_message(server_msg(incoming("c1", "juumin")))
    b.on_message(server_msg({"type": "ended", "call": "c1", "reason": reason}))
    assert b.desired()[1] is OFF


def test_answered_call_stops_ringing_and_lights_in_call() -> None:
    """'taken' turns the department off and the in-call channel on; 'ended' turns that off again."""
    b = board()
    b.on_message(server_msg(incoming("c1", "juumin")))
    b.on_message(server_msg({"type": "taken", "call": "c1", "by": "office-tobetsu-1"}))
    assert b.desired()[1] is OFF and b.desired()[4] is ON
    b.on_message(server_msg({"type": "ended", "call": "c1", "reason": "hangup"}))
    assert b.desired()[4] is OFF


def test_two_calls_for_one_department_keep_it_lit_until_both_are_gone() -> None:
    """The channel stays on while any call of its department rings, off only after the last one."""
    b = board()
    b.on_message(server_msg(incoming("c1", "hoken")))
    b.on_message(server_msg(incoming("c2", "hoken")))
    b.on_message(server_msg({"type": "taken", "call": "c1", "by": "office-tobetsu-1"}))
    assert b.desired()[3] is ON
    b.on_message(server_msg({"type": "ended", "call": "c2", "reason": "cancelled"}))
    assert b.desired()[3] is OFF


def test_blink_config_blinks_instead_of_steady() -> None:
    """With blink = true a ringing department blinks."""
    b = board(LampConfig("ascii", "loop://", {"juumin": 1}, blink=True))
    b.on_message(server_msg(incoming("c1", "juumin")))
    assert b.desired() == {1: BLINK}


def test_link_loss_turns_lamps_off_and_fault_on_and_welcome_restores() -> None:
    """Relay lost: no stale ringing, fault lamp on; after welcome the re-sent calls light again."""
    b = board()
    b.on_message(server_msg(incoming("c1", "juumin")))
    b.on_message(server_msg(incoming("c2", "zeimu")))
    b.on_message(server_msg({"type": "taken", "call": "c2", "by": "office-tobetsu-1"}))
    b.on_link("down", "connection refused")
    assert b.desired() == {1: OFF, 2: OFF, 3: OFF, 4: OFF, 5: ON}
    b.on_link("connecting", "ws://127.0.0.1:1")
    assert b.desired()[5] is ON
    b.on_link("up", "")
    b.on_message(server_msg(welcome()))
    b.on_message(server_msg(incoming("c1", "juumin")))
    b.on_message(server_msg({"type": "taken", "call": "c2", "by": "office-tobetsu-1"}))
    assert b.desired() == {1: ON, 2: OFF, 3: OFF, 4: ON, 5: OFF}


def test_rejected_token_is_a_fault() -> None:
    """An unauthorized link lights the fault channel like an unreachable relay."""
    b = board()
    b.on_link("unauthorized", "token rejected")
    assert b.desired()[5] is ON


def test_unknown_department_and_messages_are_ignored() -> None:
    """Calls for departments without a channel and message types the lamp does not use change nothing."""
    b = board()
    b.on_message(server_msg(incoming("c1", "kensetsu")))
    b.on_message(server_msg({"type": "presence", "departments": {}}))
    b.on_message(server_msg({"type": "ended", "call": "never-seen", "reason": "hangup"}))
    assert set(b.desired().values()) == {OFF}


def test_staff_station_own_answer_and_decline() -> None:
    """Embedded in a station: its own answer arrives as call_state, its own decline is reported via on_sent."""
    b = board(role="office")
    b.on_message(server_msg(incoming("c1", "juumin")))
    b.on_message(server_msg(incoming("c2", "zeimu")))
    b.on_message(
        server_msg(
            {
                "type": "call_state",
                "call": "c1",
                "state": "active",
                "department": "juumin",
                "counter": "counter-sapporo-1",
                "members": [],
            }
        )
    )
    b.on_sent({"type": "decline", "call": "c2"})
    assert b.desired() == {1: OFF, 2: OFF, 3: OFF, 4: ON, 5: OFF}


def test_staff_station_taken_by_another_is_not_in_progress_here() -> None:
    """On a station, 'taken' (answered elsewhere) stops the ringing without lighting in-call forever."""
    b = board(role="office")
    b.on_message(server_msg(incoming("c1", "juumin")))
    b.on_message(server_msg({"type": "taken", "call": "c1", "by": "office-tobetsu-2"}))
    assert b.desired()[1] is OFF and b.desired()[4] is OFF


def test_invite_lights_the_invited_department_until_it_expires() -> None:
    """An invitation lights its department; the 'ended' sent when it expires turns it off."""
    b = board(role="office")
    b.on_message(server_msg(incoming("c9", "hoken", invited_by="office-tobetsu-2")))
    assert b.desired()[3] is ON
    b.on_message(server_msg({"type": "ended", "call": "c9", "reason": "unanswered"}))
    assert b.desired()[3] is OFF


def test_welcome_problems_name_mismatched_departments() -> None:
    """A configured department the relay does not send, or a watched one without a channel, is reported."""
    b = LampBoard(LampConfig("none", "", {"juumin": 1, "typo": 2}))
    b.on_message(server_msg(welcome(departments=("juumin", "zeimu"))))
    problems = b.welcome_problems()
    assert any("'typo'" in p for p in problems) and any("'zeimu'" in p for p in problems)


def test_channel_labels() -> None:
    """Labels name the departments sharing a channel and the extra channels."""
    cfg = LampConfig("none", "", {"juumin": 1, "zeimu": 1, "hoken": 2}, in_call_channel=3, fault_channel=4)
    assert channel_labels(cfg) == {1: "juumin+zeimu", 2: "hoken", 3: "in call", 4: "fault"}


def _lamp_toml(tmp_path: Path, lamp: str) -> Path:
    p = tmp_path / "lamp.toml"
    p.write_text('[relay]\nurl = "ws://127.0.0.1:1"\ntoken = "t"\n\n' + lamp)
    return p


def test_config_rejects_fault_channel_on_a_department_channel(tmp_path: Path) -> None:
    """A fault channel that is also a department's channel is a located config error."""
    p = _lamp_toml(
        tmp_path,
        '[lamp]\ndriver = "lcus"\nport = "loop://"\nfault_channel = 1\n[lamp.channels]\njuumin = 1\n',
    )
    with pytest.raises(ConfigError, match=r"lamp.toml:8: lamp.fault_channel: channel 1 is already"):
        load_terminal_config(p, "lamp")


def test_config_rejects_lcus_channel_beyond_eight(tmp_path: Path) -> None:
    """An LCUS board has at most eight relays; channel 9 is refused with file, line and key."""
    p = _lamp_toml(tmp_path, '[lamp]\ndriver = "lcus"\nport = "loop://"\n[lamp.channels]\njuumin = 9\n')
    with pytest.raises(
        ConfigError, match=r"lamp.toml:9: lamp.channels.juumin: an LCUS board has channels 1..8"
    ):
        load_terminal_config(p, "lamp")
