"""Where the API reads the cluster from: a small interface, so that tests can drive the API.

:class:`ClusterSource` is what `create_app` needs: the cluster file, the status document
(`ringfence.status.collect`: what the store says), the journal (every host's events) and a
store to write operator requests into, plus an optional journal of its own for refusals, and
the alert outbox (what the alert routes still owe).

:class:`StoreSource` is the real one, used by every agent and by the demo: it reads the store
the way `ringfence status` does (an operator's connection that proves the store's identity),
and the journal from the copy the hosts mirror into the store, merged with the local journal
files it is given (this host's own record, which survives a lost store). Reads are cached for
`ttl` seconds: many browsers and scrapers cost the store one read per `ttl`.

Failure semantics: the status document of an unreachable store says so (``quorum`` false, the
error in ``store.error``) instead of raising; a journal file that can not be read contributes
nothing; :meth:`record` never raises.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ringfence.config import ClusterConfig
from ringfence.store.base import Store, StoreUnavailable

__all__ = ["ClusterSource", "StoreSource", "entry_key", "read_outbox"]


class ClusterSource(Protocol):
    """What the API reads and writes through (see the module docstring)."""

    @property
    def config(self) -> ClusterConfig: ...

    @property
    def store(self) -> Store: ...

    def status(self) -> dict[str, Any]:
        """`ringfence status --json`'s document; never raises (an unreachable store is
        ``store.quorum`` false with ``store.error``)."""
        ...

    def journal(self) -> list[dict[str, Any]]:
        """Every host's journal entries, oldest first; never raises."""
        ...

    def outbox(self) -> list[dict[str, Any]]:
        """The alerts the routes still owe (`alerts.worker.OUTBOX` records: ``alert``,
        ``done``); never raises (a store that does not answer: none)."""
        ...

    def record(self, kind: str, **fields: Any) -> None:
        """Journal an event of the API's own (a refused request); never raises."""
        ...


def entry_key(entry: dict[str, Any]) -> tuple[float, str, int, str]:
    """Sort and identity key of a journal entry: (t, writer, seq, kind)."""
    return (float(entry.get("t", 0) or 0), str(entry.get("by") or ""),
            int(entry.get("seq", 0) or 0), str(entry.get("kind")))


def unreachable(config: ClusterConfig, exc: Exception) -> dict[str, Any]:
    """The status document of a store that does not answer (as `ringfence status`)."""
    from ringfence.status import store_kind

    return {"cluster": config.name,
            "store": {"kind": store_kind(config), "quorum": False,
                      "members": config.store_members(), "error": str(exc), "revision": None},
            "leader": None, "hosts": {}, "vms": {}, "incidents": []}


def read_outbox(store: Store) -> list[dict[str, Any]]:
    """The outbox records of `store` (read only: `alerts.worker` owns them); none when the
    store does not answer."""
    from ringfence.alerts.worker import OUTBOX

    try:
        return [kv.value for kv in store.get_prefix(OUTBOX).items
                if isinstance(kv.value, dict)]
    except StoreUnavailable:
        return []


class StoreSource:
    """The real source: the store, and journal files (see the module docstring)."""

    def __init__(self, config: ClusterConfig, store: Store, *,
                 journal_files: Sequence[Path] = (),
                 record: Callable[..., None] | None = None, ttl: float = 0.5) -> None:
        self._config = config
        self._store = store
        self.journal_files = list(journal_files)
        self._record = record
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}

    @property
    def config(self) -> ClusterConfig:
        return self._config

    @property
    def store(self) -> Store:
        return self._store

    def _cached(self, name: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
        value = compute()
        with self._lock:
            self._cache[name] = (time.monotonic(), value)
        return value

    def status(self) -> dict[str, Any]:
        from ringfence.status import collect

        def compute() -> dict[str, Any]:
            try:
                return collect(self._config, self._store)
            except StoreUnavailable as exc:
                return unreachable(self._config, exc)

        document: dict[str, Any] = self._cached("status", compute)
        return document

    def journal(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._cached("journal", self._read_journal)
        return entries

    def _read_journal(self) -> list[dict[str, Any]]:
        from ringfence.agent.journal import read_journal
        from ringfence.journal.store_mirror import read_store_journal

        merged: dict[tuple[float, str, int, str], dict[str, Any]] = {}
        with contextlib.suppress(StoreUnavailable):
            for entry in read_store_journal(self._store):
                merged[entry_key(entry)] = entry
        for path in self.journal_files:
            for entry in read_journal(path):
                merged.setdefault(entry_key(entry), entry)
        return [merged[key] for key in sorted(merged)]

    def outbox(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self._cached("outbox", lambda: read_outbox(self._store))
        return records

    def record(self, kind: str, **fields: Any) -> None:
        if self._record is not None:
            with contextlib.suppress(Exception):
                self._record(kind, **fields)
