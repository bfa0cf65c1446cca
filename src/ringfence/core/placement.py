"""Placement: where VMs go when they must be (re)started. Pure and deterministic: the same
inputs give the same plan.

Rules, in order: VMs are placed by priority (higher first), then by name; a host receives a
VM only if its free CPUs and memory suffice (never overcommitted); a host that runs a member
of one of the VM's anti-affinity groups is excluded; a host running a member of one of its
affinity groups is preferred; then the VM's `prefer` list, in its order; then the host with
the most free memory, then the name. A VM that fits nowhere is left unplaced (None), and the
caller keeps it pending and says why.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Placement:
    assignments: dict[str, str | None]
    reasons: dict[str, str]  # for each unplaced VM, what was missing


def _groups_of(vm: str, groups: Iterable[Group], rule: str) -> list[Group]:
    return [g for g in groups if g.rule == rule and vm in g.vms]


def _rank(room: HostRoom, vm: VM, near: list[str]) -> tuple[int, int, int, str]:
    together = -sum(1 for m in near if m in room.vms)
    preferred = vm.prefer.index(room.name) if room.name in vm.prefer else len(vm.prefer)
    return (together, preferred, -room.free_memory, room.name)


def plan(
    vms: Iterable[VM],
    rooms: Mapping[str, HostRoom],
    groups: Iterable[Group] = (),
    avoid: Mapping[str, Iterable[str]] | None = None,
) -> Placement:
    """Place `vms` on `rooms` (which this function updates as it assigns). `avoid[vm]`
    names hosts that must not receive that VM (it failed there)."""
    group_list = list(groups)
    assignments: dict[str, str | None] = {}
    reasons: dict[str, str] = {}
    for vm in sorted(vms, key=lambda v: (-v.priority, v.name)):
        anti = [m for g in _groups_of(vm.name, group_list, "anti_affinity") for m in g.vms
                if m != vm.name]
        near = [m for g in _groups_of(vm.name, group_list, "affinity") for m in g.vms
                if m != vm.name]
        candidates: list[HostRoom] = []
        blocked_by_capacity = blocked_by_anti = 0
        avoided = set((avoid or {}).get(vm.name, ()))
        for room in sorted(rooms.values(), key=lambda r: r.name):
            if room.name in avoided:
                continue
            if room.free_cpus < vm.cpus or room.free_memory < vm.memory:
                blocked_by_capacity += 1
            elif any(m in room.vms for m in anti):
                blocked_by_anti += 1
            else:
                candidates.append(room)
        if not candidates:
            assignments[vm.name] = None
            reasons[vm.name] = (
                f"needs {vm.cpus} CPUs and {vm.memory // 2**20} MiB; "
                f"{len(rooms)} eligible hosts, {blocked_by_capacity} without room, "
                f"{blocked_by_anti} excluded by anti-affinity"
                + (f", {len(avoided & set(rooms))} where it failed before" if avoided else "")
            )
            continue

        best = min(candidates, key=lambda room: _rank(room, vm, near))
        best.free_cpus -= vm.cpus
        best.free_memory -= vm.memory
        best.vms.add(vm.name)
        assignments[vm.name] = best.name
    return Placement(assignments, reasons)
