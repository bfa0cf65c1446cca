"""Ground truth: where each VM ran, from the VMs' own writes to the shared disk file.

Every process VM appends ``{"vm", "host", "token", "seq", "t"}`` every 100 ms (see
`ringfence.hypervisor.process_vm`). A *run* is one stretch of one VM's writes from one host:
it ends where that host's writes for the VM stop for longer than `GAP` (the process died, was
killed, or was frozen with its host) or where a new process takes over (its ``seq`` starts
again). A run starts at its first write and ends at its last, so two runs of one VM overlap only
if both hosts really wrote in the same interval: that is what the simulator's checker
(`ringfence.sim.checker.split_brains`) is then given. Nothing an agent believes is used.

Times are on the lab's clock (seconds since t = 0). Runs are clipped to [0, duration]; a VM
that still writes at the end of the run (its last write within `GAP` of it) runs until the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ringfence.sim.world import Run

GAP = 0.6  # seconds without a write that end a run (six missed writes)


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
    return [_clip(r, duration) for r in runs if r.end is not None and r.end >= 0.0], starts


def _clip(run: Run, duration: float) -> Run:
    assert run.end is not None
    return Run(run.vm, run.host, max(0.0, run.start), min(duration, run.end))
