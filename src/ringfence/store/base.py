"""The `Store` protocol: the coordination store every safety decision goes through.

The model is etcd v3's, because etcd is the multi-host engine and its semantics are the ones we
can prove things about: a flat key space, a single monotonically increasing *revision* bumped by
every write, keys optionally attached to a *lease* (deleted when the lease expires), and
multi-key compare-and-set *transactions*. The embedded SQLite engine and the simulator implement
the same semantics.

Failure semantics, for every method (Patroni's rule): **raise `StoreUnavailable` when the store
cannot be reached or has no quorum; return a falsy result when a compare-and-set lost.** A call
that raised may or may not have been applied (the answer was lost); callers therefore write only
idempotent values or guard writes by revision, and re-read before they act again.

**Leases and outages** (every engine, etcd's rule): a lease expires `ttl` seconds after its
grant or last keepalive, counted on the store's clock, but only while the store can serve. When
it could serve nobody for a while (etcd: no leader; the simulated etcd: no quorum; SQLite: the
file could not be written by anybody, see `store.sqlite`), every lease that was alive when the
outage began has at least its full TTL left once it serves again. So a store stall longer than
the host lease never makes every host find its own lease gone; a lease that had run out before
the outage began stays gone. Engines may expire late (etcd checks every 500 ms and counts whole
seconds); none expires early.

**Identity**: which store this is, is not the engine's business; `store.identity` guards every
call of an agent with the cluster identity it joined (a compare on every transaction, a guard on
every read), so that an empty or foreign store at the same address is never believed.

Revisions double as fencing tokens: the `mod_revision` of `vms/<vm>/owner` is the token that
every hypervisor action for that VM carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

JsonValue = dict[str, Any]


class StoreUnavailable(Exception):
    """The store could not be reached, or it has no quorum. Nothing can be concluded."""


class GuardFailed(Exception):
    """A guarded read found its guard false: nothing was read (see `Store.get_prefix`)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as read: its value and the revisions that wrote it.

    `create_revision` is the revision that created the key (it changes when a key is deleted and
    created again); `mod_revision` the revision of its last write; `lease` the lease it is
    attached to (0: none).
    """

    key: str
    value: JsonValue
    create_revision: int
    mod_revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction. `target` names what is compared on `key`.

    - `mod`: the key's mod_revision equals `value` (0: the key is absent)
    - `create`: the key's create_revision equals `value` (0: the key is absent)
    - `value`: the key's value equals `value` (a dict; an absent key never equals)
    - `lease`: the key is attached to lease `value`
    """

    key: str
    target: Literal["mod", "create", "value", "lease"]
    value: Any

    @staticmethod
    def absent(key: str) -> Compare:
        return Compare(key, "create", 0)

    @staticmethod
    def unchanged(key: str, mod_revision: int) -> Compare:
        return Compare(key, "mod", mod_revision)

    @staticmethod
    def equals(key: str, value: JsonValue) -> Compare:
        return Compare(key, "value", value)

    def holds(self, current: KeyValue | None) -> bool:
        """Evaluate this condition against the current state of `key` (None: absent)."""
        if self.target == "mod":
            return bool((current.mod_revision if current else 0) == self.value)
        if self.target == "create":
            return bool((current.create_revision if current else 0) == self.value)
        if self.target == "lease":
            return current is not None and bool(current.lease == self.value)
        return current is not None and bool(current.value == self.value)


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: JsonValue
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Op = Put | Delete


def check_branch(ops: list[Op], name: str) -> None:
    """Reject a branch that names a key twice, as etcd does ("duplicate key given in txn")."""
    seen: set[str] = set()
    for op in ops:
        if op.key in seen:
            raise ValueError(f"txn {name} ops name key {op.key!r} twice; etcd rejects that")
        seen.add(op.key)


@dataclass(frozen=True, slots=True)
class TxnResult:
    """`succeeded`: every compare held and the success ops were applied atomically at
    `revision`; otherwise the failure ops (if any) were applied and `revision` is the store's
    revision after them."""

    succeeded: bool
    revision: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    """Keys under a prefix, read at one consistent `revision`."""

    items: tuple[KeyValue, ...]
    revision: int
    by_key: dict[str, KeyValue] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.by_key:
            object.__setattr__(self, "by_key", {kv.key: kv for kv in self.items})


class Store(Protocol):
    """The coordination store as one host sees it. Every call is linearizable.

    Implementations: `ringfence.sim.store.SimStoreClient` (simulated etcd), and the real
    engines. A client is bound to the host that uses it; the simulator uses that to decide
    reachability.
    """

    def revision(self) -> int:
        """The store's current revision. Cheap; used to skip re-reading unchanged state.
        Raises StoreUnavailable."""
        ...

    def get(self, key: str) -> KeyValue | None:
        """Linearizable read of one key; None if absent. Raises StoreUnavailable."""
        ...

    def get_prefix(self, prefix: str, guard: Compare | None = None) -> RangeResult:
        """Linearizable read of every key starting with `prefix`, sorted by key, at one
        revision. With `guard`: atomically, only if the guard holds at that revision, else
        `GuardFailed` (etcd: a transaction whose success branch is the range). Raises
        StoreUnavailable."""
        ...

    def txn(
        self, compare: list[Compare], success: list[Op], failure: list[Op] | None = None
    ) -> TxnResult:
        """Atomic compare-and-set over several keys. Returns succeeded=False when a compare
        failed (the compare-and-set lost: nothing of `success` was applied). Raises
        StoreUnavailable; then the transaction may or may not have been applied."""
        ...

    def grant(self, ttl: float) -> int:
        """Create a lease of `ttl` seconds on the store's clock; returns its id.
        Raises StoreUnavailable."""
        ...

    def keepalive(self, lease: int) -> bool:
        """Restart the lease's TTL. False if the lease has expired or was revoked (its keys
        are gone). Raises StoreUnavailable."""
        ...

    def time_to_live(self, lease: int) -> float | None:
        """Seconds until the lease expires, measured on the store's clock; None if it is gone.
        Raises StoreUnavailable."""
        ...

    def revoke(self, lease: int) -> None:
        """End the lease now and delete its keys. Revoking a gone lease is not an error.
        Raises StoreUnavailable."""
        ...
