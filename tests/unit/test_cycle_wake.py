"""The decision cycle's pause (`agent.wakeup.pause`): its slot on the grid, or at once when
the hypervisor reports a life-cycle event (a guest crashed, its QEMU was killed), news arrives
from another thread, or the agent is told to stop. Real waits of a few milliseconds or
unbounded ones that must be ended: no figure is asserted but which event ended it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ringfence.agent.wakeup import MIN_GAP, Nudge, pause, relay_changes, request_stop


def _in_thread(work: Callable[[], bool]) -> tuple[bool, bool]:
    """Run `work` in a thread: (it ended within 30 s, what it returned)."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(30)
    return bool(result), bool(result and result[0])


def test_a_life_cycle_event_ends_the_pause_and_is_used_up() -> None:
    stop, wake = threading.Event(), threading.Event()
    changed, halt = threading.Event(), threading.Event()
    nudge = Nudge()
    nudge.bind(wake)
    relay = threading.Thread(target=relay_changes, args=(changed, nudge, halt), daemon=True)
    relay.start()
    try:
        changed.set()  # from libvirt's event thread
        ended, woken = _in_thread(lambda: pause(stop, wake, 3600.0))
        # The wake was used up: a pause with nothing new runs to its end.
        assert pause(stop, wake, 0.01) is False
    finally:
        halt.set()
        relay.join(5)
    assert ended, "the event did not end the pause"
    assert woken
    assert not wake.is_set()


def test_a_stop_ends_the_pause_and_is_not_taken_for_news() -> None:
    stop, wake = threading.Event(), threading.Event()
    threading.Timer(0.01, request_stop, args=(stop, wake)).start()  # the signal handler
    ended, woken = _in_thread(lambda: pause(stop, wake, 3600.0))
    assert ended, "the stop did not end the pause"
    assert not woken, "a stop was taken for news (the slot waited for is not still ahead)"


def test_a_stop_before_the_pause_ends_it_at_once() -> None:
    stop, wake = threading.Event(), threading.Event()
    request_stop(stop, wake)
    ended, _ = _in_thread(lambda: pause(stop, wake, 3600.0, last_start=time.monotonic()))
    assert ended and stop.is_set()


def test_a_nudge_from_another_thread_ends_the_pause_early() -> None:
    stop, wake = threading.Event(), threading.Event()
    nudge = Nudge()
    nudge()  # before bind: a no-op, nothing is woken
    early_before_bind = wake.is_set()
    nudge.bind(wake)
    threading.Timer(0.01, nudge).start()  # e.g. a fence agent's thread
    ended, woken = _in_thread(lambda: pause(stop, wake, 3600.0))
    nudge.unbind()
    nudge()
    assert ended and woken, "the pause did not end early, or did not say so"
    assert not (early_before_bind or wake.is_set())
    assert nudge.count == 3


def test_a_pause_that_runs_to_its_slot_is_not_woken() -> None:
    assert pause(threading.Event(), threading.Event(), 0.01) is False


def test_a_wake_right_after_a_cycle_waits_min_gap() -> None:
    stop, wake = threading.Event(), threading.Event()
    wake.set()
    start = time.monotonic()
    assert pause(stop, wake, 3600.0, last_start=start)
    assert time.monotonic() - start >= MIN_GAP
