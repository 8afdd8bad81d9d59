"""The call session's observer hooks and event log (kiosk.video.events), without peer connections."""

from __future__ import annotations

import asyncio

import pytest

from kiosk.video.events import EventKind, EventLog, Observers, SessionEvent


def test_observers_survive_a_failing_callback_and_unsubscribe() -> None:
    """A callback that raises is logged and the next one still runs; an unsubscribed callback is called no more."""
    seen: list[str] = []

    def broken(value: str) -> None:
        raise RuntimeError("observer bug")

    hub: Observers[str] = Observers("test")
    hub.subscribe(broken)
    unsubscribe = hub.subscribe(seen.append)
    hub.notify("a")
    unsubscribe()
    unsubscribe()  # twice is harmless
    hub.notify("b")
    assert seen == ["a"] and len(hub) == 1


async def test_async_observers_are_handed_to_the_spawner() -> None:
    """An observer returning a coroutine does not block the notifier: the coroutine goes to ``spawn``."""
    done = asyncio.Event()

    async def later(value: int) -> None:
        done.set()

    hub: Observers[int] = Observers("test")
    hub.subscribe(later)
    tasks: list[asyncio.Task[object]] = []
    hub.notify(1, lambda coro: tasks.append(asyncio.ensure_future(coro)))
    await asyncio.wait_for(done.wait(), 5)
    assert len(tasks) == 1


async def test_event_log_waits_for_past_and_future_events() -> None:
    """``wait`` finds a recorded event at once, waits for a future one, and names what it saw when it times out."""
    log = EventLog()
    log.record(SessionEvent(EventKind.MEMBER_JOINED, member="office-1"))
    past = await log.wait(
        EventKind.MEMBER_JOINED, member="office-1", track=None, timeout=1, past=True, where=lambda: "t"
    )
    assert past.member == "office-1"
    future = asyncio.ensure_future(
        log.wait(EventKind.FIRST_FRAME, member=None, track="camera", timeout=10, past=True, where=lambda: "t")
    )
    await asyncio.sleep(0)
    log.record(SessionEvent(EventKind.FIRST_FRAME, member="office-1", track="audio"))
    assert not future.done()
    log.record(SessionEvent(EventKind.FIRST_FRAME, member="office-1", track="camera"))
    assert (await asyncio.wait_for(future, 5)).track == "camera"
    with pytest.raises(TimeoutError, match=r"counter-1: no 'ended' event.*member_joined"):
        await log.wait(
            EventKind.ENDED, member=None, track=None, timeout=0.05, past=False, where=lambda: "counter-1"
        )
