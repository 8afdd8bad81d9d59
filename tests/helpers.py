"""Shared test helpers: a relay config with known tokens, a relay in-process or as a process, a plain client."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from common import protocol
from common.messages import ServerMessage
from kiosk.machine import RelayMessage
from relay_server.admin.settings import FleetSettings
from relay_server.config import RelayConfig, load_relay_config

ROOT = Path(__file__).resolve().parent.parent
DEMO_RELAY_CONFIG = ROOT / "config" / "relay.toml"

# Tokens of the demo terminals (config/*.toml); their hashes are in config/relay.toml.
TOKENS = {
    "counter-sapporo-1": "demo-counter-1-e8b1c2",
    "office-tobetsu-1": "demo-office-1-5f0a9d",
    "office-tobetsu-2": "demo-office-2-7c3e41",
    "lamp-tobetsu-1": "demo-lamp-1-2b9d60",
}
COUNTER, OFFICE1, OFFICE2, LAMP = TOKENS


def server_msg(msg: Mapping[str, Any]) -> ServerMessage:
    """A relay message as a terminal's handlers get it: parsed and validated on arrival as the relay client does
    (a test message that breaks common/messages.py fails here, as it would be skipped in the field)."""
    return protocol.parse_server(protocol.encode(msg))


def relay_msg(msg: Mapping[str, Any]) -> RelayMessage:
    """The state machines' event for one relay message, validated as :func:`server_msg` does."""
    return RelayMessage(server_msg(msg))


def make_relay_config(**overrides: Any) -> RelayConfig:
    """The demo relay config (4 departments, always open) with an in-memory log, port 0 and any overrides."""
    cfg = load_relay_config(DEMO_RELAY_CONFIG)
    overrides.setdefault("database", "")
    overrides.setdefault("port", 0)
    overrides.setdefault("fleet", FleetSettings())  # the fleet page off (tests/fleet_support.py turns it on)
    return replace(cfg, **overrides)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005) -> None:
    """Poll ``predicate`` until true; fail with a clear message after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


class WsClient:
    """A bare protocol client for relay tests: send dicts, receive dicts, wait for a type."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def open(
        cls, url: str, terminal: str | None = None, token: str | None = None, expect_welcome: bool = True
    ) -> WsClient:
        ws = await connect(url, open_timeout=5)
        client = cls(ws)
        if terminal is not None or token is not None:
            await client.send({"type": "hello", "token": token or TOKENS[terminal or ""], "protocol": 1})
            if expect_welcome:
                client.welcome = await client.expect("welcome")
        return client

    async def send(self, msg: dict[str, Any] | str) -> None:
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    async def expect(self, kind: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Next message of type ``kind`` (matching ``fields``); others are kept in ``inbox``."""
        for i, m in enumerate(self.inbox):
            if m["type"] == kind and all(m.get(k) == v for k, v in fields.items()):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no '{kind}' {fields or ''} within {timeout} s; got {self.inbox}")
            try:
                m = await self.recv(left)
            except TimeoutError:
                continue
            if m["type"] == kind and all(m.get(k) == v for k, v in fields.items()):
                return m
            self.inbox.append(m)

    async def close(self) -> None:
        await self.ws.close()


class RelayProcess:
    """``relay-server`` as a real process on 127.0.0.1 with a random port."""

    def __init__(self, config_path: Path, port: int = 0, extra_env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.requested_port = port
        self.env = {**os.environ, **(extra_env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0

    def start(self, timeout: float = 15.0) -> RelayProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relay_server",
                "--config",
                str(self.config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.requested_port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
        m = re.match(r"listening on (wss?://[^:]+:(\d+))", line)
        assert m, f"relay did not report its address: {line!r}"
        self.url, self.port = m.group(1), int(m.group(2))
        return self

    def stop(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        finally:
            for s in (self.proc.stdout, self.proc.stderr):
                if s:
                    s.close()

    def __enter__(self) -> RelayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_relay_config(
    tmp_path: Path, text_replacements: dict[str, str] | None = None, database: str | None = None
) -> Path:
    """A copy of the demo relay.toml in ``tmp_path`` with text replaced (for process-level tests)."""
    text = DEMO_RELAY_CONFIG.read_text()
    for old, new in (text_replacements or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    text = text.replace(
        'database = "../var/relay-demo.sqlite3"', f'database = "{database or tmp_path / "calls.sqlite3"}"'
    )
    p = tmp_path / "relay.toml"
    p.write_text(text)
    return p


def make_cert(tmp_path: Path, days: int = 90, name: str = "relay.test") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (IP SAN, usable as its own CA) and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


Coro = Callable[[], Awaitable[None]]
