"""Config loading: the demo configs load, and mistakes are reported with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import load_terminal_config
from relay_server.config import ConfigError, hash_token, load_relay_config

ROOT = Path(__file__).resolve().parent.parent


def test_demo_configs_load() -> None:
    """Every shipped demo config is valid and the demo has at least four departments open all day."""
    relay = load_relay_config(ROOT / "config/relay.toml")
    assert len(relay.departments) >= 4
    assert all(d.hours.always for d in relay.departments.values())
    roles = sorted(t.role for t in relay.terminals.values())
    assert roles == ["counter", "lamp", "office", "office"], (
        "the demo: one counter, two stations, one lamp agent"
    )
    stations = [t for t in relay.terminals.values() if t.role == "office"]
    assert set(stations[0].departments) == set(stations[1].departments) == set(relay.departments), (
        "both demo stations serve every department, so a colleague can be invited and 'taken' can be seen"
    )
    for name, role in [
        ("counter", "counter"),
        ("office", "office"),
        ("office-2", "office"),
        ("lamp", "lamp"),
    ]:
        cfg = load_terminal_config(ROOT / f"config/{name}.toml", role)
        assert cfg.relay.url.startswith("ws://")
        owner = [t for t in relay.terminals.values() if t.token_hash == hash_token(cfg.relay.token)]
        assert [t.role for t in owner] == [role], f"config/{name}.toml's token is the relay's {role} terminal"


def test_camera_adapts_by_default_and_the_document_camera_never(tmp_path: Path) -> None:
    """[camera] adapt defaults to true and can be turned off; [document_camera] refuses the key, saying why."""
    cfg = load_terminal_config(ROOT / "config/counter.toml", "counter")
    assert cfg.media is not None and cfg.media.camera is not None and cfg.media.document_camera is not None
    assert cfg.media.camera.adapt and not cfg.media.document_camera.adapt
    text = (ROOT / "config/counter.toml").read_text()
    off = tmp_path / "off.toml"
    off.write_text(text.replace("[camera]\n", "[camera]\nadapt = false\n", 1))
    media = load_terminal_config(off, "counter").media
    assert media is not None and media.camera is not None and not media.camera.adapt
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[document_camera]\n", "[document_camera]\nadapt = true\n", 1))
    with pytest.raises(
        ConfigError, match=r"document_camera\.adapt: the document camera is never scaled down"
    ):
        load_terminal_config(bad, "counter")


def test_relay_defaults_when_keys_are_left_out(tmp_path: Path) -> None:
    """Timers a technician leaves out take the documented defaults: ring 60 s, grace 20 s, hello 10 s, 4 members,
    64 KiB."""
    text = (ROOT / "config/relay.toml").read_text()
    for key in ("ring_timeout", "grace_period", "max_members"):
        text = "\n".join(line for line in text.splitlines() if not line.startswith(key))
    p = tmp_path / "relay.toml"
    p.write_text(text)
    server = load_relay_config(p)
    assert (server.ring_timeout, server.grace_period, server.hello_timeout) == (60.0, 20.0, 10.0)
    assert (server.max_members, server.max_message_bytes) == (4, 64 * 1024)


def test_typo_in_key_names_file_line_and_suggestion(tmp_path: Path) -> None:
    """A misspelt key is an error that names the file, its line and the key it probably meant."""
    text = (ROOT / "config/relay.toml").read_text().replace("ring_timeout = 60", "rign_timeout = 60")
    p = tmp_path / "relay.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_relay_config(p)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("rign_timeout"))
    assert f"{p}:{line}:" in str(exc.value)
    assert "did you mean 'ring_timeout'" in str(exc.value)


def test_bad_value_in_array_table_is_located(tmp_path: Path) -> None:
    """A wrong value inside the third [[department]] points at that department's line."""
    text = (ROOT / "config/relay.toml").read_text()
    marker = (
        'id = "hoken"\nname = { ja = "保健福祉課", en = "Health and Welfare Division" }\nhours = "always"'
    )
    assert marker in text
    text = text.replace(marker, marker.replace('"always"', '["mon-fri 8:45-25:00"]'))
    p = tmp_path / "relay.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_relay_config(p)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "25:00" in t)
    assert f":{line}: department[2].hours:" in str(exc.value)


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    """A TOML syntax error names the file and line."""
    p = tmp_path / "counter.toml"
    p.write_text('[relay]\nurl = "ws://x"\ntoken = \n')
    with pytest.raises(ConfigError, match=r"counter.toml:3: TOML syntax error"):
        load_terminal_config(p, "counter")
