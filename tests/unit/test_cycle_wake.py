"""The decision cycle's pause (`agent.runtime.pause`): its slot on the grid, or at once when
the hypervisor reports a life-cycle event (a guest crashed, its QEMU was killed) or the agent
is told to stop. Simulated waits only: no figure is asserted but which event ended it."""

from __future__ import annotations

import asyncio
import threading
import time

from ringfence.agent.wakeup import MIN_GAP, Nudge, pause, relay_changes, request_stop


def test_a_life_cycle_event_ends_the_pause_and_is_used_up() -> None:
    async def run() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        stop, wake = asyncio.Event(), asyncio.Event()
        changed, halt = threading.Event(), threading.Event()
        nudge = Nudge()
        nudge.bind(loop, wake)
        relay = threading.Thread(target=relay_changes, args=(changed, nudge, halt),
                                 daemon=True)
        relay.start()
        try:
            changed.set()  # from libvirt's event thread
            waited = asyncio.ensure_future(pause(stop, wake, 3600.0))
            done, _ = await asyncio.wait([waited], timeout=30)
            ended = waited in done
            # The wake was consumed: a pause with nothing new runs to its end.
            await pause(stop, wake, 0.01)
            return ended, wake.is_set()
        finally:
            halt.set()
            relay.join(5)

    ended, still_set = asyncio.run(run())
    assert ended, "the event did not end the pause"
    assert not still_set


def test_a_stop_ends_the_pause_and_is_not_taken_for_news() -> None:
    async def run() -> tuple[bool, bool]:
        stop, wake = asyncio.Event(), asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, request_stop, stop, wake)
        waited = asyncio.ensure_future(pause(stop, wake, 3600.0))
        done, _ = await asyncio.wait([waited], timeout=30)
        return waited in done, waited in done and waited.result()

    ended, woken = asyncio.run(run())
    assert ended, "the stop did not end the pause"
    assert not woken, "a stop was taken for news (the slot waited for is not still ahead)"


def test_a_stop_before_the_pause_ends_it_at_once() -> None:
    async def run() -> bool:
        stop, wake = asyncio.Event(), asyncio.Event()
        request_stop(stop, wake)
        await asyncio.wait_for(pause(stop, wake, 3600.0), 30)
        return stop.is_set()

    assert asyncio.run(run())


def test_a_nudge_from_another_thread_ends_the_pause_early() -> None:
    async def run() -> tuple[bool, bool, int]:
        loop = asyncio.get_running_loop()
        stop, wake = asyncio.Event(), asyncio.Event()
        nudge = Nudge()
        nudge()  # before bind: a no-op, nothing is woken
        early_before_bind = wake.is_set()
        nudge.bind(loop, wake)
        threading.Thread(target=nudge).start()  # e.g. a fence agent's thread
        woken = await asyncio.wait_for(pause(stop, wake, 3600.0), 30)
        nudge.unbind()
        nudge()
        return woken, early_before_bind or wake.is_set(), nudge.count

    woken, stray, count = asyncio.run(run())
    assert woken, "the pause did not end early, or did not say so"
    assert not stray
    assert count == 3


def test_a_pause_that_runs_to_its_slot_is_not_woken() -> None:
    async def run() -> bool:
        return await pause(asyncio.Event(), asyncio.Event(), 0.01)

    assert asyncio.run(run()) is False


def test_a_wake_right_after_a_cycle_waits_min_gap() -> None:
    async def run() -> float:
        stop, wake = asyncio.Event(), asyncio.Event()
        wake.set()
        start = time.monotonic()
        await pause(stop, wake, 3600.0, last_start=start)
        return time.monotonic() - start

    assert asyncio.run(run()) >= MIN_GAP
