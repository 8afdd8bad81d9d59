"""docs/configuration.md stays true to the parsers, and the example configs it points to load."""

from __future__ import annotations

import re
from pathlib import Path

from kiosk.config import load_terminal_config
from relay_server.config import load_relay_config

ROOT = Path(__file__).resolve().parent.parent
PARSERS = (
    ROOT / "relay_server" / "config.py",
    ROOT / "relay_server" / "admin" / "settings.py",
    ROOT / "kiosk" / "config.py",
)
_KEY = re.compile(r"""\.(?:get|get_list|section|sections)\(\s*["']([a-z_]+)["']""")


def parsed_keys() -> set[str]:
    """Every literal key or table name the config parsers read."""
    return {m.group(1) for p in PARSERS for m in _KEY.finditer(p.read_text())}


def test_every_parsed_key_is_documented() -> None:
    """Each key a parser reads appears as `key` in docs/configuration.md (a new key needs its row)."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    keys = parsed_keys()
    assert {"ring_timeout", "turn_secret", "closed_dates", "ice_addresses", "in_call_channel"} <= keys
    missing = sorted(k for k in keys if f"`{k}`" not in doc and f"[{k}]" not in doc and f".{k}]" not in doc)
    assert not missing, f"keys read by the parsers but not in docs/configuration.md: {missing}"


def test_example_configs_load() -> None:
    """The field examples in config/examples/ are valid."""
    relay = load_relay_config(ROOT / "config/examples/relay-office-hours.toml")
    assert relay.turn_secret and len(relay.departments) == 4
    counter = load_terminal_config(ROOT / "config/examples/counter-field.toml", "counter")
    assert counter.ui.fullscreen and counter.media is not None and counter.media.document_camera is not None
