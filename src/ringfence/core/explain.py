"""Why a VM went where it went: one line per host, for the journal (`vm_recovered.reasons`)
and `ringfence why`. Pure: the same rooms give the same words."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ringfence.config import VM, Group
from ringfence.core.placement import HostRoom
from ringfence.units import format_size

__all__ = ["placement_notes"]


def placement_notes(vm: VM, target: str | None, hosts: Iterable[str],
                    rooms: Mapping[str, HostRoom], unavailable: Mapping[str, str],
                    avoid: Iterable[str], groups: Iterable[Group]) -> tuple[str, ...]:
    """For each host: chosen, or why not. `rooms` are the hosts that could receive VMs before
    this plan, with their free room; `unavailable` says, for the others, why they could not."""
    avoided = set(avoid)
    anti = [g for g in groups if g.rule == "anti_affinity" and vm.name in g.vms]
    notes: list[str] = []
    for host in hosts:
        room = rooms.get(host)
        if host == target:
            notes.append(f"{host}: chosen")
        elif room is None:
            notes.append(f"{host}: may not receive VMs ({unavailable.get(host, 'unknown')})")
        elif host in avoided:
            notes.append(f"{host}: {vm.name} kept dying there")
        elif not room.fits(vm):
            notes.append(f"{host}: too little room ({room.free_cpus} CPUs and "
                         f"{format_size(max(0, room.free_memory))} free; {vm.name} needs "
                         f"{vm.cpus} and {format_size(vm.memory)})")
        else:
            clash = sorted({m for g in anti for m in g.vms if m != vm.name and m in room.vms})
            if clash:
                notes.append(f"{host}: runs {', '.join(clash)} (anti-affinity)")
            elif target is None:
                notes.append(f"{host}: fits")
            else:
                notes.append(f"{host}: fits, ranked after {target}")
    return tuple(notes)
