"""The terminals' relay client: TLS from the [relay] section, link states, reconnect after a relay restart."""

from __future__ import annotations

from pathlib import Path

from helpers import COUNTER, TOKENS, make_cert, make_relay_config, wait_until

from kiosk.client import LINK_UNAUTHORIZED, LINK_UP, RelayClient
from kiosk.config import RelayLink
from relay_server.server import RelayServer


async def test_wss_with_private_ca_file(tmp_path: Path) -> None:
    """A terminal whose [relay] ca_file names the relay's own CA connects over wss://."""
    cert, key = make_cert(tmp_path)
    async with RelayServer(make_relay_config(tls_cert=str(cert), tls_key=str(key))) as relay:
        assert relay.url.startswith("wss://")
        link = RelayLink(relay.url, TOKENS[COUNTER], ca_file=str(cert))
        async with RelayClient.for_link(link) as client:
            welcome = await client.wait_up(5)
        assert welcome["terminal"] == COUNTER


async def test_wrong_token_is_reported_as_unauthorized() -> None:
    """A rejected token shows as link state 'unauthorized' (what the kiosk's out-of-service screen explains)."""
    states: list[str] = []
    async with RelayServer(make_relay_config()) as relay:
        client = RelayClient(
            relay.url, "not-a-token", on_link=lambda s, d: states.append(s), backoff=(0.05, 0.1)
        )
        async with client:
            await wait_until(lambda: LINK_UNAUTHORIZED in states, 5)
        assert LINK_UP not in states


async def test_reconnects_after_relay_restart() -> None:
    """When the relay comes back on the same port, the client is welcomed again without help."""
    relay = await RelayServer(make_relay_config()).start()
    port = relay.port
    ups: list[str] = []
    client = RelayClient(relay.url, TOKENS[COUNTER], on_link=lambda s, d: ups.append(s), backoff=(0.05, 0.2))
    async with client:
        await client.wait_up(5)
        await relay.close()
        await wait_until(lambda: not client.up.is_set(), 5)
        relay = await RelayServer(make_relay_config()).start(port=port)
        try:
            await client.wait_up(10)
        finally:
            await relay.close()
    assert ups.count(LINK_UP) == 2
