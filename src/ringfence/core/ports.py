"""The parts that decision code is given instead of doing I/O itself.

`Agent` and `Manager` receive a `Clock`, a `Transport`, a `Journal` and an `AlertSink` (plus a
`Store`, `Hypervisor`, `Watchdog` and fence agents, whose protocols live in their packages). The
simulator passes simulated parts, the runtime real ones; the decision code can not tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds on this host's clock. Only differences are meaningful; clocks
        of two hosts are never compared."""
        ...


@dataclass(frozen=True, slots=True)
class HeartbeatBatch:
    """What a host received since it last asked.

    `heard_at[p, l]`: this host's clock time of the latest heartbeat from host index `p` on
    heartbeat link `l` (-inf: none). `peer_views[p]`: the latest list of hosts that host `p`
    said it hears (valid where `view_valid[p]`).
    """

    heard_at: FloatArray
    peer_views: BoolArray
    view_valid: BoolArray


class Transport(Protocol):
    def send(self, heard: BoolArray) -> None:
        """Send one heartbeat on every heartbeat link, carrying the hosts this host hears.
        Never raises: a link that can not send simply stays silent."""
        ...

    def receive(self) -> HeartbeatBatch:
        """Heartbeats received since the last call (authenticated and de-duplicated)."""
        ...


class Journal(Protocol):
    def record(
        self, kind: str, *, host: str | None = None, vm: str | None = None, text: str = ""
    ) -> None:
        """Append an event. `host`/`vm`: what the event is about. Never raises: a journal
        that can not write keeps the event in memory and says so."""
        ...


class AlertSink(Protocol):
    def send(self, severity: str, text: str, *, host: str | None = None,
             vm: str | None = None) -> None:
        """Queue an alert for every configured route. Never raises."""
        ...
