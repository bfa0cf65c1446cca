"""What the lab itself saw during a run, on the lab's clock (seconds since the run's start):
each host's power (up, off, booting, hung), the faults as they were applied, and the few
journal events that only the "hardware" can report (a watchdog that reset its host, an
operator command that could not reach a host that is off). The agents' own journals are read
from their files afterwards; see `ringfence.lab.judge`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ringfence.core.events import Fact
from ringfence.sim.timeline import Timeline


@dataclass(frozen=True)
class LabEntry:
    """A fact the lab itself journals (a watchdog reset it saw, a refused operator command)."""

    t: float
    fact: Fact


@dataclass(frozen=True)
class AppliedFault:
    t: float
    kind: str
    detail: dict[str, object]


@dataclass
class LabRecords:
    hosts: list[str]
    t0: float = 0.0  # wall-clock time of t = 0
    power: dict[str, Timeline[str]] = field(default_factory=dict)
    entries: list[LabEntry] = field(default_factory=list)
    faults: list[AppliedFault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.power = {h: Timeline[str]("up") for h in self.hosts}

    def now(self) -> float:
        return time.time() - self.t0

    def set_power(self, host: str, state: str, t: float | None = None) -> None:
        with self.lock:
            timeline = self.power[host]
            if timeline.at(float("inf")) != state:
                when = self.now() if t is None else t
                timeline.set(max(0.0, timeline.times[-1], when), state)

    def power_at(self, host: str) -> str:
        return self.power[host].at(float("inf"))

    def journal(self, kind: str, *, t: float | None = None, **fields: Any) -> None:
        with self.lock:
            self.entries.append(LabEntry(self.now() if t is None else t,
                                         Fact(kind, None, **fields)))

    def fault(self, kind: str, detail: dict[str, object]) -> None:
        with self.lock:
            self.faults.append(AppliedFault(self.now(), kind, detail))
