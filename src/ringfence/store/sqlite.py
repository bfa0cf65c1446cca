"""The embedded coordination store: etcd v3's semantics on one SQLite file.

Every agent and the manager of a single-machine cluster (the demo, the tests, a lab on one box)
open the same database file; SQLite's locking makes each call one serialisable transaction, and
the file's revision counter, keys and leases behave exactly like etcd's:

- one global *revision*, bumped once by every transaction that changes at least one key (a
  transaction whose deletes find nothing, a grant or a keepalive leaves it unchanged, as in
  etcd); keys carry ``create_revision``, ``mod_revision`` and ``lease``;
- a *lease* lives ``ttl`` seconds on the store's clock after its grant or last keepalive. At the
  start of every call, inside that call's transaction, each expired lease is removed and its keys
  are deleted in one revision (one revision per lease that still had keys), so no call ever sees
  an expired lease or its keys;
- ``txn`` is atomic: the compares are evaluated and the chosen branch applied under one write
  lock (``BEGIN IMMEDIATE``). As in the simulator, a branch that attaches a key to a lease that
  does not exist applies nothing and returns ``TxnResult(False, revision)``. A transaction that
  names one key twice in a branch raises ``ValueError``, as etcd rejects it.

**The store's clock is the machine's.** Lease time is measured with ``clock`` (default
``time.monotonic``, i.e. CLOCK_MONOTONIC, which every process of one machine shares and which
no wall-clock step moves). A SQLite store therefore spans one machine only: never put the file on
a network filesystem or share it between machines. CLOCK_MONOTONIC restarts at boot; a lease
whose expiry lies more than a second beyond ``now + ttl`` (impossible unless the clock went
back) is given its full TTL again from now, which is what etcd does to leases on a new leader.

**Leases outlive an outage, as in etcd** (the `Store` protocol's lease rule). etcd counts lease
time only while it has a leader and gives every lease its full TTL again on a new leader; the
SQLite store's "no leader" is a file nobody can write (locked by another process longer than
``busy_timeout``, a full disk, an I/O error). A call that fails that way marks the outage in a
small file beside the database (``PATH-outage``): its modification time carries the store
clock's value at the start of the failed call (the earliest one wins; a full disk can not take
a write, but it can take a timestamp). The next write transaction that succeeds, in whatever
process, first gives every lease that was alive when the outage began at least its full TTL
from now, and then clears the mark. Without this, a 12 s lock on the file made every host find
its own lease gone and self-fence. A lease that had expired before the outage began still
expires.

Failure semantics (the `Store` protocol's): every SQLite failure — the file cannot be opened,
is not a database, was written by a newer schema, or stays locked longer than ``busy_timeout``
— raises `StoreUnavailable`, never a raw ``sqlite3`` exception. With ``create=False`` (agents
that may not bootstrap, and operator tools) a missing file or a file without ringfence's schema
is `StoreUnavailable` too, and nothing is created. A file that was deleted or replaced while the
store had it open is `StoreUnavailable` on every call from then on (one store or none: the
unlinked copy is never used on). A call that raised may or may not have been applied only when
the failure struck during ``COMMIT``; otherwise it was rolled back.
A compare-and-set that lost returns ``TxnResult(False, ...)``. A stored value that is not a
JSON object (written by something else) raises ``ValueError`` naming the key.

Values are stored as canonical JSON (sorted keys, no spaces); value compares use the same
equality as `Compare.holds`. The schema is versioned in a ``meta`` table and created on first
use. The file runs in WAL mode with ``synchronous=FULL``: readers never wait for the writer, and a
committed revision survives power loss (a fencing token is never issued twice).

Threads: one connection per store object, guarded by a lock, so the runtime may call from any
thread. After ``fork`` the child opens its own connection (SQLite connections must not cross a
fork). Hand-written rather than a library because the job is small and exact: no SQLite library
offers etcd's revision and lease model.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from ringfence.store.base import (
    Compare,
    Delete,
    GuardFailed,
    JsonValue,
    KeyValue,
    Op,
    Put,
    RangeResult,
    StoreUnavailable,
    TxnResult,
    check_branch,
)

__all__ = [
    "SCHEMA_VERSION",
    "SqliteStore",
    "canonical_json",
    "check_branch",
    "decode_value",
    "prefix_end",
]

SCHEMA_VERSION = 1

_CLOCK_JUMP = 1.0
"""A lease expiring more than this beyond ``now + ttl`` means the clock went back: restart it."""

# SQLite primary result codes of a store that serves nobody (another process holds the lock,
# the disk is full, I/O fails), as opposed to a problem of one call.
_OUTAGE_CODES = frozenset({5, 6, 10, 13})  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kv ("
    " key BLOB PRIMARY KEY, value TEXT NOT NULL, create_revision INTEGER NOT NULL,"
    " mod_revision INTEGER NOT NULL, lease INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0",
    "CREATE TABLE IF NOT EXISTS leases ("
    " id INTEGER PRIMARY KEY, ttl REAL NOT NULL, expiry REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS leases_expiry ON leases (expiry)",
)

_T = TypeVar("_T")


def canonical_json(value: JsonValue) -> str:
    """The one encoding of a value that both real engines store and compare."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_value(key: str, text: str | bytes) -> JsonValue:
    """Decode a stored value; ``ValueError`` naming the key if it is not a JSON object."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"store key {key!r} holds a value that is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"store key {key!r} holds JSON that is not an object")
    return value


def prefix_end(prefix: bytes) -> bytes | None:
    """The first byte string after every string starting with `prefix` (None: no end)."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return None
    end[-1] += 1
    return bytes(end)


class SqliteStore:
    """The `Store` protocol on one SQLite file shared by the processes of one machine.

    `path`: the database file (its directory must exist). `create`: create the file and its
    schema on first use (mode 0600); otherwise a missing or foreign file is `StoreUnavailable`.
    `clock`: the store's clock for lease time; every process sharing the file must use the same
    one (CLOCK_MONOTONIC by default). `busy_timeout`: how long a call waits for another
    process's write lock before it raises `StoreUnavailable`.
    """

    def __init__(
        self,
        path: str,
        *,
        create: bool = True,
        clock: Callable[[], float] = time.monotonic,
        busy_timeout: float = 2.0,
    ) -> None:
        self.path = str(path)
        self.create = create
        self.clock = clock
        self.busy_timeout = busy_timeout
        self.outage_file = Path(f"{self.path}-outage")
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._inode: tuple[int, int] | None = None  # (device, inode) of the file we opened
        self._gone: str | None = None  # why the file we opened is no longer the store

    # ------------------------------------------------------------------ connection
    def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            self._check_file()
            return self._conn
        # A connection inherited across fork belongs to the parent: leave it untouched.
        self._conn = None
        if self._gone is not None:
            raise StoreUnavailable(self._gone)
        if not self.create and not os.path.exists(self.path):
            raise StoreUnavailable(
                f"sqlite store {self.path}: no such file (it is created when the cluster is "
                "bootstrapped; see `ringfence agent --bootstrap`)")
        if self.create and not os.path.exists(self.path):
            # Created readable by its owner only: the store holds the cluster's state.
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise StoreUnavailable(
                    f"sqlite store {self.path}: can not create it: {exc.strerror}") from None
        conn = sqlite3.connect(
            f"file:{quote(self.path)}?mode=rw",
            uri=True,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if not mode or str(mode[0]).lower() != "wal":
                raise StoreUnavailable(
                    f"sqlite store {self.path}: cannot use WAL mode here (got {mode}); "
                    "the file must be on a local filesystem"
                )
            conn.execute("PRAGMA synchronous=FULL")
            self._ensure_schema(conn)
            found = os.stat(self.path)
        except OSError as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            raise StoreUnavailable(f"sqlite store {self.path}: {exc.strerror}") from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            raise
        inode = (found.st_dev, found.st_ino)
        if self._inode is not None and inode != self._inode:
            conn.close()
            self._gone = (f"sqlite store {self.path}: the file was replaced since this store "
                          "opened it; it is not the same store")
            raise StoreUnavailable(self._gone)
        self._inode = inode
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def _check_file(self) -> None:
        """The open file must still be the one at `path`: a deleted or replaced store file
        is never used on (other processes would open another store at the same path)."""
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            found = None
        if found is None or (found.st_dev, found.st_ino) != self._inode:
            self._gone = (f"sqlite store {self.path}: the file was "
                          f"{'deleted' if found is None else 'replaced'} while in use; it is "
                          "not this cluster's store any more")
            self._discard(self._conn)
            raise StoreUnavailable(self._gone)

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if row is None and not self.create:
            raise StoreUnavailable(f"sqlite store {self.path}: not a ringfence store (no "
                                   "schema), and this store may not create one")
        if row is None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                first_lease = (secrets.randbits(30) + 1) << 32  # unique per database
                conn.executemany(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                    [("schema", SCHEMA_VERSION), ("revision", 1), ("next_lease", first_lease)],
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        found = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if found is None or int(found[0]) != SCHEMA_VERSION:
            raise StoreUnavailable(
                f"sqlite store {self.path}: schema version {found[0] if found else 'missing'}, "
                f"this ringfence reads version {SCHEMA_VERSION}"
            )

    def _transaction(
        self, body: Callable[[sqlite3.Connection, float], _T], *, write: bool
    ) -> _T:
        """Run `body(conn, now)` in one transaction after reaping expired leases.

        Reads run in a deferred (snapshot) transaction unless a lease is due, in which case the
        call takes the write lock like a write and reaps first. `now` is read after the lock
        is held, so lease time never runs backwards between serialised writers."""
        with self._lock:
            conn: sqlite3.Connection | None = None
            started = self.clock()
            try:
                conn = self._connection()
                if not write:
                    conn.execute("BEGIN")
                    now = self.clock()
                    if not self._leases_due(conn, now):
                        result = body(conn, now)
                        conn.execute("COMMIT")
                        return result
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                now = self.clock()
                outage = self._outage_began()
                if outage is not None:
                    self._restart_leases(conn, now, outage)
                self._reap(conn, now)
                result = body(conn, now)
                conn.execute("COMMIT")
                if outage is not None:
                    self._clear_outage()
                return result
            except sqlite3.Error as exc:
                self._discard(conn)
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _OUTAGE_CODES:
                    self._mark_outage(started)
                raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc
            except BaseException:
                if conn is not None:
                    self._rollback(conn)
                raise

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._discard(conn)

    def _discard(self, conn: sqlite3.Connection | None) -> None:
        """Drop a connection after a SQLite error; the next call opens a fresh one."""
        if conn is None:
            return
        if self._conn is conn:
            self._conn = None
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()

    # ------------------------------------------------------------------ outages
    def _outage_began(self) -> float | None:
        """The store-clock time at which the pending outage began, or None."""
        try:
            mark = self.outage_file.stat().st_mtime_ns
        except OSError:
            return None
        return mark / 1e9 if mark else None

    def _mark_outage(self, began: float) -> None:
        """Record (the earliest start of) an outage for whichever process writes next."""
        marked = self._outage_began()
        if marked is not None and marked <= began:
            return
        stamp = max(1, int(began * 1e9))
        with contextlib.suppress(OSError):
            if not self.outage_file.exists():
                self.outage_file.touch(mode=0o600)
            os.utime(self.outage_file, ns=(stamp, stamp))

    def _clear_outage(self) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.outage_file, ns=(0, 0))

    @staticmethod
    def _restart_leases(conn: sqlite3.Connection, now: float, outage: float) -> None:
        """etcd's new leader: every lease alive when the outage began gets its full TTL."""
        conn.execute(
            "UPDATE leases SET expiry = MAX(expiry, ? + ttl) WHERE expiry > ?", (now, outage)
        )

    # ------------------------------------------------------------------ leases and revisions
    @staticmethod
    def _leases_due(conn: sqlite3.Connection, now: float) -> bool:
        row = conn.execute(
            "SELECT 1 FROM leases WHERE expiry <= ? OR expiry > ? + ttl + ? LIMIT 1",
            (now, now, _CLOCK_JUMP),
        ).fetchone()
        return row is not None

    def _reap(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute(
            "UPDATE leases SET expiry = ? + ttl WHERE expiry > ? + ttl + ?",
            (now, now, _CLOCK_JUMP),
        )
        expired = conn.execute(
            "SELECT id FROM leases WHERE expiry <= ? ORDER BY expiry, id", (now,)
        ).fetchall()
        for (lease,) in expired:
            self._drop_lease(conn, int(lease))

    def _drop_lease(self, conn: sqlite3.Connection, lease: int) -> None:
        """Remove a lease and delete its keys in one revision (none if it had no keys)."""
        deleted = conn.execute("DELETE FROM kv WHERE lease = ?", (lease,)).rowcount
        conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
        if deleted:
            self._bump(conn)

    @staticmethod
    def _rev(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()
        return int(row[0])

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'revision'")
        return SqliteStore._rev(conn)

    @staticmethod
    def _row(key: str, row: tuple[bytes, str, int, int, int]) -> KeyValue:
        _, value, created, modified, lease = row
        return KeyValue(key, decode_value(key, value), int(created), int(modified), int(lease))

    def _read(self, conn: sqlite3.Connection, key: str) -> KeyValue | None:
        row = conn.execute(
            "SELECT key, value, create_revision, mod_revision, lease FROM kv WHERE key = ?",
            (key.encode(),),
        ).fetchone()
        return None if row is None else self._row(key, row)

    # ------------------------------------------------------------------ the Store protocol
    def revision(self) -> int:
        return self._transaction(lambda conn, now: self._rev(conn), write=False)

    def get(self, key: str) -> KeyValue | None:
        return self._transaction(lambda conn, now: self._read(conn, key), write=False)

    def get_prefix(self, prefix: str, guard: Compare | None = None) -> RangeResult:
        start = prefix.encode()
        end = prefix_end(start)

        def body(conn: sqlite3.Connection, now: float) -> RangeResult | None:
            if guard is not None and not guard.holds(self._read(conn, guard.key)):
                return None
            columns = "SELECT key, value, create_revision, mod_revision, lease FROM kv"
            if end is None:
                rows = conn.execute(f"{columns} WHERE key >= ? ORDER BY key", (start,))
            else:
                rows = conn.execute(
                    f"{columns} WHERE key >= ? AND key < ? ORDER BY key", (start, end)
                )
            items = tuple(self._row(bytes(row[0]).decode(), row) for row in rows.fetchall())
            return RangeResult(items, self._rev(conn))

        result = self._transaction(body, write=False)
        if result is None:
            assert guard is not None
            raise GuardFailed(f"guard on {guard.key} does not hold")
        return result

    def txn(
        self, compare: list[Compare], success: list[Op], failure: list[Op] | None = None
    ) -> TxnResult:
        failure = failure or []
        check_branch(success, "success")
        check_branch(failure, "failure")
        for condition in compare:
            if condition.target not in ("mod", "create", "value", "lease"):
                raise ValueError(f"unknown compare target {condition.target!r}")
        encoded = {
            id(op): canonical_json(op.value) for op in (*success, *failure) if isinstance(op, Put)
        }

        def body(conn: sqlite3.Connection, now: float) -> TxnResult:
            rev = self._rev(conn)
            current = {c.key: self._read(conn, c.key) for c in compare}
            ok = all(c.holds(current[c.key]) for c in compare)
            ops = success if ok else failure
            for op in ops:
                if isinstance(op, Put) and op.lease:
                    found = conn.execute("SELECT 1 FROM leases WHERE id = ?", (op.lease,))
                    if found.fetchone() is None:
                        return TxnResult(False, rev)
            changed = False
            new_rev = rev + 1
            for op in ops:
                if isinstance(op, Delete):
                    gone = conn.execute("DELETE FROM kv WHERE key = ?", (op.key.encode(),))
                    changed = changed or gone.rowcount > 0
                else:
                    conn.execute(
                        "INSERT INTO kv (key, value, create_revision, mod_revision, lease)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                        " value = excluded.value, mod_revision = excluded.mod_revision,"
                        " lease = excluded.lease",
                        (op.key.encode(), encoded[id(op)], new_rev, new_rev, op.lease),
                    )
                    changed = True
            if not changed:
                return TxnResult(ok, rev)
            return TxnResult(ok, self._bump(conn))

        return self._transaction(body, write=True)

    def grant(self, ttl: float) -> int:
        if not ttl > 0:
            raise ValueError(f"a lease needs a positive TTL, got {ttl!r}")

        def body(conn: sqlite3.Connection, now: float) -> int:
            row = conn.execute("SELECT value FROM meta WHERE name = 'next_lease'").fetchone()
            lease = int(row[0])
            conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'next_lease'")
            conn.execute(
                "INSERT INTO leases (id, ttl, expiry) VALUES (?, ?, ?)", (lease, ttl, now + ttl)
            )
            return lease

        return self._transaction(body, write=True)

    def keepalive(self, lease: int) -> bool:
        def body(conn: sqlite3.Connection, now: float) -> bool:
            updated = conn.execute(
                "UPDATE leases SET expiry = ? + ttl WHERE id = ?", (now, lease)
            ).rowcount
            return bool(updated)

        return self._transaction(body, write=True)

    def time_to_live(self, lease: int) -> float | None:
        def body(conn: sqlite3.Connection, now: float) -> float | None:
            row = conn.execute("SELECT expiry FROM leases WHERE id = ?", (lease,)).fetchone()
            return None if row is None else max(0.0, float(row[0]) - now)

        return self._transaction(body, write=False)

    def revoke(self, lease: int) -> None:
        def body(conn: sqlite3.Connection, now: float) -> None:
            if conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone():
                self._drop_lease(conn, lease)

        self._transaction(body, write=True)
