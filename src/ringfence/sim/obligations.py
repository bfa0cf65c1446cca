"""What each host owes the safety argument, checked on what really happened.

Two violations, reported like split brain (issue: "honest time"):

- `stale_pet`: a host petted its watchdog while its lease was stale: more than
  `host_lease_ttl - safety_margin` (on its own clock) after the last renewal request that
  really succeeded, and it was not in failsafe. The watchdog would then not reset a host that
  may still run VMs after the store dropped its lease.
- `overdue_vm`: a VM still ran on a host after that host's own self-fence deadline: its lease
  stale as above, the host not in failsafe, and its agent executing (not hung, not stalled)
  for longer than a grace of two heartbeat intervals plus one hypervisor call since the lease
  went stale (or since it last resumed, or left failsafe). The agent must stop its VMs by then,
  whatever its store calls are doing.

Ground truth only: renewal times are when the simulated store applied a renewal (or the grant
of the lease a registration attached), not what the agent believes; runs come from the
simulated hypervisors; failsafe and "executing" are recorded by the world after every cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ringfence.sim.checker import Violation

if TYPE_CHECKING:
    from ringfence.sim.world import World


def safe_age(world: World) -> float:
    timing = world.config.timing
    return timing.host_lease_ttl - timing.safety_margin


def pet_violation(world: World, host: str) -> Violation | None:
    """Called at every pet: is this one on a stale lease?"""
    renewed = world.lives[host][-1][0]
    sim_host = world.hosts[host]
    if not renewed or (sim_host.agent is not None and sim_host.agent.failsafe):
        return None
    age = (world.now - renewed[-1]) * world.clock_rate(host)
    if age < safe_age(world) + 1e-6:  # the agent's own timer slack: float noise is no pet
        return None
    return Violation(None, (host,), world.now, world.now, kind="stale_pet", age=age)


def _segments(start: float, end: float, cuts: list[tuple[float, bool]]) -> list[tuple[float,
                                                                                     float]]:
    """Sub-intervals of [start, end) where the state given by `cuts` (time, ok) is ok."""
    out: list[tuple[float, float]] = []
    state = True
    t0 = start
    for t, ok in cuts:
        if t <= start:
            state = ok
            continue
        if t >= end:
            break
        if state and not ok:
            out.append((t0, t))
        if ok and not state:
            t0 = t
        state = ok
    if state:
        out.append((t0, end))
    return [(a, b) for a, b in out if b > a]


def overdue_vms(world: World, duration: float) -> list[Violation]:
    found: list[Violation] = []
    grace = 2 * world.config.timing.heartbeat_interval + world.calls.max_latency("hypervisor")
    for host in sorted(world.hosts):
        rate = world.clock_rate(host)
        runs = [r for r in world.runs if r.host == host and r.end is not None]
        if not runs:
            continue
        cuts = world.duty_cuts(host)  # (time, executing and not in failsafe)
        lives = world.lives[host]
        for n, (renewed, _began) in enumerate(lives):
            life_end = lives[n + 1][1] if n + 1 < len(lives) else duration
            for i, renewal in enumerate(renewed):
                stale_from = renewal + safe_age(world) / rate
                stale_to = renewed[i + 1] if i + 1 < len(renewed) else life_end
                for seg_start, seg_end in _segments(stale_from, stale_to, cuts):
                    due = seg_start + grace
                    for run in runs:
                        assert run.end is not None
                        start, end = max(run.start, due), min(run.end, seg_end)
                        if end > start:
                            found.append(Violation(run.vm, (host,), start, end,
                                                   kind="overdue_vm"))
    return found
