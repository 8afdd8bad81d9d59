"""TURN path probes and the private CA for turns:, against a real coturn on 127.0.0.1 (no root needed)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection
from netbed import make_ca

from kiosk.video.ice import rtc_configuration
from kiosk.video.paths import parse_url
from kiosk.video.turnprobe import IcePathBook, apply_tls_context, probe_path, tls_context
from relay_server.core import turn_credentials

SECRET = "probe-test-secret"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Coturn:
    port: int
    tls_port: int
    ca: Path

    def servers(self, *, secret: str = SECRET, host: str = "127.0.0.1") -> list[dict[str, object]]:
        user, cred = turn_credentials(secret, "counter-test", time.time(), 600)
        return [
            {
                "urls": [
                    f"turn:{host}:{self.port}?transport=udp",
                    f"turn:{host}:{self.port}?transport=tcp",
                    f"turns:{host}:{self.tls_port}?transport=tcp",
                ],
                "username": user,
                "credential": cred,
            }
        ]


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    assert shutil.which("turnserver"), "coturn is missing: scripts/setup installs it (Debian package coturn)"
    d = tmp_path_factory.mktemp("coturn")
    ca, cert, key = make_ca(d, ip="127.0.0.1")
    port, tls_port = free_port(), free_port()
    (d / "turnserver.conf").write_text(f"""listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port={port}
tls-listening-port={tls_port}
fingerprint
use-auth-secret
static-auth-secret={SECRET}
realm=probe.test
cert={cert}
pkey={key}
no-cli
no-dtls
allow-loopback-peers
simple-log
log-file={d / "turn.log"}
pidfile={d / "turn.pid"}
userdb={d / "turndb"}
""")
    proc = subprocess.Popen(
        ["turnserver", "-c", str(d / "turnserver.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", tls_port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        f"coturn did not start: {(d / 'turn.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        yield Coturn(port, tls_port, ca)
    finally:
        proc.terminate()
        proc.wait(10)


async def test_probe_classifies_each_cause(coturn: Coturn) -> None:
    """UDP, TCP and TLS (with the private CA) allocate; the same TLS URL without the CA is 'tls_untrusted', a wrong
    secret 'unauthorized', a closed port 'refused', a certificate for another name 'tls_name'."""
    book = IcePathBook(coturn.servers(), ca_file=str(coturn.ca))
    results = await book.probe()
    assert {r.path.kind: r.ok for r in results} == {"udp": True, "tcp": True, "tls": True}, results
    assert [p.kind for p in book.ordered()] == ["udp", "tcp", "tls"]
    tls_path = next(p for p in book.turn if p.kind == "tls")
    untrusted = await probe_path(tls_path, context=tls_context(None))
    assert untrusted.failure == "tls_untrusted", untrusted
    assert "certificate is not trusted" in untrusted.explain()
    wrong = IcePathBook(coturn.servers(secret="not-the-secret"), ca_file=str(coturn.ca))
    assert {r.failure for r in await wrong.probe()} == {"unauthorized"}
    closed = parse_url(f"turn:127.0.0.1:{free_port()}?transport=tcp", "u", "c")
    assert (await probe_path(closed)).failure == "refused"
    other_name = IcePathBook(coturn.servers(host="localhost"), ca_file=str(coturn.ca))
    by_kind = {r.path.kind: r for r in await other_name.probe()}
    assert by_kind["tls"].failure == "tls_name", by_kind["tls"]


async def test_private_ca_reaches_the_peer_connections_turns_allocation(coturn: Coturn) -> None:
    """A peer connection given only the turns: path gathers a relay candidate when the private CA is applied,
    and none with the system store alone (aioice's own behaviour)."""
    server = coturn.servers()[0]
    tls_only = [
        {
            "urls": [str(server["urls"][2])],  # type: ignore[index]
            "username": server["username"],
            "credential": server["credential"],
        }
    ]

    async def relay_candidates(ca: Path | None) -> int:
        pc = RTCPeerConnection(rtc_configuration(tls_only))
        try:
            pc.createDataChannel("x")
            if ca is not None:
                assert apply_tls_context(pc, tls_context(str(ca))) == 1
            await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), 15)
            return pc.localDescription.sdp.count("typ relay")
        finally:
            await pc.close()

    assert await relay_candidates(coturn.ca) == 1
    assert await relay_candidates(None) == 0


async def test_doctor_advice_names_the_real_cause(coturn: Coturn) -> None:
    """kiosk doctor allocates on every TURN URL: with the private CA all pass and the summary names the UDP path;
    without it the turns: URL fails as an untrusted certificate (advice: ca_file), not as a closed port; a wrong
    secret is named as such; a closed port as refused."""
    from kiosk.doctor.ice import check_ice_servers

    ok = await check_ice_servers(coturn.servers(), ca_file=str(coturn.ca))
    assert all(r.ok for r in ok), ok
    assert ok[-1].name == "TURN paths" and "transport=udp" in ok[-1].detail

    untrusted = await check_ice_servers(coturn.servers())
    tls = next(r for r in untrusted if r.name.startswith("ICE server turns:"))
    assert not tls.ok and "not trusted" in tls.advice and "[relay] ca_file" in tls.advice
    assert "listens" not in tls.advice and untrusted[-1].ok  # UDP still works: calls are fine

    wrong = await check_ice_servers(coturn.servers(secret="not-the-secret"), ca_file=str(coturn.ca))
    assert all("turn_secret must equal coturn's static-auth-secret" in r.advice for r in wrong[:-1])
    assert not wrong[-1].ok and "show no picture" in wrong[-1].advice

    user, cred = turn_credentials(SECRET, "counter-test", time.time(), 600)
    closed = await check_ice_servers(
        [{"urls": f"turns:127.0.0.1:{free_port()}?transport=tcp", "username": user, "credential": cred}],
        ca_file=str(coturn.ca),
    )
    assert "connection refused" in closed[0].advice and "tls-listening-port" in closed[0].advice


def test_one_ca_file_is_trusted_for_relay_and_turn_alongside_the_system_store(coturn: Coturn) -> None:
    """[relay] ca_file adds the private CA to the system's CAs, the same way for wss:// and for turns:."""
    from kiosk.client import ssl_context_for
    from kiosk.config import RelayLink

    system = tls_context(None).cert_store_stats()["x509_ca"]
    relay = ssl_context_for(RelayLink("wss://relay.example.jp:8765", "t", str(coturn.ca)))
    assert relay is not None
    for ctx in (relay, tls_context(str(coturn.ca))):
        assert ctx.cert_store_stats()["x509_ca"] == system + 1


async def test_a_re_probe_does_not_hold_up_a_call_when_every_path_has_a_verdict() -> None:
    """The first probe is waited for (a call needs to know which path works); once every path has a verdict, a
    re-probe (each welcome, each failed attempt) runs in the background: wait_probed returns at once, although the
    probe of a silent server takes its whole timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # a TURN server that never answers
        silent.bind(("127.0.0.1", 0))
        url = f"turn:127.0.0.1:{silent.getsockname()[1]}?transport=udp"
        book = IcePathBook([{"urls": [url], "username": "u", "credential": "c"}], timeout=0.5)
        assert not book.known
        book.refresh()
        await book.wait_probed(10)
        assert not book.probing and book.known  # waited for the verdict
        assert book.results[url].failure == "timeout"
        again = book.refresh()
        await book.wait_probed(10)
        assert book.probing  # returned with the earlier verdict while the re-probe still runs
        await again
        assert book.results[url].failure == "timeout"
