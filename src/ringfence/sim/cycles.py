"""The three cycles of every simulated host's agent, on the host's grid (`tick_origin + k x
heartbeat_interval`), as the real runtime runs them in three threads:

- the heartbeat cycle (`Agent.beat`): heartbeats, the lease guard, the watchdog pet; it never
  calls the store and runs at every slot, whatever the others are waiting for;
- the lease cycle (`Agent.keep_leases`): registration while the host has no lease, then
  keepalives of the host lease, when due (`Agent.next_lease_due`); the manager lease is kept
  by the decision cycle (`Manager._lead`), so that a host whose decisions are slow gives the
  leadership to one whose decisions run;
- the decision cycle (`Agent.tick`): probes, forced starts, VMs, the manager.

The lease and decision cycles run in greenlets, so that their calls can take simulated time
(`sim.calls`): a waiting cycle is resumed when its call answers, while the world goes on. A
cycle that overran skips the slots it missed. A hung or stalled host runs nothing; when it
runs again, each cycle that missed a slot runs at once, and each call that answered meanwhile
returns. A host that loses power loses its cycles (their greenlets are ended).

Order within one instant: heartbeat, then decision, then lease (the order they were first
scheduled in, kept by the event heap's insertion order).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from greenlet import GreenletExit, getcurrent, greenlet

if TYPE_CHECKING:
    from ringfence.sim.world import SimHost, World

Kind = Literal["decision", "lease"]


class Cycles:
    def __init__(self, world: World) -> None:
        self.world = world
        self.interval = world.config.timing.heartbeat_interval

    # ----------------------------------------------------------------- scheduling
    def start(self, host: SimHost) -> None:
        boot = host.boot
        at = self.world.at
        at(host.tick_origin, lambda: self._beat(host, boot))
        at(host.tick_origin, lambda: self._run(host, boot, "decision"))
        at(host.tick_origin, lambda: self._run(host, boot, "lease"))

    def _next_slot(self, host: SimHost, count: str) -> float:
        """The next grid slot after now (counted per cycle, so that none drifts)."""
        done = max(host.counts.get(count, 0) + 1,
                   int((self.world.now - host.tick_origin) / self.interval) + 1)
        host.counts[count] = done
        return host.tick_origin + done * self.interval

    def _runs(self, host: SimHost, boot: int, kind: str) -> bool:
        """May this cycle run now? A hung or stalled host notes it missed the slot."""
        if host.boot != boot or host.agent is None:
            return False
        if not self.world.executes(host):
            if host.power_up_or_hung:
                host.missed.add(kind)
            return False
        return True

    # ----------------------------------------------------------------- heartbeat cycle
    def _beat(self, host: SimHost, boot: int) -> None:
        if not self._runs(host, boot, "beat"):
            return
        assert host.agent is not None
        host.agent.beat()
        self.world.record_states(host)
        self.world.at(self._next_slot(host, "beat"), lambda: self._beat(host, boot))

    # ----------------------------------------------------------------- lease and decision
    def _run(self, host: SimHost, boot: int, kind: str) -> None:
        if not self._runs(host, boot, kind):
            return
        if kind in host.cycles:
            return  # the last one still waits in a call: this slot is skipped
        agent = host.agent
        assert agent is not None
        work: Callable[[], object] = agent.tick if kind == "decision" else agent.keep_leases
        cycle = greenlet(work)
        host.cycles[kind] = cycle
        cycle.switch()
        self._after_switch(host, boot, kind)

    def _after_switch(self, host: SimHost, boot: int, kind: str) -> None:
        """Back from a host's cycle: it ended, or it waits in a call."""
        cycle = host.cycles.get(kind)
        if cycle is None or not cycle.dead:
            return
        del host.cycles[kind]
        if host.boot != boot or host.agent is None:
            return
        self.world.record_states(host)
        if kind == "decision":
            at = self._next_slot(host, kind)
        else:
            # When it is next due (on the host's clock), at a slot of the grid; with nothing
            # to keep yet (not registered), it looks again at the next slot.
            due = host.agent.next_lease_due() / self.world.clock_rate(host.name)
            at = self._slot_at_or_after(host, due)
        self.world.at(at, lambda: self._run(host, boot, kind))

    def _slot_at_or_after(self, host: SimHost, t: float) -> float:
        """The first grid slot at or after `t`, and after now."""
        now_slot = math.floor((self.world.now - host.tick_origin) / self.interval + 1e-9) + 1
        wanted = (math.ceil((t - host.tick_origin) / self.interval - 1e-9)
                  if math.isfinite(t) else now_slot)
        return host.tick_origin + max(now_slot, wanted) * self.interval

    # ----------------------------------------------------------------- calls that wait
    def cycle_of(self, host: SimHost) -> greenlet | None:
        """The host's cycle that is running now, if the caller is one of them."""
        current = getcurrent()
        return current if current in host.cycles.values() else None

    def suspend(self, host: SimHost, seconds: float) -> None:
        """The calling cycle waits `seconds` in a call (see `sim.calls`)."""
        cycle = getcurrent()
        kind = next(k for k, g in host.cycles.items() if g is cycle)
        assert cycle.parent is not None
        boot = host.boot
        self.world.at(self.world.now + seconds, lambda: self._resume(host, boot, kind, cycle))
        cycle.parent.switch()

    def _resume(self, host: SimHost, boot: int, kind: str, cycle: greenlet) -> None:
        if host.boot != boot or cycle.dead or host.cycles.get(kind) is not cycle:
            return
        if not self.world.executes(host):
            host.answered.add(kind)  # the answer is there; the agent runs again later
            return
        cycle.switch()
        self._after_switch(host, boot, kind)

    def kill(self, host: SimHost) -> None:
        """The host lost power while its cycles waited in calls: they end there."""
        cycles, host.cycles = host.cycles, {}
        host.answered.clear()
        host.missed.clear()
        for cycle in cycles.values():
            if not cycle.dead:
                cycle.throw(GreenletExit)

    def wake(self, host: SimHost) -> None:
        """The agent executes again (a hang resumed, a stall ended): what waited runs now."""
        boot = host.boot
        missed, host.missed = host.missed, set()
        answered, host.answered = host.answered, set()
        if "beat" in missed:
            self._beat(host, boot)
        for kind in ("decision", "lease"):
            cycle = host.cycles.get(kind)
            if kind in answered and cycle is not None:
                self._resume(host, boot, kind, cycle)
            elif kind in missed:
                self._run(host, boot, kind)
