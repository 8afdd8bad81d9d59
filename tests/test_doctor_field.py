"""``kiosk doctor`` knows a field terminal from a demo: demo tokens, synthetic sources, a null speaker, media pinned
to loopback, ws:// to another machine and a lamp without a driver are warnings with advice; --strict fails on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ROOT

from kiosk import doctor
from kiosk.config import load_terminal_config
from kiosk.doctor.field import demo_tokens, field_results

SKIP_IO = ["--skip", "devices", "--skip", "camera", "--skip", "audio", "--skip", "lamp", "--skip", "relay"]


def names(results: list[doctor.CheckResult]) -> set[str]:
    return {r.name for r in results if r.warned}


def field_copy(tmp_path: Path, **replacements: str) -> Path:
    """config/examples/counter-field.toml with its placeholder token replaced (and ``replacements`` applied)."""
    text = (ROOT / "config/examples/counter-field.toml").read_text(encoding="utf-8")
    text = text.replace("REPLACE-ME-counter-sapporo-1", "XmAzZl9OP3OU-E2kOjD44_s3UhEU8_065QzLtNJpOpQ")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "counter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_demo_counter_is_not_a_field_terminal() -> None:
    """The demo counter config warns about its demo token, synthetic sources, null speaker and loopback media."""
    cfg = load_terminal_config(ROOT / "config/counter.toml", "counter")
    results = field_results(cfg)
    assert names(results) == {"demo token", "synthetic sources", "speaker output", "ICE on loopback"}
    assert all(r.ok and r.advice and not r.failed for r in results)
    synthetic = next(r for r in results if r.name == "synthetic sources")
    assert "synthetic:camera" in synthetic.detail and "synthetic:document" in synthetic.detail
    assert "synthetic:tone" in synthetic.detail


def test_every_shipped_token_is_a_demo_token() -> None:
    """Tokens of all shipped configs (demo terminals and the example's placeholder) are recognised."""
    tokens = demo_tokens()
    for name, role in (
        ("counter", "counter"),
        ("office", "office"),
        ("office-2", "office"),
        ("lamp", "lamp"),
    ):
        cfg = load_terminal_config(ROOT / f"config/{name}.toml", role)
        assert cfg.relay.token in tokens, name
    assert "REPLACE-ME-counter-sapporo-1" in tokens


def test_a_field_config_has_no_warnings(tmp_path: Path) -> None:
    """The field example with a real token passes the field checks with one ✓."""
    cfg = load_terminal_config(field_copy(tmp_path), "counter")
    results = field_results(cfg, role="counter")
    assert [(r.name, r.ok, r.warned) for r in results] == [("field setup", True, False)]


def test_a_counter_without_a_fallback_phone_is_warned(tmp_path: Path) -> None:
    """A field counter with no [terminal] fallback_phone gets a warning naming the key and the file."""
    path = field_copy(tmp_path, **{'fallback_phone = "0133-23-2211"': ""})
    results = field_results(load_terminal_config(path, "counter"), role="counter")
    assert names(results) == {"fallback phone"}
    warning = next(r for r in results if r.warned)
    assert "fallback_phone" in warning.advice and str(path) in warning.advice


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("ws://relay.example.jp:8765", True),
        ("ws://192.168.10.5:8765", True),
        ("wss://relay.example.jp:8765", False),
        ("ws://127.0.0.1:8765", False),
        ("ws://localhost:8765", False),
        ("ws://[::1]:8765", False),
    ],
)
def test_plain_websocket_to_another_machine(tmp_path: Path, url: str, warned: bool) -> None:
    """ws:// is a warning only when the relay is on another machine."""
    cfg = load_terminal_config(
        field_copy(tmp_path, **{'url = "wss://relay.example.jp:8765"': f'url = "{url}"'}), "counter"
    )
    assert ("relay over ws://" in names(field_results(cfg))) is warned


def test_strict_fails_on_warnings_only(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --strict warnings leave the exit status 0; with it they make it 1, and JSON lists them."""
    config = str(ROOT / "config/counter.toml")
    assert doctor.main(["--config", config, *SKIP_IO]) == 0
    text = capsys.readouterr().out
    assert "! demo token" in text and "4 warning(s)" in text and "→ make this terminal its own token" in text
    assert doctor.main(["--config", config, *SKIP_IO, "--strict", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and report["strict"]
    assert set(report["warnings"]) == {"demo token", "synthetic sources", "speaker output", "ICE on loopback"}
    assert any(c["warning"] for c in report["checks"])


async def test_lamp_driver_none_is_never_a_passed_lamp_test(tmp_path: Path) -> None:
    """A [lamp] with driver none is a warning in the field checks and never a ✓ lamp check."""
    from kiosk.config import LampConfig
    from kiosk.lamp_agent import run_check

    result = await doctor.check_lamp(LampConfig("none", "", {"juumin": 1}), dwell=0)
    assert not result.ok
    assert await run_check(LampConfig("none", "", {"juumin": 1}), dwell=0) == 1
