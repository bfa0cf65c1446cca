"""The parts that decision code is given instead of doing I/O itself.

`Agent` and `Manager` receive a `Clock`, a `Transport`, a `Journal` and an `AlertSink` (plus a
`Store`, `Hypervisor`, `Watchdog` and fence agents, whose protocols live in their packages). The
simulator passes simulated parts, the runtime real ones; the decision code can not tell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# Flags a heartbeat carries about its sender.
FLAG_STORE_OK = 1  # the sender reaches the store
FLAG_LEAVING = 2  # the sender is shutting down cleanly (its VMs are stopped)
FLAG_FAILSAFE = 4  # the sender keeps its VMs in failsafe
# With FLAG_STORE_OK: the store answered the sender lately (`core.failsafe.store_news_window`).
FLAG_STORE_FRESH = 8
# The sender sets FLAG_STORE_FRESH when it applies: from an older agent, which never does,
# FLAG_STORE_OK alone is taken as fresh news (the rule it was written for).
FLAG_SAYS_FRESHNESS = 16


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds on this host's clock. Only differences are meaningful; clocks
        of two hosts are never compared."""
        ...


@dataclass(frozen=True, slots=True)
class LeaseReport:
    """What a host that reaches the store read there about one peer's host lease, sent to that
    peer in its heartbeats (`core.failsafe`): the lease `lease` had at least `remaining`
    seconds to live (the store's time-to-live answer) when the store answered, and the newest
    heartbeat the reporter had received from the peer *before it asked* was the peer's
    heartbeat number `echo`. Causality makes that a bound the peer can use on its own clock:
    the peer sent heartbeat `echo` before the question was asked, so its lease lives in the
    store at least until (its send time of heartbeat `echo`) + `remaining`."""

    lease: int
    echo: int
    remaining: float


@dataclass(frozen=True, slots=True)
class HeartbeatBatch:
    """What a host received since it last asked.

    `heard_at[p, l]`: this host's clock time of the latest heartbeat from host index `p` on
    heartbeat link `l` (-inf: none). `peer_views[p]`: the latest list of hosts that host `p`
    said it hears, `peer_flags[p]` its `FLAG_*` bits and `peer_stores[p]` the fingerprint of
    the store identity it joined (0: none) (all valid where `view_valid[p]`). `peer_seqs[p]`:
    the number of the newest heartbeat received from `p` (0: none; numbers grow within one
    life of the sender). `reports[p]`: the newest `LeaseReport` about this host that `p` sent.
    """

    heard_at: FloatArray
    peer_views: BoolArray
    view_valid: BoolArray
    peer_flags: IntArray
    peer_stores: IntArray
    peer_seqs: IntArray
    reports: Mapping[int, LeaseReport] = field(default_factory=dict)


class Transport(Protocol):
    def send(self, heard: BoolArray, flags: int, store: int = 0,
             reports: Mapping[int, LeaseReport] | None = None) -> int:
        """Send one heartbeat on every heartbeat link, carrying the hosts this host hears, its
        `FLAG_*` bits, the fingerprint of the store identity it joined (0: none) and, to each
        receiver index in `reports`, that receiver's `LeaseReport`. Returns the heartbeat's
        number (the same on every link; it grows with every call). Never raises: a link that
        can not send simply stays silent."""
        ...

    def receive(self) -> HeartbeatBatch:
        """Heartbeats received since the last call (authenticated and de-duplicated)."""
        ...


@dataclass(frozen=True, slots=True)
class NicReading:
    """One network interface as the host sees it now. Identity is the MAC; the name is what
    the kernel called it at this boot."""

    mac: str
    name: str
    carrier: bool
    carrier_changes: int  # /sys/class/net/<if>/carrier_changes: counts every drop and return


@dataclass(frozen=True, slots=True)
class HostReading:
    """What the host's probes saw: NICs, the result of each datastore's write-fsync-read probe
    that finished since the last reading (None: writable, else the error; a datastore with
    no new result is absent), and the count of corrected memory errors (EDAC)."""

    nics: tuple[NicReading, ...]
    datastores: dict[str, str | None]
    corrected_memory_errors: int


class Probes(Protocol):
    def read(self) -> HostReading:
        """Probe the host now. Never raises: a probe that fails reports its error as a
        reading (an unwritable datastore, a NIC without carrier)."""
        ...


class GuestChecks(Protocol):
    def configured(self, vm: str) -> bool:
        """Is there a check for `vm` at all? VMs without one are not verified (and nothing
        claims they were)."""
        ...

    def check(self, vm: str) -> bool | None:
        """Does `vm` answer its configured check (guest agent, ICMP or TCP)? None while the
        check has not finished. Never raises."""
        ...


class StoreWatch(Protocol):
    """A hint of the store's latest revision, pushed by the store (an etcd watch stream:
    `store.etcd_watch.EtcdWatch`). Never a proof: it may lag."""

    def seen(self) -> int | None:
        """The newest revision the watch has told of; None while it follows nothing (then
        the agent asks the store at every cycle). Never raises, never blocks."""
        ...


class LocalState(Protocol):
    """A few small facts this host keeps across reboots on its own disk (not in the store):
    promises it made, such as having left a failsafe cluster."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any] | None) -> None:
        """Write (None: delete) durably before returning."""
        ...


class Journal(Protocol):
    def record(self, kind: str, **fields: Any) -> None:
        """Append an event: `kind` and its typed fields (`core.events.Fact`; `host`/`vm`:
        what the event is about, `token`: the VM's lease token, `duration`: seconds it
        measures, ...). The journal sets `by` (its own host) and renders the text from the
        fields (`core.event_text.render`). An unknown field name raises TypeError (a
        programming error, caught by the tests). Never raises otherwise: a journal that can
        not write keeps the event in memory and says so."""
        ...


class AlertSink(Protocol):
    def send(self, severity: str, text: str, *, host: str | None = None,
             vm: str | None = None) -> None:
        """Queue an alert for every configured route. Never raises."""
        ...
