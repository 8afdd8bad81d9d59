"""The aiortc/aioice internals this project overrides, and the lock file that pins them.

``kiosk/video/jitter.py`` replaces ``aiortc.rtcrtpreceiver.JitterBuffer`` and overrides
``JitterBuffer._remove_frame``; ``kiosk/video/ice.py`` replaces ``aioice.ice.get_host_addresses``.
pyproject.toml bounds both packages from above; when a new release changes these internals, these
tests fail with what changed, instead of calls silently losing the fixes.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import aioice.ice
import aiortc.jitterbuffer
import aiortc.rtcrtpreceiver

ROOT = Path(__file__).resolve().parent.parent


def test_jitter_buffer_internals_are_the_ones_overridden() -> None:
    """JitterBuffer still has the attributes and private method FrameEndJitterBuffer relies on."""
    assert aiortc.rtcrtpreceiver.JitterBuffer is not None, (
        "aiortc.rtcrtpreceiver no longer imports JitterBuffer"
    )
    params = list(inspect.signature(aiortc.jitterbuffer.JitterBuffer._remove_frame).parameters)
    assert params == ["self", "sequence_number"], f"JitterBuffer._remove_frame signature changed: {params}"
    buffer = aiortc.jitterbuffer.JitterBuffer(capacity=128, is_video=True)
    for name in ("_is_video", "_origin", "_packets", "capacity", "remove"):
        assert hasattr(buffer, name), f"aiortc JitterBuffer lost {name!r}; review kiosk/video/jitter.py"
    assert set(inspect.signature(aiortc.jitterbuffer.JitterFrame).parameters) == {"data", "timestamp"}


def test_get_host_addresses_internal_is_the_one_replaced() -> None:
    """aioice still gathers host candidates through ice.get_host_addresses(use_ipv4, use_ipv6)."""
    params = list(inspect.signature(aioice.ice.get_host_addresses).parameters)
    assert params == ["use_ipv4", "use_ipv6"], f"aioice.ice.get_host_addresses signature changed: {params}"
    source = inspect.getsource(aioice.ice.Connection)
    assert "get_host_addresses(" in source, "aioice.ice.Connection no longer calls get_host_addresses"


def _pins(lock: Path) -> dict[str, str]:
    return {
        m.group(1).lower().replace("_", "-"): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", lock.read_text(), re.M)
    }


def test_lock_files_pin_every_declared_dependency_with_hashes() -> None:
    """Each lock pins every dependency pyproject.toml declares for it, each with a hash."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        "base": project["dependencies"],
        "test": project["dependencies"] + project["optional-dependencies"]["test"],
        "bench": project["dependencies"]
        + project["optional-dependencies"]["test"]
        + project["optional-dependencies"]["bench"],
    }
    for name, requirements in wanted.items():
        lock = ROOT / "requirements" / f"{name}.lock"
        pins = _pins(lock)
        for requirement in requirements:
            package = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            assert package in pins, f"{lock.name} does not pin {package}: run scripts/lock"
        blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
        unhashed = [b.split()[0] for b in blocks if "==" in b and "--hash=sha256:" not in b]
        assert not unhashed, f"{lock.name}: pins without hashes: {unhashed}"


def test_turn_internals_used_for_paths_and_private_ca() -> None:
    """kiosk/video/turnprobe.py reaches into aiortc/aioice: one TURN server per gatherer (so a peer connection gets
    one path), aioice's Connection.turn_ssl accepting an SSLContext, and the nominated pair in _nominated."""
    import aiortc.rtcicetransport
    from aioice import turn

    source = inspect.getsource(aiortc.rtcicetransport.connection_kwargs)
    assert "only a single TURN server is supported" in source, (
        "aiortc may now use several TURN servers: review kiosk/video/paths.py (one path per peer connection)"
    )
    assert "ssl" in inspect.signature(turn.create_turn_endpoint).parameters
    conn = aioice.ice.Connection(ice_controlling=True)
    for name in ("turn_ssl", "turn_server", "turn_transport", "_nominated", "local_candidates"):
        assert hasattr(conn, name), f"aioice Connection lost {name!r}; review kiosk/video/turnprobe.py"
    gatherer = aiortc.rtcicetransport.RTCIceGatherer(iceServers=[])
    assert isinstance(gatherer._connection, aioice.ice.Connection)
    assert "ssl=ssl" in inspect.getsource(turn.create_turn_endpoint)
