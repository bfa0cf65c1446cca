"""A simulated etcd: one linearizable key space, reachable from a host only while that host
reaches a majority of store members that reach each other (the world decides that).

etcd semantics kept on purpose, because the safety argument leans on them:
- every write bumps one global revision; revisions are the fencing tokens;
- leases expire only while the store has quorum (a leader); when a quorum forms again, or the
  leader changes, every lease's remaining time is restarted at its full TTL (etcd "promotes"
  leases on a new leader), after an election that takes `election_time`;
- a lease's expiry deletes its keys in one revision.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ringfence.store.base import (
    Compare,
    Delete,
    GuardFailed,
    KeyValue,
    Op,
    Put,
    RangeResult,
    StoreUnavailable,
    TxnResult,
    check_branch,
)

if TYPE_CHECKING:
    from ringfence.sim.world import World


@dataclass
class _Lease:
    ttl: float
    expiry: float
    keys: dict[str, None] = field(default_factory=dict)  # ordered set


class SimStore:
    def __init__(self, election_time: float) -> None:
        self.kv: dict[str, KeyValue] = {}
        self.leases: dict[int, _Lease] = {}
        self.expiry_heap: list[tuple[float, int]] = []
        self.rev = 1
        self.generation = 0  # wipes so far: lease ids of each generation are disjoint
        self.next_lease = 1
        self.election_time = election_time
        self.has_quorum = True
        self.leader: str | None = None
        self.ready_at = 0.0

    # ------------------------------------------------------------ quorum changes
    def quorum_changed(self, now: float, leader: str | None) -> None:
        """The world reports the store's quorum (and its leader) after a topology change."""
        self.expire(now)
        if leader is None:
            self.has_quorum = False
            self.leader = None
            return
        if self.has_quorum and self.leader == leader:
            return
        # A new leader: an election first, then every lease gets its full TTL again.
        self.has_quorum = True
        self.leader = leader
        self.ready_at = now + self.election_time
        for lease_id, lease in self.leases.items():
            lease.expiry = max(lease.expiry, self.ready_at + lease.ttl)
            heapq.heappush(self.expiry_heap, (lease.expiry, lease_id))

    def available(self, now: float) -> bool:
        return self.has_quorum and now >= self.ready_at

    def wipe(self) -> None:
        """The data is lost: an empty store answers at the same place (`do: store_wipe`).
        Revisions start again, as in a new etcd cluster; lease ids do not repeat: etcd makes
        them from the member id and the time, our SQLite store from a random base per
        database, so an old lease id is unknown to the new store (a keepalive of it fails)."""
        self.kv.clear()
        self.leases.clear()
        self.expiry_heap.clear()
        self.rev = 1
        self.generation += 1
        self.next_lease = (self.generation << 32) + 1

    # ------------------------------------------------------------ expiry
    def expire(self, now: float) -> None:
        if not self.available(now):
            return
        heap = self.expiry_heap
        while heap and heap[0][0] <= now:
            expiry, lease_id = heapq.heappop(heap)
            lease = self.leases.get(lease_id)
            if lease is None or lease.expiry != expiry:
                continue  # renewed or revoked since this entry was pushed
            self._drop_lease(lease_id)

    def _drop_lease(self, lease_id: int) -> None:
        lease = self.leases.pop(lease_id)
        doomed = [k for k in lease.keys if k in self.kv and self.kv[k].lease == lease_id]
        if doomed:
            self.rev += 1
            for key in doomed:
                del self.kv[key]

    # ------------------------------------------------------------ operations
    def get(self, key: str) -> KeyValue | None:
        return self.kv.get(key)

    def get_prefix(self, prefix: str, guard: Compare | None = None) -> RangeResult:
        if guard is not None and not guard.holds(self.kv.get(guard.key)):
            raise GuardFailed(f"guard on {guard.key} does not hold")
        items = tuple(kv for key, kv in sorted(self.kv.items()) if key.startswith(prefix))
        return RangeResult(items, self.rev)

    def txn(self, compare: list[Compare], success: list[Op], failure: list[Op] | None
            ) -> TxnResult:
        check_branch(success, "success")
        check_branch(failure or [], "failure")
        ok = all(c.holds(self.kv.get(c.key)) for c in compare)
        ops = success if ok else (failure or [])
        if any(isinstance(op, Put) and op.lease and op.lease not in self.leases for op in ops):
            return TxnResult(False, self.rev)
        changes = [op for op in ops if isinstance(op, Put) or op.key in self.kv]
        if changes:  # like etcd: deleting what is not there writes nothing
            self.rev += 1
            for op in changes:
                self._apply(op)
        return TxnResult(ok, self.rev)

    def _apply(self, op: Op) -> None:
        if isinstance(op, Delete):
            self.kv.pop(op.key, None)
            return
        old = self.kv.get(op.key)
        created = old.create_revision if old else self.rev
        self.kv[op.key] = KeyValue(op.key, op.value, created, self.rev, op.lease)
        if op.lease:
            self.leases[op.lease].keys[op.key] = None

    def grant(self, now: float, ttl: float) -> int:
        lease_id = self.next_lease
        self.next_lease += 1
        self.leases[lease_id] = _Lease(ttl, now + ttl)
        heapq.heappush(self.expiry_heap, (now + ttl, lease_id))
        return lease_id

    def keepalive(self, now: float, lease_id: int) -> bool:
        lease = self.leases.get(lease_id)
        if lease is None:
            return False
        lease.expiry = now + lease.ttl
        heapq.heappush(self.expiry_heap, (lease.expiry, lease_id))
        return True

    def time_to_live(self, now: float, lease_id: int) -> float | None:
        lease = self.leases.get(lease_id)
        return None if lease is None else max(0.0, lease.expiry - now)

    def revoke(self, lease_id: int) -> None:
        if lease_id in self.leases:
            self._drop_lease(lease_id)


class SimStoreClient:
    """The `Store` as one host sees it: every call first asks the world whether this host
    reaches a store quorum right now, and raises StoreUnavailable if not. A host whose own
    store member lost its data (`store_wipe` with `member`) talks to that member alone: an
    empty store that always answers it (the world's `foreign_stores`)."""

    def __init__(self, world: World, store: SimStore, host: str) -> None:
        self.world = world
        self.cluster_store = store
        self.host = host
        self.granted: dict[int, float] = {}  # lease -> when it was granted

    @property
    def store(self) -> SimStore:
        foreign: dict[str, SimStore] = getattr(self.world, "foreign_stores", {})
        return foreign.get(self.host, self.cluster_store)

    def _now(self) -> float:
        now = self.world.now
        store = self.store
        if store is self.cluster_store and not self.world.store_reachable(self.host):
            self._wait()
            raise StoreUnavailable(f"{self.host} reaches no store quorum")
        if not store.available(now):
            self._wait()
            raise StoreUnavailable(f"{self.host} reaches no store quorum")
        store.expire(now)
        return now

    def _wait(self) -> None:
        """The call's latency (`sim.calls`): the request is applied when it is made, the
        answer comes back this much later."""
        calls = getattr(self.world, "calls", None)
        if calls is not None:
            calls.charge(self.host, "store")

    def _answered(self) -> None:
        """After a write was applied: wait for the answer, which may be lost."""
        self._wait()
        calls = getattr(self.world, "calls", None)
        if calls is not None and calls.answer_lost(self.host):
            raise StoreUnavailable(f"{self.host}: the store's answer was lost")

    def revision(self) -> int:
        self._now()
        revision = self.store.rev
        self._wait()
        return revision

    def get(self, key: str) -> KeyValue | None:
        self._now()
        found = self.store.get(key)
        self._wait()
        return found

    def get_prefix(self, prefix: str, guard: Compare | None = None) -> RangeResult:
        self._now()
        found = self.store.get_prefix(prefix, guard)
        self._wait()
        return found

    def txn(self, compare: list[Compare], success: list[Op], failure: list[Op] | None = None
            ) -> TxnResult:
        now = self._now()
        result = self.store.txn(compare, success, failure)
        if result.succeeded:
            self._saw_registration(now, success)
        self._answered()
        return result

    def grant(self, ttl: float) -> int:
        now = self._now()
        lease = self.store.grant(now, ttl)
        self.granted[lease] = now
        self._answered()
        return lease

    def keepalive(self, lease: int) -> bool:
        now = self._now()
        alive = self.store.keepalive(now, lease)
        mine = self.store.kv.get(f"hosts/{self.host}/lease")
        if alive and mine is not None and mine.lease == lease:
            self._renewed(now)
        self._answered()
        return alive

    def time_to_live(self, lease: int) -> float | None:
        ttl = self.store.time_to_live(self._now(), lease)
        self._wait()
        return ttl

    def revoke(self, lease: int) -> None:
        self._now()
        self.store.revoke(lease)
        self._answered()

    # ---------------------------------------------------------------- ground truth
    def _saw_registration(self, now: float, ops: list[Op]) -> None:
        key = f"hosts/{self.host}/lease"
        for op in ops:
            if isinstance(op, Put) and op.key == key and op.lease in self.granted:
                self._renewed(self.granted[op.lease])

    def _renewed(self, sent: float) -> None:
        """The host's lease was renewed by a request made at `sent` (for the checker's
        `stale_pet` and `overdue_vm`, which judge by what really happened)."""
        record = getattr(self.world, "lease_renewed", None)
        if record is not None:
            record(self.host, sent)
