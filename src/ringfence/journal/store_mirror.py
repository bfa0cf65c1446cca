"""The journal in the store: every host's events, mirrored from its local file into the
coordination store (`journal/<host>/<seq>`), so that any host (or `ringfence journal export
--store`) sees the whole cluster's history, not only its own.

The local append-only file stays the host's own record: it is written first, synchronously, and
survives a lost store. The store copy is written by a background thread in batches (one
transaction of up to `BATCH` events), never from the decision cycle: a slow or unreachable
store delays the mirror, never a decision. While the store is unreachable events wait in memory
(at most `BACKLOG`; beyond that the oldest are dropped from the mirror, counted, and still in
the local file).

Works over any `Store` (SQLite: rows of its one table; etcd: keys, which etcd's compaction does
not remove, since compaction drops old revisions, not live keys). Retention: each host deletes
its own mirrored events beyond the newest `KEEP` (and `journal export --store` says how far
back the store goes).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Mapping
from typing import Any

from ringfence.store.base import Delete, Op, Put, Store, StoreUnavailable

PREFIX = "journal/"
BATCH = 50
BACKLOG = 10_000
KEEP = 20_000
RETRY = 1.0


def journal_key(host: str, boot: int, seq: int) -> str:
    """Sorted by time within a host: the agent's start (seconds) and its event number."""
    return f"{PREFIX}{host}/{boot:012d}-{seq:09d}"


class StoreMirror:
    """Copies journal entries (dicts as the local file holds them) into the store."""

    def __init__(self, store: Store, host: str, boot: int) -> None:
        self.store = store
        self.host = host
        self.boot = boot
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.dropped = 0
        self.written = 0
        self.oldest_kept = 1  # the first of this boot's events still in the store
        self.thread = threading.Thread(target=self._run, name=f"journal-mirror-{host}",
                                       daemon=True)
        self.thread.start()

    def put(self, entry: Mapping[str, Any]) -> None:
        """Queue one entry. Never blocks, never raises."""
        if self.queue.qsize() >= BACKLOG:
            with contextlib.suppress(queue.Empty):
                self.queue.get_nowait()
                self.dropped += 1
        self.queue.put(dict(entry))

    def close(self, timeout: float = 2.0) -> None:
        """Flush what can be flushed within `timeout`, then stop."""
        self.queue.put(None)
        self.thread.join(timeout)

    def _trim_earlier_boots(self) -> None:
        """At start: keep only the newest `KEEP` of this host's mirrored events."""
        with contextlib.suppress(StoreUnavailable):
            keys = [kv.key for kv in self.store.get_prefix(f"{PREFIX}{self.host}/").items]
            doomed = keys[: max(0, len(keys) - KEEP)]
            for start in range(0, len(doomed), BATCH):
                self.store.txn([], [Delete(k) for k in doomed[start:start + BATCH]])

    def _run(self) -> None:
        self._trim_earlier_boots()
        pending: list[dict[str, Any]] = []
        stopping = False
        while not (stopping and not pending):
            try:
                item = self.queue.get(timeout=RETRY if pending else None)
                if item is None:
                    stopping = True
                else:
                    pending.append(item)
                while len(pending) < BATCH and not stopping:
                    item = self.queue.get_nowait()
                    if item is None:
                        stopping = True
                    else:
                        pending.append(item)
            except queue.Empty:
                pass
            if pending and not self._write(pending[:BATCH]):
                if stopping:
                    return  # the store does not answer: the local file has everything
                continue
            del pending[:BATCH]

    def _write(self, batch: list[dict[str, Any]]) -> bool:
        ops: list[Op] = [Put(journal_key(self.host, self.boot, int(e.get("seq", 0))), e)
                         for e in batch]
        seqs = [int(e.get("seq", 0)) for e in batch]
        expired = range(self.oldest_kept,
                        min(max(seqs) - KEEP + 1, self.oldest_kept + BATCH, min(seqs)))
        ops += [Delete(journal_key(self.host, self.boot, seq)) for seq in expired]
        try:
            self.store.txn([], ops)
        except StoreUnavailable:
            return False
        except Exception:  # the mirror must never die: drop this batch (the file has it)
            self.dropped += len(batch)
            return True
        self.written += len(batch)
        self.oldest_kept += len(expired)
        return True


def read_store_journal(store: Store) -> list[dict[str, Any]]:
    """Every mirrored entry, in key order. Raises StoreUnavailable."""
    return [dict(kv.value) for kv in store.get_prefix(PREFIX).items]
