"""Ground truth: where each VM ran, from the VMs' own writes to the shared disk file.

Every process VM appends ``{"vm", "host", "token", "seq", "t"}`` every 100 ms (see
`ringfence.hypervisor.process_vm`). A *run* is one stretch of one VM's writes from one host:
it ends where that host's writes for the VM stop for longer than `GAP` (the process died, was
killed, or was frozen with its host) or where a new process takes over (its ``seq`` starts
again). A run starts at its first write and ends at its last, so two runs of one VM overlap only
if both hosts really wrote in the same interval: that is what the simulator's checker
(`ringfence.sim.checker.split_brains`) is then given. Nothing an agent believes is used.

A live migration is a handover, as in the simulator (`Run.handed_to`): when a new process of
a VM (``seq`` 0) first writes from another host within `HANDOVER` of another run's last write,
the earlier run ends at that first write and hands over to it. The writes sample a VM's life
every 100 ms, so a switch-over shorter than that can not be seen on the disk: it counts as no
downtime, not as the 100 ms between two writes. A failover can not look like this (detection
alone takes longer than `GAP`), and it never hides two writers: the earlier run only grows.

Times are on the lab's clock (seconds since t = 0). Runs are clipped to [0, duration]; a VM
that still writes at the end of the run (its last write within `GAP` of it) runs until the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ringfence.sim.world import Run

GAP = 0.6  # seconds without a write that end a run (six missed writes)
HANDOVER = 0.15  # at most this from a run's last write to the next host's first: a migration


@dataclass(frozen=True)
class Write:
    vm: str
    host: str
    token: int
    seq: int
    t: float  # lab time


def read_writes(disk: Path, t0: float) -> list[Write]:
    writes: list[Write] = []
    try:
        lines = disk.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return writes
    for line in lines:
        try:
            record = json.loads(line)
            writes.append(Write(str(record["vm"]), str(record["host"]), int(record["token"]),
                                int(record["seq"]), float(record["t"]) - t0))
        except (ValueError, KeyError, TypeError):
            continue  # a torn line (the writer died mid-write)
    return writes


def runs_of(writes: list[Write], duration: float) -> tuple[list[Run], dict[str, int]]:
    """(runs, starts per VM: how many VM processes began writing before the end)."""
    by_writer: dict[tuple[str, str], list[Write]] = {}
    starts: dict[str, int] = {}
    for write in sorted(writes, key=lambda w: w.t):
        if write.t > duration:
            continue
        by_writer.setdefault((write.vm, write.host), []).append(write)
        if write.seq == 0:
            starts[write.vm] = starts.get(write.vm, 0) + 1
    runs: list[Run] = []
    for (vm, host), mine in sorted(by_writer.items()):
        first = last = mine[0]
        for write in mine[1:]:
            if write.t - last.t > GAP or write.seq < last.seq:
                runs.append(Run(vm, host, first.t, last.t))
                first = write
            last = write
        runs.append(Run(vm, host, first.t, duration if duration - last.t <= GAP else last.t))
    clipped = [_clip(r, duration) for r in runs if r.end is not None and r.end >= 0.0]
    return _link_handovers(clipped, writes, duration), starts


def _link_handovers(runs: list[Run], writes: list[Write], duration: float) -> list[Run]:
    """Join each migration's source run to its target run (see the module docstring)."""
    fresh = {(w.vm, w.host, w.t) for w in writes if w.seq == 0}
    for target in runs:
        if (target.vm, target.host, target.start) not in fresh:
            continue
        for source in runs:
            end = source.end
            if (source.vm == target.vm and source.host != target.host and end is not None
                    and end < duration and 0.0 <= target.start - end <= HANDOVER
                    and source.handed_to is None):
                source.end = target.start
                source.handed_to = target
                break
    return runs


def _clip(run: Run, duration: float) -> Run:
    assert run.end is not None
    return Run(run.vm, run.host, max(0.0, run.start), min(duration, run.end))
