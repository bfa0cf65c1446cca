"""Heartbeat membership: per peer and per heartbeat link, is the peer heard?

Pure bookkeeping over arrays (so that a 256-host mesh costs a few vector operations per cycle).
A link to a peer is *alive* while a heartbeat arrived on it within `heartbeat_timeout`. A peer
is `up` when every link it shares with us is alive, in `jeopardy` when some but not all are,
`lost` when none is (after having been heard), `unknown` before it was ever heard.

Peers also tell who they hear (the `peer_views` of a heartbeat batch). `vouched_for` uses that
to tell "I lost my links to X" from "nobody hears X": the manager fences on the second only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ringfence.core.ports import BoolArray, FloatArray, HeartbeatBatch, IntArray, LeaseReport
from ringfence.core.topology import Topology


class PeerState(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    JEOPARDY = "jeopardy"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class PeerChange:
    peer: str
    old: PeerState
    new: PeerState
    alive_links: tuple[str, ...]
    dead_links: tuple[str, ...]


class Membership:
    def __init__(self, topology: Topology, me: str, heartbeat_timeout: float) -> None:
        self.topology = topology
        self.me = topology.index(me)
        self.timeout = heartbeat_timeout
        n, links = topology.host_links.shape
        self.shared: BoolArray = topology.host_links & topology.host_links[self.me]
        self.shared[self.me] = False
        self.has_shared: BoolArray = self.shared.any(axis=1)
        self.last_heard: FloatArray = np.full((n, links), -np.inf)
        self.link_alive: BoolArray = np.zeros((n, links), dtype=np.bool_)
        self.views: BoolArray = np.zeros((n, n), dtype=np.bool_)
        self.flags: IntArray = np.zeros(n, dtype=np.int64)
        self.stores: IntArray = np.zeros(n, dtype=np.int64)  # store fingerprints, by peer
        self.seqs: IntArray = np.zeros(n, dtype=np.int64)  # newest heartbeat number, by peer
        self.reports: dict[str, LeaseReport] = {}  # the newest report about us, by peer
        self.states: list[PeerState] = [PeerState.UNKNOWN] * n
        self.version = 0  # bumped whenever a peer's state or links change
        self._heard: BoolArray = np.zeros(n, dtype=np.bool_)
        self._heard_version = -1
        self.counts: dict[PeerState, int] = dict.fromkeys(PeerState, 0)
        self.counts[PeerState.UNKNOWN] = n

    def observe(self, now: float, batch: HeartbeatBatch) -> list[PeerChange]:
        """Take in received heartbeats and return the peers whose state changed."""
        np.maximum(self.last_heard, batch.heard_at, out=self.last_heard)
        np.copyto(self.views, batch.peer_views, where=batch.view_valid[:, None])
        np.copyto(self.flags, batch.peer_flags, where=batch.view_valid)
        np.copyto(self.stores, batch.peer_stores, where=batch.view_valid)
        # Heartbeat numbers grow across a sender's lives too (the transports promise it).
        np.maximum(self.seqs, batch.peer_seqs, out=self.seqs)
        for index, report in batch.reports.items():
            self.reports[self.topology.hosts[index]] = report
        alive = ((now - self.last_heard) <= self.timeout) & self.shared
        differs = alive != self.link_alive
        if not differs.any():
            return []
        changed_rows = np.flatnonzero(differs.any(axis=1))
        self.link_alive = alive
        self.version += 1
        changes: list[PeerChange] = []
        for p in changed_rows.tolist():
            new = self._state_of(p)
            old = self.states[p]
            if new == old:
                continue
            self.states[p] = new
            self.counts[old] -= 1
            self.counts[new] += 1
            if not alive[p].any():
                # A silent peer's view of the others is stale: forget it.
                self.views[p] = False
            changes.append(PeerChange(self.topology.hosts[p], old, new, *self._links_of(p)))
        return changes

    def _state_of(self, p: int) -> PeerState:
        alive = self.link_alive[p][self.shared[p]]
        if alive.all() and alive.size:
            return PeerState.UP
        if alive.any():
            return PeerState.JEOPARDY
        return PeerState.LOST if self.states[p] != PeerState.UNKNOWN else PeerState.UNKNOWN

    def _links_of(self, p: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        names = self.topology.links
        alive = tuple(names[j] for j in np.flatnonzero(self.link_alive[p] & self.shared[p]))
        dead = tuple(names[j] for j in np.flatnonzero(~self.link_alive[p] & self.shared[p]))
        return alive, dead

    def links_of(self, host: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(alive, dead) heartbeat links to `host`."""
        return self._links_of(self.topology.index(host))

    def heard(self) -> BoolArray:
        """Hosts heard on at least one link, this host included (what our heartbeats carry).
        Recomputed only when a link changed (the array is shared: do not modify it)."""
        if self._heard_version != self.version:
            heard: BoolArray = np.asarray(self.link_alive.any(axis=1))
            heard[self.me] = True
            self._heard, self._heard_version = heard, self.version
        return self._heard

    def state(self, host: str) -> PeerState:
        return self.states[self.topology.index(host)]

    def hears(self, host: str) -> bool:
        i = self.topology.index(host)
        return i == self.me or bool(self.link_alive[i].any())

    def flags_of(self, host: str) -> int:
        """The `FLAG_*` bits of the latest heartbeat from `host`."""
        return int(self.flags[self.topology.index(host)])

    def store_of(self, host: str) -> int:
        """The fingerprint of the store that `host`'s latest heartbeat names (0: none)."""
        return int(self.stores[self.topology.index(host)])

    def seq_of(self, host: str) -> int:
        """The number of the newest heartbeat received from `host` (0: none yet)."""
        return int(self.seqs[self.topology.index(host)])

    def other_stores(self, mine: int) -> list[tuple[str, int]]:
        """Peers heard now whose heartbeats name a store identity other than `mine` (0s are
        not counted: a host that joined no store yet)."""
        direct: BoolArray = np.asarray(self.link_alive.any(axis=1))
        odd = np.flatnonzero(direct & (self.stores != 0) & (self.stores != mine))
        return [(self.topology.hosts[i], int(self.stores[i])) for i in odd.tolist()]

    def ever_heard(self, host: str) -> bool:
        return self.states[self.topology.index(host)] != PeerState.UNKNOWN

    def vouched_for(self, host: str) -> bool:
        """True when a peer that we hear directly says it hears `host`."""
        i = self.topology.index(host)
        direct: BoolArray = np.asarray(self.link_alive.any(axis=1))
        direct[i] = False
        return bool((self.views[:, i] & direct).any())

    def others_heard(self, excluding: str) -> int:
        """How many peers, besides `excluding`, we hear directly."""
        direct: BoolArray = np.asarray(self.link_alive.any(axis=1))
        direct[self.topology.index(excluding)] = False
        return int(direct.sum())

    def in_jeopardy(self) -> bool:
        """This host is in jeopardy when more than half of the peers it hears are heard on
        only some of their links (one link lost between two hosts puts both in jeopardy)."""
        jeopardy = self.counts[PeerState.JEOPARDY]
        heard = self.counts[PeerState.UP] + jeopardy
        return jeopardy * 2 > heard
