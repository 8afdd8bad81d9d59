"""A network namespace of its own whose loopback loses a share of the UDP packets: real packet loss for the media
benchmark's "3 % loss" profile, without touching the machine's own network.

This kernel has no netem (PLATFORM.md), so the loss is made by nftables (``numgen random mod 100 < N drop`` on the
output hook of the namespace's loopback, UDP only: media, ICE and DTLS lose packets, the relay's websocket over TCP
does not). Every packet crosses the output hook once, so each direction loses N % independently. The relay, the
station and the counter run inside the namespace (``ip netns exec``), on its 127.0.0.1, exactly as in the clean
runs. Needs root; the namespace carries the process id in its name and is deleted on the way out, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LossUnavailable", "lossy_namespace"]


class LossUnavailable(RuntimeError):
    """The loss profile cannot run here (not root, no ``ip`` or ``nft``, namespaces refused)."""


RULES = """table inet bench_loss {{
    chain output_loss {{
        type filter hook output priority 0; policy accept;
        meta l4proto udp numgen random mod 100 < {percent} counter drop
    }}
}}
"""


def _run(*cmd: str, stdin: str | None = None) -> str:
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise LossUnavailable(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def dropped_packets(name: str) -> int:
    """UDP packets the namespace's rule has dropped so far (its nftables counter)."""
    out = _run("ip", "netns", "exec", name, "nft", "list", "chain", "inet", "bench_loss", "output_loss")
    for line in out.splitlines():
        if "counter packets" in line:
            return int(line.split("counter packets")[1].split()[0])
    return 0


@contextmanager
def lossy_namespace(percent: int = 3) -> Iterator[tuple[str, list[str]]]:
    """A fresh namespace ``bench-loss-<pid>`` with loopback up and ``percent`` % UDP loss.

    Yields ``(name, prefix)``: ``prefix + command`` runs a command inside it.
    """
    if os.geteuid() != 0:
        raise LossUnavailable("needs root (network namespaces and nftables)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise LossUnavailable(f"no {tool!r} command (apt-get install iproute2 nftables)")
    if not 0 <= percent <= 100:
        raise ValueError(f"loss percent must be 0–100, got {percent}")
    name = f"bench-loss-{os.getpid()}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "netns", "exec", name, "nft", "-f", "-", stdin=RULES.format(percent=percent))
        yield name, ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)
