"""ICE set-up for aiortc: which local addresses to use, and which STUN/TURN servers.

Two facts about aiortc/aioice shape this module (see PLATFORM.md):

* aioice gathers host candidates from every interface **except** loopback, by calling
  ``aioice.ice.get_host_addresses``. A kiosk with several interfaces (office LAN, a management
  VPN, a USB modem) should offer only the one that reaches the other side, and tests, benchmarks
  and the demo must keep media on 127.0.0.1. :func:`restrict_ice_addresses` replaces that one
  function for the whole process with a filter driven by ``[network] ice_addresses``.
* ``RTCConfiguration(iceServers=None)`` makes aiortc add a public Google STUN server by itself,
  and an unreachable STUN server costs 5 s per call set-up. :func:`rtc_configuration` always
  passes an explicit list: the relay's ``welcome.ice_servers``, possibly empty (host candidates
  only, which is right on one network).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import aioice.ice
import ifaddr
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from common.logs import event

__all__ = [
    "IceConfigError",
    "current_ice_addresses",
    "ice_servers_from_welcome",
    "resolve_ice_addresses",
    "restrict_ice_addresses",
    "rtc_configuration",
]

log = logging.getLogger(__name__)

_ORIGINAL_GET_HOST_ADDRESSES: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_lock = threading.Lock()
_allowed: tuple[str, ...] = ()


class IceConfigError(ValueError):
    """An ``ice_addresses`` entry or an ICE server entry that cannot be used (the message says which)."""


def _interfaces() -> dict[str, list[str]]:
    """Map interface name → its IP addresses (IPv6 without scope), loopback included."""
    result: dict[str, list[str]] = {}
    for adapter in ifaddr.get_adapters():
        ips: list[str] = []
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                ips.append(ip.ip)
            else:
                ips.append(ip.ip[0])
        for name in {adapter.name, adapter.nice_name}:
            result.setdefault(str(name), []).extend(ips)
    return result


def resolve_ice_addresses(entries: Iterable[str]) -> tuple[str, ...]:
    """Turn ``[network] ice_addresses`` entries into IP addresses.

    Each entry is an IP address (``"127.0.0.1"``, ``"192.168.10.21"``, ``"::1"``) or an interface name
    (``"eth0"``: all of its addresses). Loopback addresses are kept when listed: that is the point.

    Raises:
        IceConfigError: an entry that is neither an IP address nor an interface of this machine.
    """
    interfaces: dict[str, list[str]] | None = None
    out: list[str] = []
    for entry in entries:
        entry = entry.strip()
        try:
            addr = str(ipaddress.ip_address(entry))
        except ValueError:
            if interfaces is None:
                interfaces = _interfaces()
            if entry not in interfaces:
                raise IceConfigError(
                    f"[network] ice_addresses: '{entry}' is neither an IP address nor a network interface "
                    f"of this machine (interfaces: {', '.join(sorted(interfaces)) or 'none'})"
                ) from None
            for ip in interfaces[entry]:
                if ip not in out and not ipaddress.ip_address(ip).is_link_local:
                    out.append(ip)
            continue
        if addr not in out:
            out.append(addr)
    return tuple(out)


def _restricted_get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Stand-in for ``aioice.ice.get_host_addresses`` that returns only the configured addresses."""
    allowed = _allowed
    if not allowed:
        return _ORIGINAL_GET_HOST_ADDRESSES(use_ipv4, use_ipv6)
    out = []
    for addr in allowed:
        version = ipaddress.ip_address(addr).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(addr)
    return out


def restrict_ice_addresses(entries: Sequence[str]) -> tuple[str, ...]:
    """Make every peer connection of this process gather host candidates only on ``entries``.

    An empty sequence restores aioice's default (every interface except loopback). The setting is
    process-wide because aioice looks the function up at gathering time; every terminal process has
    one ``[network]`` section, so that is the right scope. Calling it again with the same addresses
    is harmless (tests and in-process demos do).

    Returns:
        The resolved IP addresses now in force (empty = default behaviour).

    Raises:
        IceConfigError: an entry that is not an address or interface of this machine.
    """
    global _allowed
    resolved = resolve_ice_addresses(entries)
    with _lock:
        if _allowed and resolved and set(resolved) != set(_allowed):
            event(log, "ice_addresses_changed", logging.WARNING, old=_allowed, new=resolved)
        _allowed = resolved
        replacement = _restricted_get_host_addresses if resolved else _ORIGINAL_GET_HOST_ADDRESSES
        aioice.ice.get_host_addresses = replacement  # type: ignore[assignment,unused-ignore]
    return resolved


def current_ice_addresses() -> tuple[str, ...]:
    """The addresses :func:`restrict_ice_addresses` put in force (empty = aioice's default)."""
    return _allowed


def ice_servers_from_welcome(servers: Iterable[Mapping[str, Any]] | None) -> list[RTCIceServer]:
    """Convert ``welcome.ice_servers`` (``[{"urls", "username"?, "credential"?}]``) to aiortc objects.

    Raises:
        IceConfigError: an entry without ``urls`` or with a URL that is not stun:/stuns:/turn:/turns:.
    """
    out: list[RTCIceServer] = []
    for i, entry in enumerate(servers or ()):
        urls = entry.get("urls") if isinstance(entry, Mapping) else None
        if isinstance(urls, str):
            url_list = [urls]
        elif isinstance(urls, list) and urls and all(isinstance(u, str) for u in urls):
            url_list = list(urls)
        else:
            raise IceConfigError(
                f"welcome.ice_servers[{i}]: 'urls' must be a string or a list of strings, got {urls!r}"
            )
        for url in url_list:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise IceConfigError(
                    f"welcome.ice_servers[{i}]: '{url}' is not a stun:, stuns:, turn: or turns: URL"
                )
        out.append(
            RTCIceServer(
                urls=url_list if len(url_list) > 1 else url_list[0],
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
        )
    return out


def rtc_configuration(
    ice_servers: Iterable[Mapping[str, Any] | RTCIceServer] | None = None,
) -> RTCConfiguration:
    """An ``RTCConfiguration`` with an explicit server list, so aiortc never adds a public STUN server.

    Args:
        ice_servers: ``welcome.ice_servers`` dicts (or ready ``RTCIceServer`` objects); ``None`` or empty
            means host candidates only.

    All media of a peer connection share one transport (max-bundle): one ICE gathering instead of
    one per track, which halves set-up work on a busy kiosk.
    """
    servers: list[RTCIceServer] = []
    dicts: list[Mapping[str, Any]] = []
    for entry in ice_servers or ():
        if isinstance(entry, RTCIceServer):
            servers.append(entry)
        else:
            dicts.append(entry)
    servers += ice_servers_from_welcome(dicts)
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
