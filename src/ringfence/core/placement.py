"""Placement: where VMs go when they must be (re)started or moved. Pure and deterministic:
the same inputs give the same plan.

Rules, in order:
1. VMs are placed by priority (higher first), then by name.
2. A host receives a VM only if its free CPUs and memory suffice: never overcommitted.
3. Hosts in `avoid[vm]` (where the VM kept dying) are excluded.
4. A host that runs a member of one of the VM's anti-affinity groups is excluded (two monitors
   never on one host: seed 001).
5. Among the rest: hosts that run members of the VM's affinity groups first; then the VM's
   `prefer` list, in its order; then the host with the most free memory; then the name.

A VM that fits nowhere is left unplaced (None) with the reason, naming what is missing; the
caller keeps it pending, says so, and tries again when capacity appears.

Which hosts may receive VMs at all (online, fit, not in maintenance, not fenced) is the
caller's decision: it passes only those as `rooms`.

Speed: VMs without affinity or preferences (the common case) take the fullest-memory host
from a heap, so planning 10,000 VMs on 256 hosts stays well under a second (bench/placement.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ringfence.config import VM, Group


@dataclass
class HostRoom:
    """A host that may receive VMs, with what it has left."""

    name: str
    free_cpus: int
    free_memory: int
    vms: set[str] = field(default_factory=set)

    def fits(self, vm: VM) -> bool:
        return self.free_cpus >= vm.cpus and self.free_memory >= vm.memory

    def take(self, vm: VM) -> None:
        self.free_cpus -= vm.cpus
        self.free_memory -= vm.memory
        self.vms.add(vm.name)


@dataclass(frozen=True)
class Placement:
    assignments: dict[str, str | None]
    reasons: dict[str, str]  # for each unplaced VM, what was missing


def order(vms: Iterable[VM]) -> list[VM]:
    """The restart order: priority, then name."""
    return sorted(vms, key=lambda v: (-v.priority, v.name))


class _Groups:
    def __init__(self, groups: Iterable[Group]) -> None:
        self.anti: dict[str, list[str]] = {}
        self.near: dict[str, list[str]] = {}
        for group in groups:
            target = self.anti if group.rule == "anti_affinity" else self.near
            for member in group.vms:
                target.setdefault(member, []).extend(m for m in group.vms if m != member)


class _Fullest:
    """Rooms ordered by most free memory, then name; stale entries are skipped lazily."""

    def __init__(self, rooms: Mapping[str, HostRoom]) -> None:
        self.rooms = rooms
        self.heap = [(-r.free_memory, r.name) for r in rooms.values()]
        heapq.heapify(self.heap)

    def update(self, room: HostRoom) -> None:
        heapq.heappush(self.heap, (-room.free_memory, room.name))

    def best(self, vm: VM, excluded: set[str]) -> HostRoom | None:
        """The fullest-memory room that fits `vm` and is not excluded."""
        skipped: list[tuple[int, str]] = []
        found: HostRoom | None = None
        while self.heap:
            key = heapq.heappop(self.heap)
            room = self.rooms[key[1]]
            if -key[0] != room.free_memory:
                continue  # stale
            skipped.append(key)
            if room.free_memory < vm.memory:
                break  # nothing further down has more memory
            if room.free_cpus >= vm.cpus and room.name not in excluded:
                found = room
                break
        for key in skipped:
            heapq.heappush(self.heap, key)
        return found


def _rank(room: HostRoom, vm: VM, near: list[str]) -> tuple[int, int, int, str]:
    together = -sum(1 for m in near if m in room.vms)
    preferred = vm.prefer.index(room.name) if room.name in vm.prefer else len(vm.prefer)
    return (together, preferred, -room.free_memory, room.name)


def _why_not(vm: VM, rooms: Mapping[str, HostRoom], excluded_anti: set[str],
             avoided: set[str]) -> str:
    no_room = sum(1 for r in rooms.values() if not r.fits(vm))
    text = (f"needs {vm.cpus} CPUs and {vm.memory // 2**20} MiB; {len(rooms)} eligible "
            f"hosts, {no_room} without room, {len(excluded_anti & set(rooms))} excluded by "
            f"anti-affinity")
    if avoided:
        text += f", {len(avoided & set(rooms))} where it failed before"
    if rooms:
        most = max(rooms.values(), key=lambda r: (r.free_memory, r.name))
        text += f"; most free: {most.name} with {most.free_cpus} CPUs, " \
                f"{most.free_memory // 2**20} MiB"
    return text


def plan(
    vms: Iterable[VM],
    rooms: Mapping[str, HostRoom],
    groups: Iterable[Group] = (),
    avoid: Mapping[str, Iterable[str]] | None = None,
) -> Placement:
    """Place `vms` on `rooms` (which this function updates as it assigns)."""
    relations = _Groups(groups)
    fullest = _Fullest(rooms)
    by_name = sorted(rooms.values(), key=lambda r: r.name)
    where = {vm: room.name for room in by_name for vm in room.vms}
    assignments: dict[str, str | None] = {}
    reasons: dict[str, str] = {}
    for vm in order(vms):
        avoided = set((avoid or {}).get(vm.name, ()))
        anti = relations.anti.get(vm.name, [])
        near = relations.near.get(vm.name, [])
        excluded_anti = {where[m] for m in anti if m in where}
        excluded = avoided | excluded_anti
        if near or vm.prefer:
            candidates = [r for r in by_name if r.name not in excluded and r.fits(vm)]
            best = min(candidates, key=lambda r: _rank(r, vm, near)) if candidates else None
        else:
            best = fullest.best(vm, excluded)
        if best is None:
            assignments[vm.name] = None
            reasons[vm.name] = _why_not(vm, rooms, excluded_anti, avoided)
            continue
        best.take(vm)
        where[vm.name] = best.name
        fullest.update(best)
        assignments[vm.name] = best.name
    return Placement(assignments, reasons)
