"""When the real runtime's decision cycle runs: at its slot on the grid, or at once when
something it waits for has happened.

The decision cycle polls: a fence's handle, a VM job, the store's records. Polled only at its
slots (every `heartbeat_interval`), each step of a failover waits up to a whole interval for
the cycle that notices it: a host lost by the heartbeat cycle, a fence agent that confirmed
off, a VM record another host wrote. Measured in the lab (issue 17), these waits were about
a third of a failover. So whoever sees such news wakes the cycle (`Nudge`), from any thread:

- the heartbeat cycle, when a peer changed state (`Agent.take_news`);
- a fence agent's thread, when its result is known (`FenceAgentRunner(on_done=...)`);
- the store's watch, when another host wrote (`store.etcd_watch.EtcdWatch`);
- libvirt's event thread, when a guest crashed (`relay_changes`).

A woken cycle is an ordinary cycle run early: the decision code is the same, it only sees the
news sooner. Woken cycles are at least `MIN_GAP` apart, so a burst of news costs a few cycles,
not one per message. The simulator runs its cycles on their slots, so it is never faster than
the real runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

__all__ = ["MIN_GAP", "Nudge", "pause", "relay_changes", "request_stop"]

MIN_GAP = 0.02  # seconds between the starts of two woken decision cycles, at least


class Nudge:
    """Wakes the decision cycle from any thread; does nothing until `bind` names the loop
    and its event (the parts that nudge are built before the loop runs). Never blocks and
    never raises: calling it after the loop closed is a no-op."""

    def __init__(self) -> None:
        self._target: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self.count = 0  # how many times it was called (tests read it)

    def bind(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        self._target = (loop, wake)

    def unbind(self) -> None:
        self._target = None

    def __call__(self) -> None:
        self.count += 1
        target = self._target
        if target is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            target[0].call_soon_threadsafe(target[1].set)


def relay_changes(changed: threading.Event, nudge: Nudge, halt: threading.Event) -> None:
    """The hypervisor's life-cycle events (`LibvirtHypervisor.changed`: a guest crashed or its
    QEMU was killed) wake the decision cycle at once instead of at its next slot."""
    while not halt.is_set():
        if changed.wait(0.5):
            changed.clear()
            nudge()


def request_stop(stop: asyncio.Event, wake: asyncio.Event) -> None:
    """Stop the decision cycle's loop: `stop`, and `wake` to end the pause it is in (a pause
    waits on `wake` alone, see `pause`)."""
    stop.set()
    wake.set()


async def pause(stop: asyncio.Event, wake: asyncio.Event, delay: float,
                last_start: float | None = None) -> bool:
    """Wait `delay` seconds, or less if `wake` is set meanwhile (`request_stop` sets it with
    `stop`); a wake never ends the pause sooner than `MIN_GAP` after `last_start` (the
    monotonic start of the previous cycle), so that news arriving in a burst runs one cycle,
    not one per item. True if a wake, not a stop, ended it before its time (the slot it
    waited for is still ahead).

    One event and one timer (`asyncio.timeout`), no tasks: waiting on `stop` and `wake` at
    once took two tasks, their cancellation and `asyncio.wait` five times a second, most of
    the event loop's idle CPU (issue 17)."""
    deadline = time.monotonic() + delay
    try:
        await _until(wake, delay)
        if not stop.is_set() and wake.is_set() and last_start is not None:
            early = last_start + MIN_GAP - time.monotonic()
            if early > 0:
                await asyncio.sleep(min(early, deadline - time.monotonic()))
        return not stop.is_set() and wake.is_set() and time.monotonic() < deadline
    finally:
        wake.clear()


async def _until(event: asyncio.Event, timeout: float) -> None:
    """Until `event` is set or `timeout` seconds have passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
