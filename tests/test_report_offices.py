"""`relay-server report` of a relay serving several towns: one table per office, or one office with --office."""

from __future__ import annotations

import subprocess
from pathlib import Path

from test_relay_process import relay_server_command
from test_relay_report import answered, at

from relay_server.store import CallLog

ROOT = Path(__file__).resolve().parent.parent


def report(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*relay_server_command(), "report", "--config", str(config), "--month", "2026-03", *extra],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_report_is_split_by_office(tmp_path: Path) -> None:
    """Each town gets its own table with only its own departments' calls; --office prints one town."""
    text = (ROOT / "config" / "relay-two-towns.toml").read_text()
    config = tmp_path / "relay.toml"
    config.write_text(
        text.replace('database = "../var/relay-demo-two-towns.sqlite3"', 'database = "calls.sqlite3"')
    )
    with CallLog(tmp_path / "calls.sqlite3") as log:
        log.record(answered("a", "juumin", at(2026, 3, 2, 9, 0), 10, 100))
        log.record(answered("b", "shinshinotsu-juumin", at(2026, 3, 2, 10, 0), 5, 50))
        log.record(answered("c", "shinshinotsu-juumin", at(2026, 3, 3, 10, 0), 5, 50))
    out = report(config)
    assert out.returncode == 0, out.stderr
    tobetsu, shinshinotsu = out.stdout.split("新篠津村役場")
    assert (
        "当別町役場 / Tobetsu Town Office (tobetsu)" in tobetsu
        and "shinshinotsu" not in tobetsu.split(")", 1)[1]
    )
    rows = {line.split()[0]: line.split() for line in shinshinotsu.splitlines()[2:] if line.strip()}
    assert (
        set(rows) == {"shinshinotsu-juumin", "shinshinotsu-sangyou"} and rows["shinshinotsu-juumin"][1] == "2"
    )
    one = report(config, "--office", "shinshinotsu", "--csv")
    assert one.returncode == 0 and "juumin,1" not in one.stdout and "shinshinotsu-juumin,2,2" in one.stdout
    bad = report(config, "--office", "nowhere")
    assert bad.returncode == 2 and "known: tobetsu, shinshinotsu" in bad.stderr
