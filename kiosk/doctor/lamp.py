"""The lamp family: each channel switches on and off (the lamp agent's own channel test), and the channels name
the departments the relay sends this terminal.

The channel test hands back the exceptions it met with the stage they happened in; :func:`lamp_cause` turns them
into a :class:`LampCause` and the advice follows the cause (never the test's printed text).
"""

from __future__ import annotations

import enum
import io

from common.messages import Welcome
from kiosk.config import LampConfig
from kiosk.doctor.report import CheckResult

__all__ = ["LampCause", "check_lamp", "lamp_cause", "lamp_departments_result"]


class LampCause(enum.Enum):
    """Why the lamp's channel test failed."""

    CANNOT_OPEN = "cannot_open"  # the serial port cannot be opened (missing, busy, no permission, bad URL)
    NO_ANSWER = "no_answer"  # something is on the port but does not answer PING like our lamp
    REFUSED = "refused"  # the lamp answered ERR to a channel command (a channel it lacks)
    STOPPED_ANSWERING = "stopped_answering"  # it answered at first, then a command went unacknowledged
    FAILED = "failed"  # anything else (a write failed after opening, a bad setting)


def lamp_cause(errors: list[tuple[str, Exception]]) -> LampCause:
    """The cause of a failed channel test, from the first error's stage and type."""
    from kiosk.devices.lamp import LampCommandError, LampNoAckError, LampPortError

    if not errors:
        return LampCause.FAILED
    if any(isinstance(err, LampCommandError) for _, err in errors):
        return LampCause.REFUSED
    stage, err = errors[0]
    if stage == "open" and isinstance(err, LampPortError):
        return LampCause.CANNOT_OPEN
    if stage == "open" and isinstance(err, LampNoAckError):
        return LampCause.NO_ANSWER
    if isinstance(err, LampNoAckError):
        return LampCause.STOPPED_ANSWERING
    return LampCause.FAILED


def lamp_advice(cause: LampCause, port: str) -> str:
    """One line a technician can act on, for each :class:`LampCause`."""
    return {
        LampCause.CANNOT_OPEN: (
            f"the lamp port {port} cannot be opened: plug in the USB relay board, pick its "
            "/dev/serial/by-id/… name from 'serial ports' (or hwgrep://1a86:7523) for [lamp] port, "
            "and make sure this user is in group dialout"
        ),
        LampCause.NO_ANSWER: (
            f"something is on {port} but it does not answer like our lamp: wrong port (another "
            "serial device?), wrong [lamp] baudrate, or the lamp firmware is not flashed"
        ),
        LampCause.REFUSED: (
            "the lamp refuses a channel: it has fewer channels than [lamp.channels] uses; fix the "
            "channel numbers"
        ),
        LampCause.STOPPED_ANSWERING: (
            f"the lamp on {port} stopped answering: check the USB cable and the lamp's power supply"
        ),
        LampCause.FAILED: f"the lamp on {port} failed: check the USB cable, then run `kiosk lamp --test` for details",
    }[cause]


async def check_lamp(cfg: LampConfig, *, dwell: float = 0.5) -> CheckResult:
    """Switch each configured channel on and off once with the lamp agent's channel test and judge the report."""
    from kiosk.lamp_agent import run_check

    out = io.StringIO()
    errors: list[tuple[str, Exception]] = []
    code = await run_check(cfg, dwell=dwell, out=out, errors=errors)
    lines = [ln.strip() for ln in out.getvalue().splitlines() if ln.strip()]
    detail = "\n".join(lines)
    if code == 0:
        return CheckResult("lamp", True, detail)
    return CheckResult("lamp", False, detail, lamp_advice(lamp_cause(errors), cfg.port))


def lamp_departments_result(cfg: LampConfig, welcome: Welcome, role: str) -> CheckResult:
    """``[lamp.channels]`` names exactly the departments the relay sends this terminal."""
    from kiosk.lamp_agent import LampBoard

    board = LampBoard(cfg)
    board.on_message(welcome)
    problems = board.welcome_problems()
    if problems:
        return CheckResult(
            "lamp departments",
            False,
            "\n".join(problems),
            "make [lamp.channels] and this terminal's departments in relay.toml list the same department ids",
        )
    return CheckResult(
        "lamp departments",
        True,
        ", ".join(f"{d}→{ch}" for d, ch in sorted(cfg.channels.items(), key=lambda kv: kv[1]))
        or "no department channels",
    )
