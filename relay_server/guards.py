"""Small pure guards of the relay's edge: failed-login throttling and log-line limiting.

They hold no sockets and read no clock: the caller passes ``now`` (monotonic seconds), so tests drive them
directly.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Hashable


class AuthThrottle:
    """Failed ``hello``s per address: after ``free`` failures, each one is answered twice as late as the last.

    Only failures are delayed, so a valid token from the same address (another kiosk behind the same NAT) is
    never slowed down; guessing from one address drops from hundreds of attempts per second to one per
    ``cap`` seconds per open socket (and sockets per address are capped too). An address is forgiven after
    ``forget`` seconds without a failure.
    """

    def __init__(
        self,
        *,
        free: int = 3,
        base: float = 0.5,
        cap: float = 30.0,
        forget: float = 600.0,
        max_addresses: int = 10_000,
    ) -> None:
        self.free, self.base, self.cap, self.forget = free, base, cap, forget
        self.max_addresses = max_addresses
        self.failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failed(self, peer: str, now: float) -> float:
        """Record a failure from ``peer``; the seconds to wait before answering it."""
        count, last = self.failures.pop(peer, (0, now))
        if now - last > self.forget:
            count = 0
        count += 1
        self.failures[peer] = (count, now)
        while len(self.failures) > self.max_addresses:
            self.failures.popitem(last=False)  # the address that failed longest ago
        if count <= self.free:
            return 0.0
        return float(min(self.cap, self.base * 2 ** (count - self.free - 1)))


class LogLimiter:
    """At most one log line per key per ``interval`` seconds; counts the lines it held back."""

    def __init__(self, interval: float = 60.0, max_keys: int = 10_000) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self.seen: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def allow(self, key: Hashable, now: float) -> int | None:
        """``None``: hold this line back. Otherwise log it, saying that this many were held back before it."""
        last = self.seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self.seen[key] = (last[0], last[1] + 1)
            return None
        self.seen.pop(key, None)
        self.seen[key] = (now, 0)
        while len(self.seen) > self.max_keys:
            self.seen.popitem(last=False)
        return last[1] if last is not None else 0


class RepeatFilter(logging.Filter):
    """A logging filter: the same message template from one logger at most once per the limiter's interval."""

    def __init__(self, limiter: LogLimiter) -> None:
        super().__init__()
        self.limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        held = self.limiter.allow(("log", record.name, str(record.msg)), time.monotonic())
        if held is None:
            return False
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last minute)"
        return True
