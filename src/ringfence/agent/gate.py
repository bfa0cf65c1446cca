"""The gate: how the agent's three threads share one `Agent` without blocking each other.

`ringfence agent` runs the agent's three cycles in three threads, as the simulator runs them
in three greenlets (`sim.cycles`): heartbeats (`Agent.beat`), the lease (`Agent.keep_leases`)
and decisions (`Agent.tick`). A cycle holds the gate while it runs Python code, and lets it go
while it waits in a store or hypervisor call (`GatedStore`, `GatedHypervisor`): so a decision
cycle stuck for seconds in a slow etcd call never delays a heartbeat or a watchdog pet, and
the cycles interleave only at those calls, exactly where the simulator's greenlets switch.

Hand-written: a lock that knows its owner, so that a call made by a thread that does not hold
the gate is left alone. Twenty lines over `threading`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from ringfence.store.base import Compare, KeyValue, Op, RangeResult, Store, TxnResult

__all__ = ["Gate", "GatedHypervisor", "GatedStore"]


class Gate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._lock.acquire()
        self._owner = threading.get_ident()
        try:
            yield
        finally:
            self._owner = None
            self._lock.release()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Around a call that waits: let the other cycles run meanwhile."""
        me = threading.get_ident()
        if self._owner != me:
            yield
            return
        self._owner = None
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._owner = me


class GatedStore:
    """A `Store` whose every call lets the gate go while it waits (same semantics)."""

    def __init__(self, inner: Store, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate

    def revision(self) -> int:
        with self.gate.released():
            return self.inner.revision()

    def get(self, key: str) -> KeyValue | None:
        with self.gate.released():
            return self.inner.get(key)

    def get_prefix(self, prefix: str, guard: Compare | None = None) -> RangeResult:
        with self.gate.released():
            return self.inner.get_prefix(prefix, guard)

    def txn(self, compare: list[Compare], success: list[Op], failure: list[Op] | None = None
            ) -> TxnResult:
        with self.gate.released():
            return self.inner.txn(compare, success, failure)

    def grant(self, ttl: float) -> int:
        with self.gate.released():
            return self.inner.grant(ttl)

    def keepalive(self, lease: int) -> bool:
        with self.gate.released():
            return self.inner.keepalive(lease)

    def time_to_live(self, lease: int) -> float | None:
        with self.gate.released():
            return self.inner.time_to_live(lease)

    def revoke(self, lease: int) -> None:
        with self.gate.released():
            self.inner.revoke(lease)


class GatedHypervisor:
    """A `Hypervisor` whose calls let the gate go while they wait. Jobs are handed out at
    once anyway; listing and destroying may take a moment."""

    def __init__(self, inner: Any, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate

    def list_running(self) -> dict[str, int]:
        with self.gate.released():
            return dict(self.inner.list_running())

    def start(self, vm: str, token: int) -> Any:
        with self.gate.released():
            return self.inner.start(vm, token)

    def stop(self, vm: str, token: int) -> Any:
        with self.gate.released():
            return self.inner.stop(vm, token)

    def migrate(self, vm: str, target: str, token: int) -> Any:
        with self.gate.released():
            return self.inner.migrate(vm, target, token)

    def destroy(self, vm: str) -> None:
        with self.gate.released():
            self.inner.destroy(vm)
