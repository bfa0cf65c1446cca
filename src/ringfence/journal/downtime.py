"""One definition of a VM's downtime, used by every place that shows one.

Downtime of one outage: from the VM's last sign of life on the host it left to its first sign of
life on the host it came back on. The signs of life are, in order of preference:

1. the VM's own writes (``SIGNS_WRITES``): where the hypervisor exposes them (the demo's and the
   lab's process VMs write a line to their shared disk every 100 ms), a run is a stretch of
   writes from one host without a pause longer than the gap the caller gives;
2. else the agents' start and stop events in the journal (``SIGNS_JOURNAL``: `vm_stopped`,
   `vm_started`, the stop time estimated from the last heartbeat where nobody saw the stop:
   `journal.incidents`).

:func:`measured` takes incidents built from the journal and, for every outage whose VM has
writes, moves its ends to the writes: the end of the last run on the old host that began
before the outage's journal stop, and the start of the first run after it. The incident's
per-VM totals are recomputed from the outages, and ``source`` says which signs they come
from, so a report, a status page and the demo's summary never show two figures for one
outage.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ringfence.journal.incidents import SIGNS_JOURNAL, SIGNS_WRITES, Incident, Outage, VmImpact

__all__ = ["SIGNS_JOURNAL", "SIGNS_WRITES", "Run", "measured", "runs_from_writes"]


@dataclass(frozen=True)
class Run:
    """A stretch during which `vm` showed life on `host`, from `start` to `end`."""

    vm: str
    host: str
    start: float
    end: float


def runs_from_writes(writes: Iterable[tuple[float, str, str]], gap: float) -> list[Run]:
    """Runs from (t, vm, host) writes: a new run at a change of host or after a pause > gap."""
    by_vm: dict[str, list[tuple[float, str]]] = {}
    for t, vm, host in writes:
        by_vm.setdefault(vm, []).append((t, host))
    runs: list[Run] = []
    for vm, points in sorted(by_vm.items()):
        points.sort()
        start, last, host = points[0][0], points[0][0], points[0][1]
        for t, where in points[1:]:
            if where != host or t - last > gap:
                runs.append(Run(vm, host, start, last))
                start, host = t, where
            last = t
        runs.append(Run(vm, host, start, last))
    return runs


def _outage(o: Outage, runs: Sequence[Run]) -> Outage:
    if o.live or not runs:
        return o
    starts = [r.start for r in runs]
    # The last run that began before the journal says the VM stopped: its end is the last
    # sign of life (on the host it left, when the journal names one).
    i = bisect.bisect_right(starts, o.down_at) - 1
    while i >= 0 and o.from_host is not None and runs[i].host != o.from_host:
        i -= 1
    if i < 0:
        return o
    down = runs[i].end
    back = None
    if o.back_at is not None:
        after = [r for r in runs[i + 1:] if r.start > down]
        if o.to_host is not None:
            after = [r for r in after if r.host == o.to_host] or after
        back = after[0].start if after else o.back_at
    return replace(o, down_at=down, back_at=back, down_earliest=down, down_latest=down)


def _impact(v: VmImpact, runs: Sequence[Run], end: float) -> VmImpact:
    outages = tuple(_outage(o, runs) for o in v.outages)
    first, last = outages[0], outages[-1]
    return replace(v, outages=outages, down_at=first.down_at, back_at=last.back_at,
                   downtime_s=round(sum(o.downtime(end) for o in outages), 3),
                   downtime_source=SIGNS_WRITES)


def measured(incidents: Sequence[Incident], runs: Iterable[Run], end: float
             ) -> tuple[Incident, ...]:
    """`incidents` with every outage of a VM that has runs measured on them (module
    docstring); VMs without runs keep the journal's figures and say so."""
    by_vm: dict[str, list[Run]] = {}
    for run in runs:
        by_vm.setdefault(run.vm, []).append(run)
    for found in by_vm.values():
        found.sort(key=lambda r: r.start)
    table: Mapping[str, list[Run]] = by_vm
    return tuple(
        replace(i, vms=tuple(_impact(v, table[v.vm], end) if table.get(v.vm) else v
                             for v in i.vms))
        for i in incidents)
