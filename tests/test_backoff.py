"""The shared backoff (common/backoff.py): delays, cap, jitter and reset, with the random source injected."""

from __future__ import annotations

import pytest

from common.backoff import Backoff, Retry


def test_delays_grow_by_the_factor_up_to_the_maximum() -> None:
    """After each failure the delay multiplies by the factor and then stays at the maximum."""
    retry = Backoff(initial=0.25, maximum=5.0).start()
    assert [retry.next() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry.failures == 7 and retry.last == 5.0
    assert [Backoff(initial=1.0, maximum=30.0, factor=3.0).delay(n) for n in (1, 2, 3, 4)] == [
        1.0,
        3.0,
        9.0,
        27.0,
    ]


def test_reset_starts_again_from_the_initial_delay() -> None:
    """Once the thing works again, the next failure waits only the initial delay."""
    retry = Backoff(initial=0.5, maximum=10.0).start()
    retry.next(), retry.next(), retry.next()
    assert retry.upcoming() == 4.0
    retry.reset()
    assert (retry.failures, retry.last, retry.upcoming()) == (0, 0.0, 0.5)
    assert retry.next() == 0.5


def test_jitter_spreads_each_delay_with_the_injected_random_source() -> None:
    """The sleep is the delay times a factor drawn in [1 - jitter, 1 + jitter] from the injected source."""
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    retry = Retry(Backoff(initial=2.0, maximum=10.0, jitter=0.2), uniform)
    assert retry.jittered(retry.next()) == pytest.approx(2.4)
    assert asked == [(pytest.approx(0.8), pytest.approx(1.2))]
    exact = Backoff(initial=2.0, maximum=10.0).start(uniform)
    assert exact.jittered(exact.next()) == 2.0 and len(asked) == 1  # no jitter: the source is not asked


def test_the_short_form_is_initial_and_maximum() -> None:
    """``(initial, maximum)`` is accepted wherever a Backoff is (the relay link's and the lamp's keyword)."""
    assert Backoff.of((0.05, 0.2)) == Backoff(initial=0.05, maximum=0.2)
    assert Backoff.of((0.25, 10.0), jitter=0.2) == Backoff(initial=0.25, maximum=10.0, jitter=0.2)
    policy = Backoff(initial=1.0, maximum=2.0)
    assert Backoff.of(policy, jitter=0.5) is policy


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"initial": 0.0}, "0 < initial <= maximum"),
        ({"initial": 5.0, "maximum": 1.0}, "0 < initial <= maximum"),
        ({"factor": 0.5}, "factor must be at least 1"),
        ({"jitter": 1.0}, "jitter must be in"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(kwargs: dict[str, float], message: str) -> None:
    """A zero or inverted delay range, a shrinking factor or a jitter of 100 % is an error naming the value."""
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
