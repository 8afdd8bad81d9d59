"""Calls between two buildings, in a namespace test bed (tests/netbed.py): NAT, web-only firewall, TLS with a
private CA, outages and bad links, all with real coturn, nftables, relay-server and terminals as processes.

Needs root and ``ip netns`` (CI runs as root): without them the module fails and says why, it never skips.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from netbed import PYTHON, ROOT, NetBed, Proc, require_netbed

COUNTER_ID, STATION_ID = "counter-sapporo-1", "office-tobetsu-1"


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetBed]:
    require_netbed()  # raises with the reason: this module fails, never skips, where the bed cannot exist
    with NetBed(tmp_path_factory.mktemp("netbed")) as nb:
        yield nb


@pytest.fixture()
def clean_town(bed: NetBed) -> Iterator[NetBed]:
    """Each scenario starts with an open town network and leaves it so, whatever happened."""
    yield bed
    bed.restore_town(new_mapping=True)
    bed.set_loss(0)
    bed.set_uplink(None)
    bed.nft("rt", "flush chain inet bed outbound\n")


def peer(bed: NetBed, role: str, name: str, *, extra: str = "") -> Proc:
    cfg = bed.terminal_config("counter" if role == "counter" else "office", extra=extra)
    proc = bed.spawn("cs" if role == "counter" else "st", [PYTHON, str(ROOT / "tests" / "netbed_peer.py"), role,
                                                          "--config", str(cfg)], name=name)
    proc.wait_event(lambda e: e["event"] == "ready", 30, "ready")
    return proc


def frames_from(proc: Proc, member: str, track: str, more_than: int, timeout: float) -> dict[str, Any]:
    key = f"{member}/{track}"
    return proc.wait_event(lambda e: e["event"] == "frames" and e["tracks"].get(key, 0) > more_than, timeout,
                           f"{key} frames > {more_than}")


def last_frames(proc: Proc, member: str, track: str) -> int:
    key = f"{member}/{track}"
    counts = [e["tracks"].get(key, 0) for e in proc.events if e["event"] == "frames"]
    return counts[-1] if counts else 0


def connected(proc: Proc, member: str, timeout: float) -> dict[str, Any]:
    return proc.wait_event(lambda e: e["event"] == "connection_state" and e.get("state") == "connected"
                           and e.get("member") == member, timeout, f"connected to {member}")


def stop_all(*procs: Proc) -> None:
    for p in procs:
        p.stop()


def test_udp_open_call_goes_through_turn_udp(clean_town: NetBed) -> None:
    """Behind two NATs (one symmetric) with UDP open, a call shows pictures both ways over TURN/UDP."""
    bed = clean_town
    station = peer(bed, "station", "station-udp")
    counter = peer(bed, "counter", "counter-udp")
    try:
        counter.send("call juumin")
        frames_from(counter, STATION_ID, "camera", 5, 30)
        frames_from(station, COUNTER_ID, "camera", 5, 30)
        frames_from(station, COUNTER_ID, "document", 1, 30)
        c = connected(counter, STATION_ID, 5)
        s = connected(station, COUNTER_ID, 5)
        print(json.dumps([c, s]))
    finally:
        stop_all(counter, station)
