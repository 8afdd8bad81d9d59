"""The lamp end to end: the real relay, a real RelayClient, LampController and an emulated board on a pty.

Also the ``kiosk lamp`` process itself: SIGTERM leaves every channel off, and the technician ``--test``.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from helpers import COUNTER, LAMP, OFFICE1, ROOT, TOKENS, WsClient, make_relay_config, wait_until

from common.protocol import LAMP_TEST_SECONDS
from kiosk.client import RelayClient
from kiosk.config import LampConfig
from kiosk.devices.emulated import EmulatedAsciiLamp, EmulatedLcusBoard
from kiosk.devices.lamp import ChannelState
from kiosk.lamp_agent import LampController, run_check
from relay_server.config import Terminal, hash_token
from relay_server.server import RelayServer

ON, OFF = ChannelState.ON, ChannelState.OFF
COUNTER2, COUNTER2_TOKEN = "counter-test-2", "test-counter-2-token"
DEPARTMENTS = {"juumin": 1, "zeimu": 2, "hoken": 3, "kensetsu": 4}
IN_CALL, FAULT = 5, 6
LAMP_CONFIG = LampConfig("lcus", "", DEPARTMENTS, in_call_channel=IN_CALL, fault_channel=FAULT)
ALL_OFF = {ch: OFF for ch in range(1, 7)}
# No idle re-writes during these tests: the board's command history shows only what the relay caused.
FAST: dict[str, Any] = {"backoff": (0.02, 0.1), "keepalive": 60.0}


def relay_config(**overrides: Any) -> Any:
    """The demo relay config plus a second counter, so one department can have two calls at once."""
    cfg = make_relay_config(**overrides)
    terminals = dict(cfg.terminals)
    terminals[COUNTER2] = replace(terminals[COUNTER], id=COUNTER2, token_hash=hash_token(COUNTER2_TOKEN))
    assert isinstance(terminals[COUNTER2], Terminal)
    return replace(cfg, terminals=terminals)


@dataclass
class Rig:
    relay: RelayServer
    board: EmulatedLcusBoard
    lamp: LampController
    client: RelayClient
    office: WsClient


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """Relay, lamp (LCUS board with in-call and fault channels) and one office, all up and the lamp all off."""
    board = EmulatedLcusBoard(8, labels={v: k for k, v in DEPARTMENTS.items()}).start()
    relay_overrides = getattr(request, "param", {})  # e.g. a short ring_timeout, via indirect parametrize
    relay = await RelayServer(relay_config(**relay_overrides)).start(host="127.0.0.1", port=0)
    lamp = LampController(replace(LAMP_CONFIG, port=board.url), **FAST)
    client = RelayClient(
        relay.url, TOKENS[LAMP], on_message=lamp.on_message, on_link=lamp.on_link, backoff=(0.05, 0.2)
    )
    lamp.start()
    client.start()
    await client.wait_up(5)
    office = await WsClient.open(relay.url, OFFICE1)
    await board.wait_state(ALL_OFF)
    yield Rig(relay, board, lamp, client, office)
    await office.close()
    await client.close()
    await lamp.close()
    await relay.close()
    board.close()


async def place_call(
    url: str, department: str, terminal: str = COUNTER, token: str | None = None
) -> tuple[WsClient, str]:
    counter = await WsClient.open(url, terminal, token)
    await counter.send({"type": "call", "department": department})
    ringing = await counter.expect("ringing")
    return counter, ringing["call"]


async def test_ringing_call_lights_its_channel_and_answer_turns_it_off(rig: Rig) -> None:
    """A ringing call lights its department; answering turns it off and lights in-call until hangup."""
    counter, call = await place_call(rig.relay.url, "zeimu")
    await rig.board.wait_state({2: ON, 1: OFF, 3: OFF, IN_CALL: OFF})
    await rig.office.expect("incoming", call=call)
    await rig.office.send({"type": "answer", "call": call})
    await rig.board.wait_state({2: OFF, IN_CALL: ON})
    await counter.send({"type": "hangup", "call": call})
    await rig.board.wait_state(ALL_OFF)
    await counter.close()


async def test_cancel_turns_the_channel_off(rig: Rig) -> None:
    """A resident who cancels while it rings turns the lamp off."""
    counter, call = await place_call(rig.relay.url, "hoken")
    await rig.board.wait_state({3: ON})
    await counter.send({"type": "cancel", "call": call})
    await rig.board.wait_state(ALL_OFF)
    await counter.close()


@pytest.mark.parametrize("rig", [{"ring_timeout": 0.3}], indirect=True)
async def test_unanswered_call_turns_the_channel_off(rig: Rig) -> None:
    """When the ring timeout ends the call as unanswered the lamp goes off."""
    counter, call = await place_call(rig.relay.url, "kensetsu")
    await rig.board.wait_state({4: ON})
    await counter.expect("ended", call=call, reason="unanswered")
    await rig.board.wait_state(ALL_OFF)
    await counter.close()


async def test_two_calls_for_one_department_keep_it_lit_until_both_are_gone(rig: Rig) -> None:
    """With two calls ringing for one department, ending one leaves the lamp on; ending both turns it off."""
    c1, call1 = await place_call(rig.relay.url, "juumin")
    c2, call2 = await place_call(rig.relay.url, "juumin", COUNTER2, COUNTER2_TOKEN)
    await wait_until(lambda: call2 in rig.lamp.board.ringing, timeout=2)
    await rig.board.wait_state({1: ON})
    await c1.send({"type": "cancel", "call": call1})
    await wait_until(lambda: call1 not in rig.lamp.board.ringing, timeout=2)
    await rig.lamp.device.wait_ready(2)
    # Still lit, and never switched off in between (the only OFF 1 is the start-up all-off).
    assert rig.board.snapshot()[1] is ON and rig.board.commands().count("OFF 1") == 1
    await rig.office.expect("incoming", call=call2)
    await rig.office.send({"type": "answer", "call": call2})
    await rig.board.wait_state({1: OFF, IN_CALL: ON})
    await c1.close()
    await c2.close()


async def test_link_drop_turns_lamps_off_then_restores_from_relay(rig: Rig) -> None:
    """When the lamp's relay link drops: lamp off and fault on; after reconnecting the ringing call is back."""
    counter, call = await place_call(rig.relay.url, "juumin")
    await rig.board.wait_state({1: ON, FAULT: OFF})
    rig.board.clear()
    await rig.relay.conns[LAMP].ws.close()
    await rig.board.wait_for(lambda: f"OFF {FAULT}" in rig.board.commands(), what="fault on, then off")
    await rig.board.wait_state({1: ON, FAULT: OFF})  # restored by the relay's re-sent 'incoming'
    seen = rig.board.commands()
    # In between the lamp really showed the fault and no stale ringing.
    assert "OFF 1" in seen and f"ON {FAULT}" in seen
    assert seen.index("OFF 1") < seen.index("ON 1") and seen.index(f"ON {FAULT}") < seen.index(f"OFF {FAULT}")
    await counter.close()


async def test_relay_restart_turns_lamps_off_and_then_restores(rig: Rig) -> None:
    """Relay stops: lamps off, fault on; relay back on the same port: fault off and new calls light again."""
    counter, call = await place_call(rig.relay.url, "zeimu")
    await rig.office.expect("incoming", call=call)
    await rig.office.send({"type": "answer", "call": call})
    await rig.board.wait_state({IN_CALL: ON})
    port = rig.relay.port
    await rig.relay.close()
    await rig.board.wait_state({**ALL_OFF, FAULT: ON})
    await counter.close()
    await rig.office.close()
    rig.relay = await RelayServer(relay_config()).start(host="127.0.0.1", port=port)
    await rig.board.wait_state(ALL_OFF, timeout=5)
    rig.office = await WsClient.open(rig.relay.url, OFFICE1)
    counter2, _ = await place_call(rig.relay.url, "hoken")
    await rig.board.wait_state({3: ON, FAULT: OFF})
    await counter2.close()


async def test_staff_station_embeds_a_lamp(tmp_path: Path) -> None:
    """A station's own RelayClient can drive a LampController: it lights on ringing, off when it answers."""
    with EmulatedAsciiLamp(4) as board:
        async with RelayServer(relay_config()) as relay:
            lamp = LampController(LampConfig("ascii", board.url, {"juumin": 1, "zeimu": 2}), **FAST)
            station = RelayClient(
                relay.url, TOKENS[OFFICE1], on_message=lamp.on_message, on_link=lamp.on_link
            )
            async with lamp, station:
                await station.wait_up(5)
                counter, call = await place_call(relay.url, "juumin")
                await board.wait_state({1: ON})
                await station.send({"type": "answer", "call": call})
                await board.wait_state({1: OFF, 2: OFF})
                await counter.close()
            assert set(board.snapshot().values()) == {OFF}


# -- the process ------------------------------------------------------------------------------------------------
def write_lamp_config(tmp_path: Path, url: str, driver: str = "lcus", extra: str = "") -> Path:
    p = tmp_path / "lamp.toml"
    channels = "\n".join(f"{d} = {n}" for d, n in DEPARTMENTS.items())
    p.write_text(
        f'[relay]\nurl = "{url}"\ntoken = "{TOKENS[LAMP]}"\n\n'
        f'[lamp]\ndriver = "{driver}"\nport = "/dev/ttyUSB0"\n{extra}\n[lamp.channels]\n{channels}\n'
    )
    return p


async def test_sigterm_leaves_every_channel_off(tmp_path: Path) -> None:
    """`kiosk lamp` lights a ringing call through a pty; on SIGTERM it switches everything off and exits 0."""
    with EmulatedLcusBoard(4) as board:
        async with RelayServer(relay_config()) as relay:
            office = await WsClient.open(relay.url, OFFICE1)
            cfg = write_lamp_config(tmp_path, relay.url)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kiosk",
                "lamp",
                "--config",
                str(cfg),
                "--lamp-port",
                board.url,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                await wait_until(lambda: LAMP in relay.conns, timeout=10)
                counter, call = await place_call(relay.url, "juumin")
                await board.wait_state({1: ON}, timeout=5)
                proc.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(proc.communicate(), 10)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == 0, err.decode()
            assert set(board.snapshot().values()) == {OFF}
            assert b"event=lamp_port_closed" in err
            await counter.close()
            await office.close()


async def test_technician_check_reports_each_channel() -> None:
    """--test lights every channel once: ascii reports acknowledged, and a channel the lamp lacks fails."""
    with EmulatedAsciiLamp(3) as board:
        out = io.StringIO()
        cfg = LampConfig("ascii", board.url, {"juumin": 1, "zeimu": 2}, fault_channel=4)
        assert await run_check(cfg, dwell=0, out=out) == 1
        text = out.getvalue()
        assert "channel 1  juumin" in text and "acknowledged" in text
        assert "channel 4  fault" in text and "FAILED" in text and "result: 2 of 3" in text
        assert board.commands()[:5] == ["PING", "ALLOFF", "ON 1", "OFF 1", "ON 2"]


def test_technician_check_command_line(tmp_path: Path) -> None:
    """`kiosk lamp --test` with an LCUS board writes on and off to every channel and exits 0."""
    with EmulatedLcusBoard(4) as board:
        cfg = write_lamp_config(tmp_path, "ws://127.0.0.1:9")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "kiosk",
                "lamp",
                "--config",
                str(cfg),
                "--lamp-port",
                board.url,
                "--test",
                "--test-dwell",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert sum(line.endswith(" written") for line in result.stdout.splitlines()) == 4
        board.wait_for_sync(lambda: len(board.received) == 12, what="all off + 4 x on/off")
        assert board.commands()[4:] == ["ON 1", "OFF 1", "ON 2", "OFF 2", "ON 3", "OFF 3", "ON 4", "OFF 4"]


def test_missing_config_is_reported() -> None:
    """A wrong --config path exits 2 with a message naming the file."""
    result = subprocess.run(
        [sys.executable, "-m", "kiosk", "lamp", "--config", "/nonexistent/lamp.toml"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "/nonexistent/lamp.toml" in result.stderr


async def test_lamp_test_from_a_counter_lights_its_departments_then_shows_the_calls_again(rig: Rig) -> None:
    """A counter's lamp test lights every channel of its departments for a moment; then the lamp shows what is
    really ringing again, and the counter is told which lamp agents and stations were asked."""
    counter, call = await place_call(rig.relay.url, "zeimu")
    await rig.board.wait_state({2: ON, 1: OFF})
    tester = await WsClient.open(rig.relay.url, COUNTER2, COUNTER2_TOKEN)
    await tester.send({"type": "lamp_test"})
    sent = await tester.expect("lamp_test_sent")
    assert sent["lamps"] == [LAMP] and sent["stations"] == [OFFICE1]
    assert set(sent["departments"]) == set(DEPARTMENTS)
    await rig.board.wait_state({1: ON, 2: ON, 3: ON, 4: ON, IN_CALL: OFF, FAULT: OFF})
    await rig.board.wait_state({1: OFF, 2: ON, 3: OFF, 4: OFF}, timeout=LAMP_TEST_SECONDS + 3)
    await counter.send({"type": "cancel", "call": call})
    await rig.board.wait_state(ALL_OFF)
    await tester.close()
    await counter.close()
