"""Test-wide set-up: import paths and Kivy's environment (before anything imports Kivy)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_NO_FILELOG", "1")
if "KIVY_HOME" not in os.environ:
    # Shared with every process the tests start (they inherit it), removed when the test run ends.
    from kiosk.ui.env import make_temp_kivy_home

    os.environ["KIVY_HOME"] = make_temp_kivy_home()


# -- the relay fixtures every websocket test module uses (relay_support holds the harness) -------------
import time  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from helpers import make_relay_config  # noqa: E402
from relay_support import Relay, StartRelay  # noqa: E402

from relay_server.config import RelayConfig  # noqa: E402
from relay_server.server import RelayServer  # noqa: E402


@pytest.fixture
async def start_relay() -> AsyncIterator[StartRelay]:
    """Factory: ``await start_relay(config=None, clock=time.time, **config_overrides)``."""
    relays: list[Relay] = []

    async def start(
        config: RelayConfig | None = None, clock: Callable[[], float] = time.time, **overrides: Any
    ) -> Relay:
        server = RelayServer(config or make_relay_config(**overrides), clock=clock)
        await server.start()
        relay = Relay(server)
        relays.append(relay)
        return relay

    yield start
    for r in relays:
        await r.aclose()


@pytest.fixture
async def relay(start_relay: StartRelay) -> Relay:
    """A relay with the demo config (four departments, always open)."""
    return await start_relay()
