"""Lamp agent (``kiosk lamp``): lights a serial lamp while calls ring for the departments it watches.

Three parts, from pure to edge:

* :class:`~kiosk.lamp_board.LampBoard` (pure, in ``kiosk/lamp_board.py``): relay messages and link changes in,
  desired channel states out.
* :class:`LampController`: a :class:`LampBoard` driving a :class:`~kiosk.devices.lamp.LampDevice`. Its
  ``on_message`` / ``on_link`` have the signatures :class:`~kiosk.client.RelayClient` calls, so the staff station
  can embed one with its own relay connection (a one-PC office needs no separate agent).
* :func:`main`: the ``kiosk lamp`` command: one :class:`~kiosk.client.RelayClient` with the lamp's token and a
  :class:`LampController`; ``--test`` cycles every channel once for a technician instead.

Rules (``docs/devices.md``, "Lamp"):

* A department's channel is lit (steady, or blinking with ``blink = true``) while at least one call for that
  department is ringing; it goes off when the last one is answered (``taken``), cancelled, unanswered or ended.
* ``in_call_channel`` is lit while at least one call is in progress.
* ``fault_channel`` is lit while the relay is unreachable (link down or token rejected). On link loss every
  other channel goes off: a lamp must never show a ringing call that may no longer exist. After reconnecting the
  relay re-sends ``incoming`` for every ringing call and ``taken`` for every call in progress, which restores
  the lamp.
* Invitations (``incoming`` with ``invited_by``, which only staff stations receive) light the invited
  department too: someone is waiting for that department. They go off when taken, when the invitation
  expires (the relay then sends ``ended`` to the invited stations) or when the call ends.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import replace
from typing import Any, TextIO

from common.logs import event, setup_logging
from common.messages import ServerMessage
from common.protocol import LAMP_TEST_SECONDS
from kiosk.config import ConfigError, LampConfig, RelayLink, load_terminal_config
from kiosk.devices.lamp import LampDevice, LampError, open_lamp_driver
from kiosk.lamp_board import ChannelState, LampBoard, channel_labels, config_channels

log = logging.getLogger(__name__)

# Ping interval and timeout of the lamp agent's relay link, in seconds. A lamp lit for a call the relay no longer
# carries misleads the office, so a hung relay (or a silently dead network) must put it out within seconds: at
# most their sum (the terminals' default, 5 + 10 s, left it lit for up to 23 s).
LAMP_KEEPALIVE = (2.0, 2.0)

__all__ = ["LampBoard", "LampController", "channel_labels", "main", "run_agent", "run_check"]


class LampController:
    """A :class:`LampBoard` driving a lamp device: what ``kiosk lamp`` runs and a staff station can embed.

    ``on_message(msg)`` and ``on_link(state, detail)`` match :class:`~kiosk.client.RelayClient`'s callbacks;
    they never block and never raise because of the device (device trouble is logged and retried by
    :class:`~kiosk.devices.lamp.LampDevice`).

    Args:
        config: the ``[lamp]`` section.
        port: overrides ``config.port``.
        device: a ready-made device (tests, benchmarks); default ``LampDevice(config, port=port, **options)``.
        device_options: passed to :class:`~kiosk.devices.lamp.LampDevice` (``backoff``, ``keepalive``, …).
    """

    def __init__(
        self,
        config: LampConfig,
        *,
        port: str | None = None,
        device: LampDevice | None = None,
        **device_options: Any,
    ) -> None:
        self.config = config
        self.board = LampBoard(config)
        self.device = device if device is not None else LampDevice(config, port=port, **device_options)
        self.labels = channel_labels(config)
        self._shown = self.board.desired()
        self._test_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the device task (opens the port, switches every channel to its state)."""
        self.device.apply(self._shown)
        self.device.start()

    def on_message(self, msg: ServerMessage) -> None:
        """A message from the relay (validated on arrival by the relay client)."""
        self.board.on_message(msg)
        if msg["type"] == "welcome":
            for problem in self.board.welcome_problems():
                event(log, "lamp_config_mismatch", logging.WARNING, problem=problem)
        elif msg["type"] == "lamp_test":
            seconds = msg["seconds"]
            channels = sorted(
                self.config.channels[d] for d in self.board.testing if d in self.config.channels
            )
            event(log, "lamp_test", by=msg["by"], channels=",".join(map(str, channels)) or "none")
            if self._test_timer is not None:
                self._test_timer.cancel()
            self._test_timer = asyncio.get_running_loop().call_later(
                float(seconds) if 0 < seconds <= 60 else LAMP_TEST_SECONDS, self._end_test
            )
        self._push(msg["type"])

    def _end_test(self) -> None:
        self._test_timer = None
        self.board.end_test()
        self._push("lamp test over")

    def on_sent(self, msg: dict[str, Any]) -> None:
        """A message the embedding staff station sent (only ``decline`` matters)."""
        self.board.on_sent(msg)
        self._push(f"sent {msg.get('type', '')}")

    def on_link(self, state: str, detail: str) -> None:
        """A relay link change."""
        if state in ("down", "unauthorized"):
            event(
                log,
                "lamp_relay_lost",
                logging.WARNING,
                state=state,
                detail=detail,
                action="lamps off" + (", fault lamp on" if self.config.fault_channel else ""),
            )
        self.board.on_link(state, detail)
        self._push(f"link {state}")

    def _push(self, cause: str) -> None:
        new = self.board.desired()
        changed = {ch: s for ch, s in new.items() if self._shown.get(ch) is not s}
        for ch, s in changed.items():
            event(
                log,
                "lamp_channel",
                channel=ch,
                shows=self.labels.get(ch, ""),
                change=f"{self._shown.get(ch, ChannelState.OFF).value} -> {s.value}",
                cause=cause,
            )
        self._shown = new
        if changed:
            self.device.apply(changed)

    async def close(self) -> None:
        """All channels off, port closed."""
        if self._test_timer is not None:
            self._test_timer.cancel()
            self._test_timer = None
        await self.device.close()

    async def __aenter__(self) -> LampController:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ---------------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------------
async def run_check(
    config: LampConfig,
    *,
    dwell: float = 1.0,
    out: TextIO | None = None,
    errors: list[tuple[str, Exception]] | None = None,
) -> int:
    """Technician check: light each configured channel for ``dwell`` seconds, one after the other, and report.

    Args:
        errors: if given, every failure is appended as ``(stage, exception)`` with stage ``open`` (the port or
            the device's first answer) or ``command`` (all-off or a channel), for callers that judge by type.

    Returns 0 if every channel was acknowledged (ascii) or written (lcus), else 1.
    """
    errors = [] if errors is None else errors
    out = out or sys.stdout  # looked up now: a default bound at import time may be a closed stream by now
    channels = config_channels(config)
    labels = channel_labels(config)
    print(
        f"lamp check: {config.driver} lamp on {config.port or '(none)'}, "
        f"{len(channels)} channel(s), {dwell:g} s each",
        file=out,
        flush=True,
    )
    if config.driver == "none":
        # Nothing to light: a test that "passed" here would vouch for a lamp that is not there.
        err = ValueError(
            '[lamp] driver = "none": there is no lamp to test (set driver to lcus or ascii and port '
            "to the lamp's serial port)"
        )
        errors.append(("open", err))
        print(f"FAILED: {err}", file=out, flush=True)
        return 1
    try:
        driver = await open_lamp_driver(config)
    except (LampError, ValueError) as err:
        errors.append(("open", err))
        print(f"FAILED: {err}", file=out, flush=True)
        return 1
    ok_word = "acknowledged" if driver.acknowledged else "written"
    failures = 0
    async with driver:
        try:
            await driver.all_off()
        except LampError as err:
            errors.append(("command", err))
            print(f"  all off: FAILED: {err}", file=out, flush=True)
            failures += 1
        for ch in channels:
            try:
                await driver.set(ch, ChannelState.ON)
                await asyncio.sleep(dwell)  # long enough for a person to see the lamp
                await driver.set(ch, ChannelState.OFF)
                result = ok_word
            except LampError as err:
                errors.append(("command", err))
                result = f"FAILED: {err}"
                failures += 1
            print(f"  channel {ch:<2} {labels.get(ch, ''):<20} {result}", file=out, flush=True)
    if config.driver == "lcus" and not failures:
        print(
            "an LCUS board never answers: 'written' means the bytes left this PC; check that each lamp lit",
            file=out,
        )
    print(
        f"result: {len(channels) - min(failures, len(channels))} of {len(channels)} channel(s) OK",
        file=out,
        flush=True,
    )
    return 1 if failures else 0


async def run_agent(relay: RelayLink, lamp: LampConfig, *, stop: asyncio.Event | None = None) -> int:
    """Run the lamp agent until SIGTERM/SIGINT (or ``stop``); leaves every channel off and the port closed."""
    from kiosk.client import RelayClient  # the websocket edge, only needed here

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from kiosk.health import HealthReporter, device_states

    controller = LampController(lamp)
    health = HealthReporter(lambda: device_states(lamp_device=controller.device), lambda m: client.send(m))

    async def on_link(state: str, detail: str) -> None:
        health.on_link(state)
        controller.on_link(state, detail)

    client = RelayClient.for_link(
        relay,
        on_message=controller.on_message,
        on_link=on_link,
        keepalive=LAMP_KEEPALIVE,
        client_name="kiosk-lamp",
    )
    controller.start()
    health.start()
    client.start()
    event(
        log,
        "lamp_agent_started",
        relay=relay.url,
        driver=lamp.driver,
        port=lamp.port,
        channels=" ".join(f"{ch}={name}" for ch, name in controller.labels.items()),
    )
    try:
        await stop.wait()
    finally:
        event(log, "lamp_agent_stopping")
        await health.close()
        await client.close()
        await controller.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        event(log, "lamp_agent_stopped")
    return 0


def main(argv: list[str]) -> int:
    """``kiosk lamp --config config/lamp.toml [--lamp-port URL] [--test]``."""
    ap = argparse.ArgumentParser(
        prog="kiosk lamp", description="Light a serial lamp while calls ring (see docs/devices.md)."
    )
    ap.add_argument("--config", required=True, help="lamp terminal config (TOML), e.g. config/lamp.toml")
    ap.add_argument("--url", help="relay URL, overriding [relay] url")
    ap.add_argument(
        "--lamp-port",
        metavar="URL",
        help="serial port or pyserial URL, overriding [lamp] port (/dev/ttyUSB0, hwgrep://1a86:7523, "
        "socket://host:port)",
    )
    ap.add_argument("--test", action="store_true", help="light each channel once, report, and exit")
    ap.add_argument(
        "--test-dwell",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long --test lights each channel (default 1)",
    )
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    try:
        cfg = load_terminal_config(args.config, "lamp")
    except ConfigError as err:
        print(f"kiosk lamp: {err}", file=sys.stderr)
        return 2
    assert cfg.lamp is not None  # required for role "lamp"
    lamp = cfg.lamp if args.lamp_port is None else replace(cfg.lamp, port=args.lamp_port)
    if args.test:
        setup_logging("WARNING")
        return asyncio.run(run_check(lamp, dwell=args.test_dwell))
    setup_logging(args.log_level)
    relay = cfg.relay if args.url is None else replace(cfg.relay, url=args.url)
    return asyncio.run(run_agent(relay, lamp))
