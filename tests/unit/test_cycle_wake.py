"""The decision cycle's pause (`agent.runtime.pause`): its slot on the grid, or at once when
the hypervisor reports a life-cycle event (a guest crashed, its QEMU was killed) or the agent
is told to stop. Simulated waits only: no figure is asserted but which event ended it."""

from __future__ import annotations

import asyncio
import threading

from ringfence.agent.runtime import pause, relay_changes


def test_a_life_cycle_event_ends_the_pause_and_is_used_up() -> None:
    async def run() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        stop, wake = asyncio.Event(), asyncio.Event()
        changed, halt = threading.Event(), threading.Event()
        relay = threading.Thread(target=relay_changes, args=(changed, loop, wake, halt),
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


def test_a_stop_ends_the_pause() -> None:
    async def run() -> bool:
        stop, wake = asyncio.Event(), asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, stop.set)
        waited = asyncio.ensure_future(pause(stop, wake, 3600.0))
        done, _ = await asyncio.wait([waited], timeout=30)
        return waited in done

    assert asyncio.run(run())
