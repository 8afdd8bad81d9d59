"""Delays between retries: exponential backoff with a cap, optional jitter and reset (pure: no I/O, no sleeping).

One shape for every retry loop of the project: the relay link (``kiosk/client.py``), a camera's capture thread
(``kiosk/devices/cameras.py``) and the lamp's serial port (``kiosk/devices/lamp.py``). A :class:`Backoff` is the
policy (frozen, from code or configuration); a :class:`Retry` is one loop's position in it. The loop asks
:meth:`Retry.next` for the delay after each failure, sleeps as it likes (``asyncio.sleep``, ``Event.wait``) and
calls :meth:`Retry.reset` once the thing works again. The random source is injected, so tests get exact delays.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "Retry"]

Uniform = Callable[[float, float], float]


@dataclass(frozen=True)
class Backoff:
    """Delays after failures: ``initial`` seconds, times ``factor`` after each further failure, at most ``maximum``.

    Attributes:
        initial: the delay after the first failure, in seconds.
        maximum: the largest delay, in seconds.
        factor: how much each further failure lengthens the delay.
        jitter: each delay is spread over ``delay * (1 ± jitter)`` (0 to 1; 0 keeps delays exact), so that many
            terminals cut off together do not all come back in the same instant.
    """

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(
                f"backoff needs 0 < initial <= maximum, got initial={self.initial} maximum={self.maximum}"
            )
        if self.factor < 1:
            raise ValueError(f"backoff factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {self.jitter}")

    @classmethod
    def of(cls, value: Backoff | tuple[float, float], *, jitter: float = 0.0) -> Backoff:
        """A policy from a :class:`Backoff` (returned as it is) or the short form ``(initial, maximum)``."""
        if isinstance(value, Backoff):
            return value
        initial, maximum = value
        return cls(initial=initial, maximum=maximum, jitter=jitter)

    def delay(self, failures: int) -> float:
        """The delay (without jitter) after ``failures`` failures in a row (1 for the first)."""
        if failures < 1:
            raise ValueError(f"failures counts from 1, got {failures}")
        delay = self.initial
        for _ in range(failures - 1):
            delay = min(delay * self.factor, self.maximum)
            if delay >= self.maximum:
                break
        return delay

    def start(self, uniform: Uniform = random.uniform) -> Retry:
        """A new :class:`Retry` at the start of this policy, drawing jitter from ``uniform(low, high)``."""
        return Retry(self, uniform)


class Retry:
    """One retry loop's position in a :class:`Backoff` (pure: it only counts and computes)."""

    def __init__(self, policy: Backoff, uniform: Uniform = random.uniform) -> None:
        self.policy = policy
        self.uniform = uniform
        self.failures = 0  # in a row, since the start or the last reset
        self.last = 0.0  # the last delay handed out, without jitter (0 before the first)

    def next(self) -> float:
        """Count one more failure and return the delay before the next attempt, without jitter."""
        self.failures += 1
        self.last = self.policy.delay(self.failures)
        return self.last

    def upcoming(self) -> float:
        """The delay the next failure will get, without counting one."""
        return self.policy.delay(self.failures + 1)

    def jittered(self, delay: float) -> float:
        """``delay`` spread by the policy's jitter (the value to sleep)."""
        spread = self.policy.jitter
        return delay * self.uniform(1 - spread, 1 + spread) if spread else delay

    def reset(self) -> None:
        """It worked: the next failure starts again from the initial delay."""
        self.failures = 0
        self.last = 0.0
