"""Time that calls take in the simulation: every call of a host's decision cycle to its store,
hypervisor or fence agents takes a latency on that host's clock, while the rest of the world
goes on.

The decision code is ordinary blocking code (`Agent.tick`), the same that the real runtime runs.
To let simulated time pass *inside* a call without changing that code, each host's decision
cycle runs in a greenlet (the `greenlet` library: the stack switching that gevent is built on):
a part that charges a latency schedules the cycle's continuation at `now + latency` and
switches back to the world's event loop; other hosts' events, faults, heartbeats and the same
host's heartbeat cycle run meanwhile; then the call returns. With no latency configured,
nothing switches and a cycle takes no time, as before.

Latencies: `sim.latency.<part>` (a value, or `{min, max}` drawn from the run's seeded random),
overridden while a `do: slow_calls` for that host (or `all`) and part is in force. `do:
lost_answers` makes a host's store writes apply but answer `StoreUnavailable`.

Calls made outside a decision cycle (the heartbeat cycle's self-fence, which must not wait)
take no time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ringfence.sim.scenario import CallPart, LatencyRange, SimSettings

if TYPE_CHECKING:
    from ringfence.sim.world import World


@dataclass(frozen=True, slots=True)
class SlowCalls:
    host: str  # or "all"
    part: CallPart
    latency: float
    until: float


class Calls:
    def __init__(self, world: World, settings: SimSettings, seed: int) -> None:
        self.world = world
        self.settings = settings
        self.rng = random.Random(seed ^ 0x6C61_7465)  # its own stream: loss and jitter keep theirs
        self.slow: list[SlowCalls] = []
        self.lost_until: dict[str, float] = {}
        base = settings.latency
        self.base: dict[CallPart, float | LatencyRange] = {
            "store": base.store, "hypervisor": base.hypervisor, "fence": base.fence}
        self.any_latency = any(isinstance(v, LatencyRange) or v > 0 for v in self.base.values())

    def max_latency(self, part: CallPart) -> float:
        """The longest a call of `part` was ever configured to take (for the checker)."""
        value = self.base[part]
        worst = value.max if isinstance(value, LatencyRange) else value
        return max([worst, *(s.latency for s in self.slow if s.part == part)])

    def latency(self, host: str, part: CallPart) -> float:
        now = self.world.now
        for slow in reversed(self.slow):
            if slow.part == part and slow.host in (host, "all") and now < slow.until:
                return slow.latency
        value = self.base[part]
        if isinstance(value, LatencyRange):
            return self.rng.uniform(value.min, value.max)
        return value

    def charge(self, host: str, part: CallPart, extra: float = 0.0) -> None:
        """The calling cycle waits this call's latency (plus `extra`) of simulated time."""
        if not self.any_latency and not self.slow and extra <= 0:
            return
        self.wait(host, self.latency(host, part) + extra)

    def wait(self, host: str, seconds: float) -> None:
        sim_host = self.world.hosts[host]
        if seconds <= 0 or self.world.cycles.cycle_of(sim_host) is None:
            return
        self.world.suspend(sim_host, seconds)

    def answer_lost(self, host: str) -> bool:
        return self.world.now < self.lost_until.get(host, float("-inf"))
