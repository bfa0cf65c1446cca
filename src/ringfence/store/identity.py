"""Which store this is: the cluster identity, and a `Store` that believes only its own.

A store answers at an address; that does not make it this cluster's store. A wiped etcd, an
etcd member that lost its data and came back as a new cluster, a deleted SQLite file recreated
empty, a backup restored over a live store: each answers, and each would be believed by an
agent that only asks "do I reach a store?". An empty store then looks like a cluster in which
no host holds a lease, which the manager once took for "every other host expired" (issue 9:
all six VMs of the demo ran twice for 40 s).

So a store carries an identity, written once by an explicit bootstrap (`core.identity` decides
who may): `cluster/identity = {cluster, id, generation}`. Every agent remembers the identity it
joined (and the highest revision it saw) on its own disk, and from then on talks to the store
through `IdentifiedStore`, which makes every call prove it is still that store:

- every transaction carries ``Compare.equals(cluster/identity, <identity>)``, so no write ever
  lands in another store (an empty one included);
- every read is a guarded read (`Store.get_prefix` with a guard) of the same compare, and
  `revision()` is a guarded read of the identity key itself: no decision is taken on the
  contents of another store;
- a keepalive that finds the lease gone, or a transaction that lost, checks the identity before
  the caller concludes anything ("my lease expired" is only true in my store);
- revisions must never go backwards (a store restored from an older backup has the same
  identity but reissues fencing tokens): a call answers at least the highest revision seen
  before it was made (answers of overlapping calls on two connections may cross).

Any of these failing raises `StoreForeign`, a `StoreUnavailable`: to an agent, a foreign store
is an unreachable store (it keeps its VMs only while its lease is fresh, or in failsafe), never
a store in which its lease is gone. Atomicity: each guarded call is one engine call (one
transaction, one guarded range). Unreachable: the engine's `StoreUnavailable` passes through.

Before the identity is known (`IdentityRef.identity` is None) the agent's own store passes calls
through unguarded (it must read an empty store to bootstrap it); a `strict` one (the journal
mirror, operator tools) refuses every call with `StoreUnavailable` until then.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from ringfence.store.base import (
    Compare,
    GuardFailed,
    KeyValue,
    Op,
    RangeResult,
    Store,
    StoreUnavailable,
    TxnResult,
)

__all__ = [
    "IDENTITY_KEY",
    "IdentifiedStore",
    "IdentityRef",
    "StoreForeign",
    "StoreIdentity",
    "read_identity",
]

IDENTITY_KEY = "cluster/identity"


class StoreForeign(StoreUnavailable):
    """The store answers, but it is not the store this host joined (see the module)."""


@functools.lru_cache(maxsize=64)
def _fingerprint(identity: str, generation: int) -> int:
    """Asked at every heartbeat: computed once per identity."""
    digest = hashlib.sha256(f"{identity}/{generation}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 or 1


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """`cluster`: the cluster's name; `id`: random, made at bootstrap; `generation`: 1 for the
    first bootstrap, one more for each deliberate re-bootstrap after a store was lost."""

    cluster: str
    id: str
    generation: int

    def value(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "id": self.id, "generation": self.generation}

    @property
    def fingerprint(self) -> int:
        """A 63-bit number that names this identity in heartbeats (0 means none)."""
        return _fingerprint(self.id, self.generation)

    def short(self) -> str:
        return f"{self.id[:8]} (cluster {self.cluster}, generation {self.generation})"

    @staticmethod
    def parse(value: object) -> StoreIdentity | None:
        """The identity a stored or remembered value holds; None if it is not one."""
        if not isinstance(value, dict):
            return None
        cluster, ident, generation = value.get("cluster"), value.get("id"), value.get(
            "generation")
        if not isinstance(cluster, str) or not isinstance(ident, str) or not ident:
            return None
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
            return None
        return StoreIdentity(cluster, ident, generation)


def read_identity(store: Store) -> tuple[KeyValue | None, StoreIdentity | None]:
    """The identity key as stored (None: absent) and the identity it holds (None: absent or
    not an identity). Raises StoreUnavailable."""
    found = store.get(IDENTITY_KEY)
    return found, StoreIdentity.parse(found.value) if found is not None else None


class IdentityRef:
    """The identity a host joined, shared by its store wrappers (the decision cycle's and the
    journal mirror's thread), and the highest revision any of them saw."""

    def __init__(self, identity: StoreIdentity | None = None, revision: int = 0) -> None:
        self._lock = threading.Lock()
        self.identity = identity
        self.max_revision = revision

    def set(self, identity: StoreIdentity | None, revision: int = 0) -> None:
        with self._lock:
            self.identity = identity
            self.max_revision = revision

    def floor(self) -> int:
        """The highest revision seen so far: take it *before* a call, and give it to `saw`
        with the call's answer."""
        with self._lock:
            return self.max_revision

    def saw(self, revision: int, floor: int | None = None) -> None:
        """Record a revision the store answered to a call made when `floor` was the highest
        revision seen (None: now); StoreForeign if the answer is below it.

        Only a call made *after* a revision was seen must answer at least that revision (a
        linearizable store promises nothing more): two connections of one host (the decision
        cycle's and the lease cycle's) whose calls overlap may get their answers in either
        order, and the later answer of a lower revision is no store gone back."""
        with self._lock:
            if self.identity is None:
                return
            least = self.max_revision if floor is None else floor
            if revision < least:
                raise StoreForeign(
                    f"the store's revision went back from {least} to {revision}: "
                    "it was wiped, replaced or restored from an older backup")
            self.max_revision = max(self.max_revision, revision)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _answers(method: Callable[Concatenate[IdentifiedStore, _P], _R]
             ) -> Callable[Concatenate[IdentifiedStore, _P], _R]:
    """Keep when (the caller's clock, read before the call) the newest call that the store
    answered was made: a call that raised, StoreForeign included, is not an answer."""
    def call(self: IdentifiedStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        sent = None if self.clock is None else self.clock()
        result = method(self, *args, **kwargs)
        if sent is not None and (self.answered is None or sent > self.answered):
            self.answered = sent
        return result
    return call


class IdentifiedStore:
    """A `Store` that answers only while it is the store of `ref.identity` (see the module).
    With a `clock`, `answered` is when the newest call that this store answered was sent (the
    agent's heartbeats say how fresh its news of the store is: `core.failsafe`)."""

    def __init__(self, inner: Store, ref: IdentityRef, *, strict: bool = False,
                 on_foreign: Callable[[str], None] | None = None,
                 learn_cluster: str | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.inner = inner
        self.ref = ref
        self.strict = strict
        self.on_foreign = on_foreign  # told the reason each time a call finds another store
        self.learn_cluster = learn_cluster  # tools: take the store's identity if it is ours
        self.writes = 0  # writes (transactions, revokes) tried here (see `Agent.revision`)
        self.clock = clock
        self.answered: float | None = None

    # ----------------------------------------------------------------- the guard
    def _identity(self) -> StoreIdentity | None:
        identity = self.ref.identity
        if identity is None and self.learn_cluster is not None:
            identity = self._learn(self.learn_cluster)
        if identity is None and self.strict:
            raise StoreUnavailable("this host has not yet joined the cluster's store")
        return identity

    def _learn(self, cluster: str) -> StoreIdentity:
        """An operator's tool has no memory of the store: it takes the identity the store
        shows, if it is this cluster's, and holds the store to it from then on."""
        found, identity = read_identity(self.inner)
        if found is None:
            raise StoreForeign("the store holds no cluster identity: it was never "
                               "bootstrapped (start the agents, one with --bootstrap or named "
                               "by store.bootstrap), or it was wiped")
        if identity is None or identity.cluster != cluster:
            what = (f"the store of cluster {identity.cluster!r}" if identity is not None
                    else f"{found.value!r} where the cluster identity belongs")
            raise StoreForeign(f"not this cluster's store: it holds {what}")
        self.ref.set(identity)
        return identity

    @staticmethod
    def _compare(identity: StoreIdentity) -> Compare:
        return Compare.equals(IDENTITY_KEY, identity.value())

    def _foreign(self, identity: StoreIdentity) -> StoreForeign:
        """Say what the store holds instead of our identity (one more read)."""
        try:
            found, other = read_identity(self.inner)
        except StoreUnavailable as exc:
            return self._tell(f"the store no longer shows identity {identity.short()} ({exc})")
        if found is None:
            what = "it holds no cluster identity: an empty or wiped store"
        elif other is None:
            what = f"it holds {found.value!r} where the cluster identity belongs"
        elif other.cluster != identity.cluster:
            what = f"it is the store of cluster {other.cluster!r}"
        else:
            what = f"it has identity {other.short()}"
        return self._tell(f"this host joined store {identity.short()}, and {what}")

    def _tell(self, reason: str) -> StoreForeign:
        if self.on_foreign is not None:
            self.on_foreign(reason)
        return StoreForeign(f"not this cluster's store: {reason}")

    def _range(self, prefix: str, identity: StoreIdentity) -> RangeResult:
        floor = self.ref.floor()
        try:
            result = self.inner.get_prefix(prefix, guard=self._compare(identity))
        except GuardFailed:
            raise self._foreign(identity) from None
        self._saw(result.revision, floor)
        return result

    def _saw(self, revision: int, floor: int) -> None:
        try:
            self.ref.saw(revision, floor)
        except StoreForeign as exc:
            raise self._tell(str(exc)) from None

    # ----------------------------------------------------------------- the Store protocol
    @_answers
    def revision(self) -> int:
        identity = self._identity()
        if identity is None:
            return self.inner.revision()
        return self._range(IDENTITY_KEY, identity).revision

    @_answers
    def get(self, key: str) -> KeyValue | None:
        identity = self._identity()
        if identity is None:
            return self.inner.get(key)
        return next((kv for kv in self._range(key, identity).items if kv.key == key), None)

    @_answers
    def get_prefix(self, prefix: str, guard: Compare | None = None) -> RangeResult:
        identity = self._identity()
        if identity is None or guard is not None:
            return self.inner.get_prefix(prefix, guard)
        return self._range(prefix, identity)

    @_answers
    def txn(self, compare: list[Compare], success: list[Op], failure: list[Op] | None = None
            ) -> TxnResult:
        self.writes += 1  # counted before the call: one that raised may have been applied
        identity = self._identity()
        if identity is None:
            return self.inner.txn(compare, success, failure)
        if failure:
            # A failure branch would be applied in a foreign store, where the guard fails.
            raise ValueError("a transaction guarded by the store identity takes no failure ops")
        floor = self.ref.floor()
        result = self.inner.txn([self._compare(identity), *compare], success)
        if not result.succeeded:
            found = self.inner.get(IDENTITY_KEY)
            if found is None or found.value != identity.value():
                raise self._foreign(identity)
        self._saw(result.revision, floor)
        return result

    @_answers
    def grant(self, ttl: float) -> int:
        self._identity()
        return self.inner.grant(ttl)

    @_answers
    def keepalive(self, lease: int) -> bool:
        identity = self._identity()
        alive = self.inner.keepalive(lease)
        if not alive and identity is not None:
            found = self.inner.get(IDENTITY_KEY)
            if found is None or found.value != identity.value():
                raise self._foreign(identity)
        return alive

    @_answers
    def time_to_live(self, lease: int) -> float | None:
        self._identity()
        return self.inner.time_to_live(lease)

    @_answers
    def revoke(self, lease: int) -> None:
        self.writes += 1  # deleting the lease's keys moves the revision like a transaction
        self._identity()
        self.inner.revoke(lease)
