"""Calls between two buildings, in a namespace test bed (tests/netbed.py): NAT, web-only firewall, TLS with a
private CA, outages and bad links, all with real coturn, nftables, relay-server and terminals as processes.

Needs root and ``ip netns`` (CI runs as root): without them the module fails and says why, it never skips.
"""

from __future__ import annotations

import re
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
    proc.wait_event(lambda e: e["event"] == "paths", 30, "ready and paths probed")
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


def media_path(proc: Proc, member: str, timeout: float = 5) -> dict[str, Any]:
    return proc.wait_event(lambda e: e["event"] == "media_path" and e.get("member") == member, timeout,
                           f"media_path to {member}")


def turn_media_sessions(bed: NetBed, terminal: str, since: int = 0) -> set[str]:
    """From coturn's own log: how the allocations of ``terminal`` that carried media (a CHANNEL_BIND, not a mere
    probe) reached coturn: ``tls`` (the session line names a cipher) or ``udp/tcp``."""
    kinds: dict[str, str] = {}
    used: set[str] = set()
    for line in bed.turn_log_text()[since:].splitlines():
        m = re.search(r"session (\d+): new, realm=<[^>]*>, username=<\d+:([^>]+)>", line)
        if m and m.group(2) == terminal:
            kinds[m.group(1)] = "tls" if "cipher=" in line else "udp/tcp"
        m = re.search(r"session (\d+): .*CHANNEL_BIND processed, success", line)
        if m:
            used.add(m.group(1))
    return {kind for sid, kind in kinds.items() if sid in used}


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
        c, s = media_path(counter, STATION_ID), media_path(station, COUNTER_ID)
        assert "relay" in (c["local"], c["remote"]), c  # the symmetric NAT needs TURN
        assert c["local"] != "relay" or c["transport"] == "udp"
        assert s["local"] != "relay" or s["transport"] == "udp"
    finally:
        stop_all(counter, station)


def test_web_only_town_any_url_order_shows_pictures_over_turns(clean_town: NetBed) -> None:
    """The town lets only TCP 443 and 8765 out, turn_urls list turn:…udp first (the documented order): the station
    finds TURN over TLS 443 works (its probe says UDP timed out), the call shows pictures both ways, the station's
    media goes over relay/tls (coturn saw a TLS allocation for it), and answer → first frame stays under 3 s."""
    bed = clean_town
    mark = len(bed.turn_log_text())
    bed.web_only_town()
    station = peer(bed, "station", "station-web")
    counter = peer(bed, "counter", "counter-web")
    try:
        probes = next(e for e in station.events if e["event"] == "paths")
        udp_url = next(u for u in probes["probes"] if u.startswith("turn:"))
        tls_url = next(u for u in probes["probes"] if u.startswith("turns:"))
        assert probes["probes"][udp_url]["failure"] == "timeout" and probes["probes"][tls_url]["ok"]
        assert probes["order"][0] == tls_url
        counter.send("call juumin")
        answered = counter.wait_event(lambda e: e["event"] == "member_joined", 20, "answered")
        first = counter.wait_event(lambda e: e["event"] == "first_frame" and e.get("track") == "camera", 20,
                                   "first camera frame")
        frames_from(counter, STATION_ID, "camera", 5, 30)
        frames_from(station, COUNTER_ID, "camera", 5, 30)
        s = media_path(station, COUNTER_ID)
        assert s["local"] == "relay" and s["transport"] == "tls", s
        assert turn_media_sessions(bed, STATION_ID, mark) == {"tls"}, bed.turn_log_text()[-3000:]
        print(f"answer -> first frame over TURN/TLS: {first['t'] - answered['t']:.3f} s")
        assert first["t"] - answered["t"] < 3.0
    finally:
        stop_all(counter, station)


def test_no_turn_fails_and_says_why(clean_town: NetBed) -> None:
    """Without any TURN server the two NATs cannot be crossed: kiosk call-test fails, and says that no TURN server
    is configured, instead of a bare 'connecting'."""
