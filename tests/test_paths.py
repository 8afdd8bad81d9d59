"""The pure rules of media paths: URL parsing, path order, the retry plan, silence and the reconnect window."""

from __future__ import annotations

import pytest

from kiosk.video.paths import (
    IcePath,
    PathPlan,
    ProbeResult,
    ReconnectWindow,
    SilenceWatch,
    order_paths,
    parse_url,
    split_ice_servers,
)

UDP = "turn:turn.example.jp:3478?transport=udp"
TCP = "turn:turn.example.jp:3478?transport=tcp"
TLS = "turns:turn.example.jp:443?transport=tcp"


def paths(*urls: str) -> list[IcePath]:
    return [parse_url(u, "u", "c") for u in urls]


def test_urls_parse_with_rfc_defaults() -> None:
    """Ports and transports default as RFC 7064/7065 say; turns: is TLS over TCP; a bad URL is refused by name."""
    assert parse_url("turn:h").port == 3478 and parse_url("turn:h").transport == "udp"
    assert parse_url("turns:h").port == 5349 and parse_url("turns:h").kind == "tls"
    assert parse_url(TCP).kind == "tcp" and parse_url(UDP).kind == "udp"
    assert parse_url("turn:[2001:db8::1]:3478").host == "2001:db8::1"
    with pytest.raises(ValueError, match="http://x"):
        parse_url("http://x")
    with pytest.raises(ValueError, match="transport=udp is impossible"):
        parse_url("turns:h:443?transport=udp")


def test_one_server_with_many_urls_becomes_one_path_per_url() -> None:
    """The relay's single ICE server with every TURN URL splits into separate paths, credentials kept."""
    stun, turn = split_ice_servers(
        [{"urls": ["stun:s"]}, {"urls": [UDP, TLS], "username": "1:t", "credential": "x"}]
    )
    assert [p.url for p in stun] == ["stun:s"]
    assert [p.url for p in turn] == [UDP, TLS]
    assert turn[1].server() == {"urls": [TLS], "username": "1:t", "credential": "x"}


def test_without_probes_udp_comes_before_tcp_before_tls_whatever_the_configured_order() -> None:
    """The configured order never decides: UDP first, then TCP, then TLS."""
    assert [p.kind for p in order_paths(paths(TLS, TCP, UDP))] == ["udp", "tcp", "tls"]


def test_probed_working_paths_come_first_failed_ones_last() -> None:
    """A blocked UDP path (probe timed out) goes after TLS that works; unprobed paths sit in between."""
    udp, tcp, tls = paths(UDP, TCP, TLS)
    results = {UDP: ProbeResult(udp, False, 3.0, "timeout"), TLS: ProbeResult(tls, True, 0.02)}
    assert order_paths([udp, tcp, tls], results) == [tls, tcp, udp]


def test_plan_gives_every_path_its_turn_and_records_why() -> None:
    """Each failed attempt moves its path to the back; the reasons are kept for the report."""
    udp, tcp, tls = paths(UDP, TCP, TLS)
    plan = PathPlan([udp, tcp, tls])
    assert plan.current() == udp
    assert plan.failed(udp, "not connected within 6 s") == tcp
    assert plan.failed(tcp, "no TURN allocation") == tls
    assert plan.failed(tls, "x") == udp
    assert plan.failures[0] == (UDP, "not connected within 6 s")
    assert PathPlan([]).current() is None


def test_plan_keeps_a_path_that_works_here_for_one_more_try() -> None:
    """An attempt that failed although our allocation worked keeps the path once (the other side is rotating its
    own); a second such failure in a row moves it to the back."""
    udp, tls = paths(UDP, TLS)
    plan = PathPlan([udp, tls])
    assert plan.failed(udp, "not connected within 6 s", own_fault=False) == udp
    assert plan.failed(udp, "not connected within 6 s", own_fault=False) == tls
    assert plan.failed(tls, "no TURN allocation within 5 s") == udp


def test_silence_watch_fires_only_after_the_silence() -> None:
    """A counter that keeps moving is alive; one that stands still for `silence` seconds means the path is down."""
    w = SilenceWatch(2.5)
    assert not w.feed(0.0, 10)
    assert not w.feed(1.0, 20)
    assert not w.feed(2.0, 20)
    assert not w.feed(3.0, 20)
    assert w.feed(3.5, 20)
    assert not w.feed(3.6, 21)


def test_silence_watch_does_not_blame_the_network_for_a_stalled_process() -> None:
    """If the watcher itself was not run for a while (CPU starved), the unchanged counter proves nothing."""
    w = SilenceWatch(2.5)
    assert not w.feed(0.0, 10)
    assert not w.feed(4.0, 10)  # 4 s between feeds: our own stall, not the network's
    assert not w.feed(4.5, 10) and not w.feed(5.5, 10) and not w.feed(6.0, 10)
    assert w.feed(6.5, 10)


def test_reconnect_window_runs_from_the_start_of_the_outage() -> None:
    """The window starts once per outage, expires after `window` seconds, and reports how long the outage was."""
    w = ReconnectWindow(window=30.0)
    assert not w.active and not w.expired(100.0)
    w.begin(10.0)
    w.begin(20.0)  # still the same outage
    assert w.left(25.0) == 15.0 and not w.expired(39.9) and w.expired(40.0)
    assert w.end(22.0) == 12.0 and not w.active
