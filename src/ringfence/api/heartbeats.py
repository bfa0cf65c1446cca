"""The heartbeats a host refused, as `/metrics` shows them: a snapshot of its transport's
counters (`agent.transport.DropCounts`), by peer and heartbeat network, with names.

Only the agent that receives the heartbeats has these counters (they are not in the store):
each agent's `/metrics` exports its own, labelled with its host name, the way every node of a
Pacemaker cluster exports its own corosync counters. The counters start at 0 when the agent
starts (Prometheus' ``rate()`` treats a restart as a reset).

Failure semantics: a snapshot is a copy taken without a lock (the heartbeat thread keeps
counting meanwhile); it never raises, and an index that names no host or network of the
cluster (a damaged datagram can not get this far: only authentic ones are counted by sender)
is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ringfence.agent.transport import DropCounts

__all__ = ["HeartbeatCounters", "HeartbeatTransport", "snapshot_of"]


class HeartbeatTransport(Protocol):
    """What a snapshot reads: `agent.transport.UdpTransport` is one."""

    @property
    def drops(self) -> DropCounts: ...


@dataclass(frozen=True)
class HeartbeatCounters:
    """One host's refused heartbeats since its agent started.

    - `auth_failures`: datagrams whose HMAC is wrong (another key, another cluster, a forgery),
      by network;
    - `replays`: authentic heartbeats seen before (a sequence already seen, or an earlier life
      of the sender), by (peer, network);
    - `stale`: authentic heartbeats that do not echo this host's current life (recorded in an
      earlier life of this host and sent again, or a peer that has not heard it yet: a few at
      every start), by (peer, network);
    - `malformed`, `misdirected`: not heartbeats of this cluster, or addressed to another host.
    """

    host: str
    peers: tuple[str, ...]
    networks: tuple[str, ...]
    auth_failures: dict[str, int] = field(default_factory=dict)
    replays: dict[tuple[str, str], int] = field(default_factory=dict)
    stale: dict[tuple[str, str], int] = field(default_factory=dict)
    malformed: int = 0
    misdirected: int = 0


def snapshot_of(transport: HeartbeatTransport, hosts: Sequence[str], me: str,
                networks: Sequence[str]) -> HeartbeatCounters:
    """The counters of `transport` (host `me` of `hosts`, heartbeat `networks` by link index)
    with names; every peer and network present, 0 where nothing was refused."""
    drops = transport.drops
    peers = tuple(h for h in hosts if h != me)

    def by_origin(counts: dict[tuple[int, int], int]) -> dict[tuple[str, str], int]:
        named = {(peer, network): 0 for peer in peers for network in networks}
        for (sender, link), count in counts.copy().items():
            if 0 <= sender < len(hosts) and 0 <= link < len(networks) and hosts[sender] != me:
                named[(hosts[sender], networks[link])] = count
        return named

    failures = {network: 0 for network in networks}
    for link, count in drops.forged_on.copy().items():
        if 0 <= link < len(networks):
            failures[networks[link]] = count
    return HeartbeatCounters(host=me, peers=peers, networks=tuple(networks),
                             auth_failures=failures, replays=by_origin(drops.replayed_from),
                             stale=by_origin(drops.stale_from), malformed=drops.malformed,
                             misdirected=drops.misdirected)
