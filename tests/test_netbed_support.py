"""The test bed's own guard, without root: where the bed cannot be built, the netbed module fails and says why."""

from __future__ import annotations

import netbed
import pytest


def test_without_root_the_bed_refuses_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: NetBedUnavailable names root (the module's fixture raises it, so its tests fail, never skip)."""
    monkeypatch.setattr(netbed.os, "geteuid", lambda: 1000)
    with pytest.raises(netbed.NetBedUnavailable, match="needs root"):
        netbed.require_netbed()


def test_without_a_tool_the_bed_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing tool (here 'turnserver') is named with the package that scripts/setup installs."""
    monkeypatch.setattr(netbed.os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        netbed.shutil, "which", lambda tool: None if tool == "turnserver" else f"/usr/bin/{tool}"
    )
    with pytest.raises(netbed.NetBedUnavailable, match="'turnserver'.*coturn"):
        netbed.require_netbed()
