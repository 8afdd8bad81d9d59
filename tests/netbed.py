"""A network test bed of two buildings, built from Linux network namespaces (test support, needs root).

::

     counter 198.18.11.10 ── router "sapporo" ──┐                ┌── "public" 198.18.0.10 (on its ``lo``)
                            (masquerade: cone)  ├─ 198.18.1/24 ──┤    relay-server on wss://:8765 (throw-away CA)
     station 198.18.12.10 ── router "town" ─────┴─ 198.18.2/24 ──┘    coturn: UDP/TCP 3478, TLS 443
                            (masquerade random,fully-random: symmetric)  default route to "inet", a sink

Every address is from 198.18.0.0/15; nothing leaves the machine. The two LANs (198.18.11/24, 198.18.12/24)
are not routed in the public namespace, exactly like private networks behind NAT. Namespace names carry
the pid (``nb<pid>pub`` …) so parallel runs never collide; :meth:`NetBed.close` removes every namespace
and process even after a failure (and tolerates a half-built bed).

The town router's ``forward`` chain has named hooks the scenarios switch on and off: web-only
(:meth:`NetBed.web_only_town`: only TCP 443 and 8765 out), a cut uplink (:meth:`NetBed.cut_town`),
packet loss (:meth:`NetBed.set_loss`, nftables ``numgen``; this kernel has no netem) and a slow uplink
(:meth:`NetBed.set_uplink`, ``tc tbf``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = (
    str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
)

PUBLIC_IP = "198.18.0.10"
COUNTER_IP = "198.18.11.10"
STATION_IP = "198.18.12.10"
SAPPORO_WAN = "198.18.1.2"
TOWN_WAN = "198.18.2.2"
RELAY_PORT = 8765
TURN_SECRET = "netbed-static-auth-secret"
COUNTER_TOKEN = "netbed-counter-token-1"
STATION_TOKEN = "netbed-station-token-1"


class NetBedUnavailable(RuntimeError):
    """This machine cannot build the bed (not root, no ``ip netns``, no nft, no coturn); the message says which."""


def require_netbed() -> None:
    """Raise :class:`NetBedUnavailable` with the reason when the bed cannot be built here."""
    if os.geteuid() != 0:
        raise NetBedUnavailable(
            "the network test bed needs root (network namespaces, nftables); CI runs as root"
        )
    for tool in ("ip", "nft", "tc", "conntrack", "turnserver"):
        if shutil.which(tool) is None:
            raise NetBedUnavailable(
                f"the network test bed needs '{tool}' (scripts/setup installs iproute2, "
                "nftables, conntrack and coturn)"
            )
    probe = f"nbprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        raise NetBedUnavailable(f"'ip netns add' does not work here: {r.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _run(argv: Sequence[str], *, input: str | None = None, check: bool = True) -> str:
    r = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
        )
    return r.stdout


def make_ca(directory: Path, *, ip: str = PUBLIC_IP) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for ``ip`` (and ``turn.netbed.test``) signed by it.

    Returns:
        (ca.pem, server.pem, server.key)
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netbed throw-away CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "turn.netbed.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("turn.netbed.test"), x509.IPAddress(ipaddress.ip_address(ip))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_pem.chmod(0o644)  # coturn may drop privileges before reading it
    return ca_pem, cert_pem, key_pem


@dataclass
class Proc:
    """A process started in a namespace; its stdout lines are collected by a thread (JSON lines decoded)."""

    name: str
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _new: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def start_reader(self) -> None:
        def read(stream: IO[str]) -> None:
            for line in stream:
                line = line.rstrip("\n")
                self.lines.append(line)
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        ev = json.loads(line)
                        ev["_rx"] = time.monotonic()  # when this process read it (one clock for a scenario)
                        self.events.append(ev)
                        self._new.put(ev)

        assert self.popen.stdout is not None
        threading.Thread(target=read, args=(self.popen.stdout,), daemon=True).start()

    def send(self, command: str) -> None:
        """Write one command line to the process's stdin."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(command + "\n")
        self.popen.stdin.flush()

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str = ""
    ) -> dict[str, Any]:
        """The first event (past or future) for which ``match`` is true; AssertionError after ``timeout``."""
        for ev in list(self.events):
            if match(ev):
                return ev
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                ev = self._new.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.popen.poll() is not None and self._new.empty():
                    time.sleep(0.2)  # let the reader thread finish the last lines
                    if self._new.empty():
                        break
                continue
            if match(ev):
                return ev
        tail = "\n".join(self.lines[-25:])
        raise AssertionError(
            f"{self.name}: no event {what or ''} within {timeout} s "
            f"(exit {self.popen.poll()}); last output:\n{tail}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


class NetBed:
    """The namespaces, routers, relay and coturn; use as a context manager (``close`` always cleans up)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        tag = f"nb{os.getpid()}"
        self.ns = {role: f"{tag}{role}" for role in ("pub", "rs", "rt", "cs", "st", "inet")}
        self.procs: list[Proc] = []
        self.relay: Proc | None = None
        self.turn: subprocess.Popen[str] | None = None
        self.turn_log = workdir / "turnserver.log"
        self.ca: Path | None = None
        self._built: list[str] = []

    # -- building ---------------------------------------------------------------------------------
    def __enter__(self) -> NetBed:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ip(self, ns: str, *args: str) -> str:
        return _run(["ip", "-n", self.ns[ns], *args])

    def nsexec(self, ns: str, *argv: str, check: bool = True, input: str | None = None) -> str:
        return _run(["ip", "netns", "exec", self.ns[ns], *argv], check=check, input=input)

    def nft(self, ns: str, script: str) -> None:
        self.nsexec(ns, "nft", "-f", "-", input=script)

    def _veth(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        _run(
            [
                "ip",
                "link",
                "add",
                a_if,
                "netns",
                self.ns[a],
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                self.ns[b],
            ]
        )
        self.ip(a, "addr", "add", a_addr, "dev", a_if)
        self.ip(b, "addr", "add", b_addr, "dev", b_if)
        self.ip(a, "link", "set", a_if, "up")
        self.ip(b, "link", "set", b_if, "up")

    def build(self) -> None:
        for role, name in self.ns.items():
            _run(["ip", "netns", "add", name])
            self._built.append(name)
            self.ip(role, "link", "set", "lo", "up")
        # public: server address on a dummy, default route into another dummy (coturn needs a default route)
        self.ip("pub", "addr", "add", f"{PUBLIC_IP}/32", "dev", "lo")
        self._veth("pub", "toinet", "198.19.255.1/24", "inet", "eth0", "198.19.255.2/24")
        self.ip("pub", "route", "add", "default", "via", "198.19.255.2")
        self._veth("pub", "tosap", "198.18.1.1/24", "rs", "wan", f"{SAPPORO_WAN}/24")
        self._veth("pub", "totown", "198.18.2.1/24", "rt", "wan", f"{TOWN_WAN}/24")
        self._veth("rs", "lan", "198.18.11.1/24", "cs", "eth0", f"{COUNTER_IP}/24")
        self._veth("rt", "lan", "198.18.12.1/24", "st", "eth0", f"{STATION_IP}/24")
        self.ip("rs", "route", "add", "default", "via", "198.18.1.1")
        self.ip("rt", "route", "add", "default", "via", "198.18.2.1")
        self.ip("cs", "route", "add", "default", "via", "198.18.11.1")
        self.ip("st", "route", "add", "default", "via", "198.18.12.1")
        for r in ("rs", "rt"):
            self.nsexec(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.nft(
            "rs",
            """table ip nat {
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "wan" masquerade
    }
}
""",
        )
        # The town: a symmetric NAT, and a forward chain whose 'policy' set and 'loss' rule the scenarios change.
        self.nft(
            "rt",
            """table ip nat {
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "wan" masquerade random,fully-random
    }
}
table inet bed {
    chain forward_in {
        type filter hook forward priority filter; policy accept;
        jump cut
        jump lossy
        ct state established,related accept
        iifname "lan" jump outbound
    }
    chain cut {
    }
    chain lossy {
    }
    chain outbound {
    }
}
""",
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca, cert, key = make_ca(self.workdir)
        self._start_coturn(cert, key)
        self.start_relay(RELAY_PORT, turn=True)

    def _start_coturn(self, cert: Path, key: Path) -> None:
        conf = self.workdir / "turnserver.conf"
        conf.write_text(f"""listening-ip={PUBLIC_IP}
relay-ip={PUBLIC_IP}
listening-port=3478
tls-listening-port=443
fingerprint
use-auth-secret
static-auth-secret={TURN_SECRET}
realm=netbed.test
cert={cert}
pkey={key}
min-port=49152
max-port=65535
no-cli
no-dtls
no-multicast-peers
simple-log
verbose
log-file={self.turn_log}
pidfile={self.workdir / "turnserver.pid"}
userdb={self.workdir / "turndb"}
""")
        self.turn = subprocess.Popen(
            ["ip", "netns", "exec", self.ns["pub"], "turnserver", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._wait_listening("pub", ["3478", "443"], what="coturn", proto="-tln")

    def _wait_listening(
        self, ns: str, ports: list[str], *, what: str, proto: str, timeout: float = 20.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.nsexec(ns, "ss", "-H", proto, check=False)
            if all(re.search(rf":{p}\b", out) for p in ports):
                return
            time.sleep(0.1)
        log = self.turn_log.read_text(errors="replace")[-2000:] if self.turn_log.exists() else ""
        raise RuntimeError(
            f"{what} did not listen on {ports} in namespace {self.ns[ns]} within {timeout} s\n{log}"
        )

    def start_relay(self, port: int, *, turn: bool) -> Proc:
        """A relay-server on ``wss://PUBLIC_IP:port`` (certificate from the bed's CA); with ``turn`` it hands out
        coturn's URLs in the documented order (UDP first, then TLS 443) with REST-API credentials."""
        from relay_server.config import hash_token

        cert, key = self.workdir / "server.pem", self.workdir / "server.key"
        cfg = self.workdir / f"relay-{port}.toml"
        ice = (
            f"""turn_secret = "{TURN_SECRET}"
turn_urls = ["turn:{PUBLIC_IP}:3478?transport=udp", "turns:{PUBLIC_IP}:443?transport=tcp"]"""
            if turn
            else ""
        )
        cfg.write_text(f"""[server]
host = "{PUBLIC_IP}"
port = {port}
tls_cert = "{cert}"
tls_key = "{key}"
grace_period = 40

[ice]
{ice}

[[office]]
id = "tobetsu"
name = {{ ja = "当別町役場", en = "Tobetsu Town Office" }}
timezone = "Asia/Tokyo"

[[department]]
id = "juumin"
name = {{ ja = "住民課", en = "Residents Division" }}
hours = "always"
fallback = {{ phone = "0133-23-2223", hours_ja = "平日", hours_en = "Weekdays" }}

[[terminal]]
id = "counter-sapporo-1"
role = "counter"
token_hash = "{hash_token(COUNTER_TOKEN)}"

[[terminal]]
id = "office-tobetsu-1"
role = "office"
departments = ["juumin"]
token_hash = "{hash_token(STATION_TOKEN)}"
""")
        relay = self.spawn("pub", [PYTHON, "-m", "relay_server", "--config", str(cfg)], name=f"relay-{port}")
        self._wait_listening("pub", [str(port)], what="relay-server", proto="-tln")
        if self.relay is None:
            self.relay = relay
        return relay

    # -- processes --------------------------------------------------------------------------------
    def spawn(self, ns: str, argv: Sequence[str], *, name: str, env: dict[str, str] | None = None) -> Proc:
        """Start ``argv`` inside namespace ``ns`` (stdout collected; stderr to ``workdir/NAME.log``)."""
        full_env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            KIVY_NO_ARGS="1",
            KIVY_NO_CONSOLELOG="1",
            KIVY_NO_FILELOG="1",
            PYTHONPATH=str(ROOT),
        )
        full_env.update(env or {})
        err = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        popen = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[ns], *argv],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=err,
            text=True,
            env=full_env,
            cwd=ROOT,
            start_new_session=True,
        )
        err.close()
        proc = Proc(name, popen)
        proc.start_reader()
        self.procs.append(proc)
        return proc

    def terminal_config(
        self,
        role: str,
        *,
        ca: bool = True,
        extra: str = "",
        port: int = RELAY_PORT,
        ice_ip: str | None = None,
        suffix: str = "",
    ) -> Path:
        """A counter or office TOML for the bed (small synthetic video, ICE on the LAN address)."""
        token, ip = (COUNTER_TOKEN, COUNTER_IP) if role == "counter" else (STATION_TOKEN, STATION_IP)
        ip = ice_ip or ip
        doc = (
            """
[document_camera]
source = "synthetic:document"
width = 640
height = 480
fps = 2
"""
            if role == "counter"
            else ""
        )
        path = self.workdir / f"{role}-{port}{'' if ca else '-noca'}{suffix}.toml"
        path.write_text(f"""[relay]
url = "wss://{PUBLIC_IP}:{port}"
token = "{token}"
{f'ca_file = "{self.ca}"' if ca else ""}

[camera]
source = "synthetic:camera"
width = 320
height = 180
fps = 10
{doc}
[audio]
input = "synthetic:tone"
output = "null"

[network]
ice_addresses = ["{ip}"]
{extra}
""")
        return path

    def peer(
        self, role: str, name: str, *, port: int = RELAY_PORT, ns: str | None = None, timeout: float = 30
    ) -> Proc:
        """Start ``tests/netbed_peer.py`` (``counter`` or ``station``) and wait until it is welcomed and has probed
        its TURN paths. ``ns`` puts it elsewhere than its own LAN (e.g. a station on the counter's LAN: host path)."""
        kind = "counter" if role == "counter" else "office"
        where = ns or ("cs" if role == "counter" else "st")
        ip = COUNTER_IP if where == "cs" else STATION_IP
        extra_name = "" if ns is None else f"-in-{ns}"
        cfg = self.terminal_config(kind, port=port, ice_ip=ip, suffix=extra_name)
        proc = self.spawn(
            where, [PYTHON, str(ROOT / "tests" / "netbed_peer.py"), role, "--config", str(cfg)], name=name
        )
        proc.wait_event(lambda e: e["event"] == "paths", timeout, "ready and paths probed")
        return proc

    def log_of(self, name: str) -> str:
        p = self.workdir / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # -- scenario switches (town router) ----------------------------------------------------------
    def web_only_town(self) -> None:
        """The town's firewall lets only TCP 443 and 8765 out (all UDP dropped)."""
        self.nft(
            "rt",
            """flush chain inet bed outbound
add rule inet bed outbound tcp dport { 443, 8765 } accept
add rule inet bed outbound drop
""",
        )

    def cut_town(self) -> None:
        """Cut the town's uplink: every forwarded packet is dropped (both ways)."""
        self.nft("rt", "add rule inet bed cut drop\n")

    def restore_town(self, *, new_mapping: bool = True) -> None:
        """Restore the uplink; with ``new_mapping`` the NAT forgets its mappings (as after a router restart)."""
        self.nft("rt", "flush chain inet bed cut\n")
        if new_mapping:
            self.nsexec("rt", "conntrack", "-F", check=False)

    def set_loss(self, percent: int) -> None:
        """Drop ``percent`` % of the town's forwarded packets, at random, both ways (0 = none)."""
        script = "flush chain inet bed lossy\n"
        if percent:
            script += f"add rule inet bed lossy numgen random mod 100 < {percent} drop\n"
        self.nft("rt", script)

    def set_uplink(self, rate: str | None) -> None:
        """Limit the town's link with ``tc tbf`` (e.g. ``"1mbit"``; None = unlimited): the router's WAN egress (the
        uplink) and its LAN egress (what reaches the station), so both directions of a call are limited."""
        for dev in ("wan", "lan"):
            self.nsexec("rt", "tc", "qdisc", "del", "dev", dev, "root", check=False)
            if rate:
                self.nsexec(
                    "rt",
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    rate,
                    "burst",
                    "32kbit",
                    "latency",
                    "400ms",
                )

    def turn_log_text(self) -> str:
        return self.turn_log.read_text(errors="replace") if self.turn_log.exists() else ""

    # -- teardown ---------------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.stop()
        if self.turn is not None and self.turn.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.turn.pid, signal.SIGTERM)
            try:
                self.turn.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.turn.pid, signal.SIGKILL)
                self.turn.wait(5)
        for name in self._built:
            # Anything still running in the namespace (a child that escaped) is killed before it goes.
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._built.clear()
