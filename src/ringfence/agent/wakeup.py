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

Threads only: the cycle waits in `pause` on a `threading.Event` that `Nudge` sets. Every
wake of a thread or event loop costs CPU here (measured on the lab machine, issue 17: about
0.1 ms a wake of a sleeping thread, 0.3 ms a timer of an asyncio loop, 0.7 ms a cycle handed
to an executor and back), so the cycle runs in one thread from slot to slot and the event loop
that handles signals has nothing to do in between.
"""

from __future__ import annotations

import threading
import time

__all__ = ["MIN_GAP", "Nudge", "pause", "relay_changes", "request_stop"]

MIN_GAP = 0.02  # seconds between the starts of two woken decision cycles, at least


class Nudge:
    """Wakes the decision cycle from any thread (a signal handler of the event loop too);
    does nothing until `bind` names the cycle's wake event (the parts that nudge are built
    before the cycle runs). Never blocks and never raises."""

    def __init__(self) -> None:
        self._target: threading.Event | None = None
        self.count = 0  # how many times it was called (tests read it)

    def bind(self, wake: threading.Event) -> None:
        self._target = wake

    def unbind(self) -> None:
        self._target = None

    def __call__(self) -> None:
        self.count += 1
        target = self._target
        if target is not None:
            target.set()


def relay_changes(changed: threading.Event, nudge: Nudge, halt: threading.Event) -> None:
    """The hypervisor's life-cycle events (`LibvirtHypervisor.changed`: a guest crashed or its
    QEMU was killed) wake the decision cycle at once instead of at its next slot."""
    while not halt.is_set():
        if changed.wait(0.5):
            changed.clear()
            nudge()


def request_stop(stop: threading.Event, wake: threading.Event) -> None:
    """Stop the decision cycle: `stop`, and `wake` to end the pause it is in (a pause waits
    on `wake` alone, see `pause`)."""
    stop.set()
    wake.set()


def pause(stop: threading.Event, wake: threading.Event, delay: float,
          last_start: float | None = None) -> bool:
    """Wait `delay` seconds, or less if `wake` is set meanwhile (`request_stop` sets it with
    `stop`); a wake never ends the pause sooner than `MIN_GAP` after `last_start` (the
    monotonic start of the previous cycle), so that news arriving in a burst runs one cycle,
    not one per item. True if a wake, not a stop, ended it before its time (the slot it
    waited for is still ahead). The wake is used up."""
    deadline = time.monotonic() + delay
    try:
        wake.wait(max(0.0, delay))
        if not stop.is_set() and wake.is_set() and last_start is not None:
            early = last_start + MIN_GAP - time.monotonic()
            if early > 0:
                stop.wait(min(early, deadline - time.monotonic()))
        return not stop.is_set() and wake.is_set() and time.monotonic() < deadline
    finally:
        wake.clear()
