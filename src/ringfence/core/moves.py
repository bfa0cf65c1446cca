"""Planned moves of running VMs (live migration) and admission control. Pure decisions.

Planned moves, in the order the manager considers them each cycle:
- **drain**: a host in maintenance gives away every VM (Proxmox's maintenance mode); each
  drained VM remembers its `home`, and goes back there when maintenance ends.
- **evacuate**: a `degraded` host (early warnings: link flaps, corrected memory errors) gives
  away its VMs when `policy.evacuate_degraded` is on (vSphere's Proactive HA).
- **return**: a VM whose `home` host left maintenance and can take it goes back.
- **failback**: with `policy.failback`, a VM runs on its most preferred available host.
Targets come from `core.placement.plan` over hosts that may receive VMs. A VM already being
moved (its record has `after`) is not moved again until that move ends.

Admission control (vSphere's "host failures cluster tolerates"): a *new* VM may start only if,
with it running, the loss of any `host_failures_to_tolerate` hosts still leaves a place for
every VM. Recoveries after a failure are never refused: the reserve exists for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ringfence.config import VM, Group
from ringfence.core.placement import HostRoom, plan

MAX_FAILURE_SETS = 2000  # combinations of failed hosts admission control tries at most


@dataclass(frozen=True)
class Move:
    vm: str
    source: str
    target: str
    why: str
    home: str | None = None  # set when draining for maintenance: where the VM returns
    cause: str = "maintenance"  # maintenance, degraded, return, failback (`vm_migrating`)


def _copy(rooms: Mapping[str, HostRoom]) -> dict[str, HostRoom]:
    return {n: HostRoom(r.name, r.free_cpus, r.free_memory, set(r.vms)) for n, r in rooms.items()}


def plan_moves(
    *,
    placed: Mapping[str, str],  # vm -> host it runs on (settled records only)
    specs: Mapping[str, VM],
    rooms: Mapping[str, HostRoom],  # hosts that may receive VMs, with their current load
    groups: Iterable[Group],
    draining: Iterable[str],
    degraded: Iterable[str],
    homes: Mapping[str, str],  # vm -> the host it was drained from
    failback: bool,
) -> list[Move]:
    rooms = _copy(rooms)
    group_list = list(groups)
    moves: list[Move] = []
    leaving = {h: "maintenance" for h in sorted(draining)}
    leaving.update({h: "degraded" for h in sorted(degraded) if h not in leaving})
    for host, why in leaving.items():
        leavers = [specs[v] for v, h in sorted(placed.items()) if h == host and v in specs]
        result = plan(leavers, rooms, group_list)
        for leaver in leavers:
            target = result.assignments[leaver.name]
            if target is not None:
                moves.append(Move(leaver.name, host, target, f"{host} is in {why}" if why ==
                                  "maintenance" else f"{host} is degraded",
                                  home=host if why == "maintenance" else None, cause=why))
    moving = {m.vm for m in moves}
    for vm, home in sorted(homes.items()):
        current = placed.get(vm)
        if vm in moving or current is None or current == home or home not in rooms:
            continue
        if _fits_alone(specs[vm], rooms[home], vm, group_list):
            rooms[home].take(specs[vm])
            moves.append(Move(vm, current, home, f"{home} left maintenance", cause="return"))
            moving.add(vm)
    if failback:
        for vm, current in sorted(placed.items()):
            spec = specs.get(vm)
            if spec is None or vm in moving or not spec.prefer:
                continue
            better = [h for h in spec.prefer if h in rooms or h == current]
            if not better or better[0] == current:
                continue
            target = better[0]
            if _fits_alone(spec, rooms[target], vm, group_list):
                rooms[target].take(spec)
                moves.append(Move(vm, current, target, f"failback to preferred host {target}",
                                  cause="failback"))
                moving.add(vm)
    return moves


def _fits_alone(vm: VM, room: HostRoom, name: str, groups: list[Group]) -> bool:
    if not room.fits(vm):
        return False
    anti = {m for g in groups if g.rule == "anti_affinity" and name in g.vms for m in g.vms}
    return not (anti - {name}) & room.vms


def admission_refusal(
    vm: VM,
    target: str,
    rooms: Mapping[str, HostRoom],
    specs: Mapping[str, VM],
    groups: Iterable[Group],
    tolerate: int,
) -> str | None:
    """None if starting `vm` on `target` keeps every VM restartable after the loss of any
    `tolerate` hosts; else why not (naming the failure and the VM that would have no place)."""
    if tolerate <= 0:
        return None
    trial = _copy(rooms)
    trial[target].take(vm)
    all_specs = {**specs, vm.name: vm}
    hosts = sorted(trial)
    if tolerate >= len(hosts):
        return (f"host_failures_to_tolerate is {tolerate} but only {len(hosts)} hosts can run "
                f"VMs")
    group_list = list(groups)
    for failed in itertools.islice(itertools.combinations(hosts, tolerate), MAX_FAILURE_SETS):
        survivors = {n: r for n, r in _copy(trial).items() if n not in failed}
        lost = [all_specs[v] for n in failed for v in sorted(trial[n].vms) if v in all_specs]
        result = plan(lost, survivors, group_list)
        homeless = sorted(v for v, h in result.assignments.items() if h is None)
        if homeless:
            return (f"admission control: starting {vm.name} on {target} would leave "
                    f"{', '.join(homeless)} without a place if {', '.join(failed)} failed "
                    f"(policy.host_failures_to_tolerate = {tolerate})")
    return None
