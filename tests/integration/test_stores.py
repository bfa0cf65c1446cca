"""The real coordination stores against one contract: SQLite and a real etcd behave like the
simulated etcd the safety tests run on.

The contract tests run unchanged on three backends: the simulator's store (the reference), a
`SqliteStore` on a temporary file with a fake clock (lease time without sleeping), and
`EtcdStore` on a real single-member etcd on loopback (real, short TTLs). Then what only a real
engine can show: two processes sharing one SQLite file, a locked database, and a three-member
etcd cluster losing and regaining quorum, with endpoint failover, TLS and authentication.

etcd tests need the ``etcd`` binary (Debian package etcd-server; ``scripts/install-etcd``) and are
skipped, saying so, only when it is missing.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import etcd3gw
import pytest

from ringfence.config import ClusterConfig
from ringfence.errors import ConfigError
from ringfence.etcd_local import ETCD, Cluster, free_port, make_cluster, running_cluster
from ringfence.etcd_local import wipe as etcd_cleanup
from ringfence.sim.store import SimStore, SimStoreClient
from ringfence.store.base import (
    Compare,
    Delete,
    GuardFailed,
    KeyValue,
    Put,
    Store,
    StoreUnavailable,
)
from ringfence.store.etcd import EtcdStore
from ringfence.store.factory import open_store
from ringfence.store.identity import (
    IDENTITY_KEY,
    IdentifiedStore,
    IdentityRef,
    StoreForeign,
    StoreIdentity,
)
from ringfence.store.retry import Retry, RetryFailed
from ringfence.store.sqlite import SqliteStore

needs_etcd = pytest.mark.skipif(
    ETCD is None,
    reason="the etcd binary is missing: install Debian's etcd-server (scripts/install-etcd)",
)


@pytest.fixture(scope="module")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if ETCD is None:
        pytest.skip("the etcd binary is missing: install Debian's etcd-server")
    with running_cluster(tmp_path_factory.mktemp("etcd1"), 1) as cluster:
        yield cluster


# ----------------------------------------------------------------------------- backends


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _SimWorld:
    """The two things `SimStoreClient` asks of the simulated world."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    @property
    def now(self) -> float:
        return self.clock.now

    def store_reachable(self, host: str) -> bool:
        return True


@dataclass
class Backend:
    """A store plus how time passes for it: a fake clock, or real sleeping (etcd)."""

    name: str
    store: Store
    advance: Callable[[float], None]
    real_time: bool
    ttl: float = 2.0

    @property
    def expiry_slack(self) -> float:
        """How late a real engine may delete an expired lease's keys (etcd checks leases
        every 500 ms and counts whole seconds); zero on a fake clock."""
        return 2.0 if self.real_time else 0.0

    def eventually(self, check: Callable[[], bool], within: float) -> bool:
        if not self.real_time:
            self.advance(within)
            return check()
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


@pytest.fixture(params=["sim", "sqlite", "etcd"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sim":
        clock = FakeClock(0.0)
        world = cast(Any, _SimWorld(clock))
        yield Backend("sim", SimStoreClient(world, SimStore(election_time=1.0), "h1"),
                      clock.advance, False)
    elif request.param == "sqlite":
        clock = FakeClock()
        with SqliteStore(str(tmp_path / "store.db"), clock=clock) as store:
            yield Backend("sqlite", store, clock.advance, False)
    else:
        cluster: Cluster = request.getfixturevalue("etcd_single")
        with EtcdStore(cluster.endpoints, timeout=2.0) as etcd:
            try:
                yield Backend("etcd", etcd, time.sleep, True)
            finally:
                etcd_cleanup(cluster.endpoints[0])


# ----------------------------------------------------------------------------- the contract


def test_every_write_bumps_one_global_revision(backend: Backend) -> None:
    store = backend.store
    start = store.revision()
    first = store.txn([], [Put("c/a", {"v": 1})])
    assert first.succeeded and first.revision == start + 1
    kv = store.get("c/a")
    assert kv == KeyValue("c/a", {"v": 1}, start + 1, start + 1, 0)
    second = store.txn([], [Put("c/a", {"v": 2})])
    assert second.revision == start + 2
    kv = store.get("c/a")
    assert kv is not None and kv.create_revision == start + 1 and kv.mod_revision == start + 2
    several = store.txn([], [Put("c/b", {}), Put("c/c", {}), Delete("c/a")])
    assert several.revision == start + 3  # one transaction, one revision
    assert store.get("c/a") is None
    b, c = store.get("c/b"), store.get("c/c")
    assert b is not None and c is not None and b.mod_revision == c.mod_revision == start + 3
    # Reads, empty transactions, grants and keepalives leave the revision alone.
    lease = store.grant(backend.ttl)
    assert store.keepalive(lease)
    assert store.txn([], []).revision == start + 3
    store.get_prefix("c/")
    assert store.revision() == start + 3
    store.revoke(lease)
    # A key deleted and created again gets a new create_revision.
    store.txn([], [Delete("c/b")])
    again = store.txn([], [Put("c/b", {})])
    b = store.get("c/b")
    assert b is not None and b.create_revision == again.revision == start + 5


def test_a_delete_that_finds_nothing_writes_nothing(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    store = backend.store
    start = store.revision()
    result = store.txn([], [Delete("c/never-there")])
    assert result.succeeded and result.revision == start
    assert store.revision() == start


def test_compare_and_set_loses_on_a_stale_revision(backend: Backend) -> None:
    store = backend.store
    store.txn([], [Put("cas/k", {"v": 1})])
    stale = store.get("cas/k")
    assert stale is not None
    won = store.txn([Compare.unchanged("cas/k", stale.mod_revision)], [Put("cas/k", {"v": 2})])
    assert won.succeeded
    lost = store.txn([Compare.unchanged("cas/k", stale.mod_revision)], [Put("cas/k", {"v": 3})])
    assert not lost.succeeded
    assert lost.revision == won.revision == store.revision()  # nothing was written
    current = store.get("cas/k")
    assert current is not None and current.value == {"v": 2}
    assert current.mod_revision == won.revision  # the winner's revision: its fencing token


def test_absent_and_create_compares(backend: Backend) -> None:
    store = backend.store
    assert store.txn([Compare.absent("abs/k")], [Put("abs/k", {"by": "first"})]).succeeded
    assert not store.txn([Compare.absent("abs/k")], [Put("abs/k", {"by": "second"})]).succeeded
    kv = store.get("abs/k")
    assert kv is not None and kv.value == {"by": "first"}
    assert store.txn([Compare("abs/k", "create", kv.create_revision)], []).succeeded
    assert store.txn([Compare.unchanged("abs/nothing", 0)], []).succeeded  # absent: revision 0
    assert not store.txn([Compare.unchanged("abs/k", 0)], []).succeeded


def test_value_and_lease_compares(backend: Backend) -> None:
    store = backend.store
    lease = store.grant(backend.ttl)
    store.txn([], [Put("cmp/v", {"host": "h1", "token": 7}), Put("cmp/l", {}, lease)])
    assert store.txn([Compare.equals("cmp/v", {"token": 7, "host": "h1"})], []).succeeded
    assert not store.txn([Compare.equals("cmp/v", {"host": "h2", "token": 7})], []).succeeded
    assert not store.txn([Compare.equals("cmp/absent", {})], []).succeeded
    assert store.txn([Compare("cmp/l", "lease", lease)], []).succeeded
    assert not store.txn([Compare("cmp/v", "lease", lease)], []).succeeded
    assert store.txn([Compare("cmp/v", "lease", 0)], []).succeeded  # present, no lease
    assert not store.txn([Compare("cmp/absent", "lease", 0)], []).succeeded  # absent
    assert not store.txn([Compare("cmp/absent", "lease", lease)], []).succeeded
    both = [Compare("cmp/l", "lease", lease), Compare.equals("cmp/v", {"host": "h9"})]
    assert not store.txn(both, []).succeeded  # every compare must hold
    store.revoke(lease)


def test_failure_ops_apply_when_a_compare_fails(backend: Backend) -> None:
    store = backend.store
    store.txn([], [Put("fail/k", {"v": 1})])
    before = store.revision()
    result = store.txn([Compare.absent("fail/k")], [Put("fail/k", {"v": 2})],
                       [Put("fail/loser", {"saw": "taken"}), Delete("fail/none")])
    assert not result.succeeded
    assert result.revision == before + 1 == store.revision()
    loser = store.get("fail/loser")
    assert loser is not None and loser.mod_revision == result.revision
    kept = store.get("fail/k")
    assert kept is not None and kept.value == {"v": 1}


def test_a_put_on_a_gone_lease_applies_nothing(backend: Backend) -> None:
    store = backend.store
    lease = store.grant(backend.ttl)
    store.revoke(lease)
    before = store.revision()
    result = store.txn([], [Put("gone/plain", {}), Put("gone/leased", {}, lease)])
    assert not result.succeeded and result.revision == before
    assert store.get("gone/plain") is None and store.get("gone/leased") is None


def test_a_key_named_twice_in_one_branch_is_refused(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    store = backend.store
    before = store.revision()
    with pytest.raises(ValueError):
        store.txn([], [Put("dup/k", {}), Delete("dup/k")])
    assert store.revision() == before and store.get("dup/k") is None


def test_get_prefix_is_sorted_and_read_at_one_revision(backend: Backend) -> None:
    store = backend.store
    keys = ["p/b", "p/é", "p/a/x", "p/a", "p/Z", "p0", "p", "q/a", "o/p/a"]
    for key in keys:
        store.txn([], [Put(key, {"k": key})])
    result = store.get_prefix("p/")
    assert [kv.key for kv in result.items] == ["p/Z", "p/a", "p/a/x", "p/b", "p/é"]
    assert result.revision == store.revision()
    assert result.by_key["p/a/x"].value == {"k": "p/a/x"}
    assert all(kv.mod_revision <= result.revision for kv in result.items)
    everything = store.get_prefix("")
    assert [kv.key for kv in everything.items] == sorted(keys)
    empty = store.get_prefix("nothing/")
    assert empty.items == () and empty.revision == result.revision


def test_a_guarded_read_reads_only_while_its_guard_holds(backend: Backend) -> None:
    store = backend.store
    store.txn([], [Put("g/id", {"id": "a"}), Put("g/x/1", {"n": 1}), Put("g/x/2", {"n": 2})])
    found = store.get_prefix("g/x/", guard=Compare.equals("g/id", {"id": "a"}))
    assert [kv.key for kv in found.items] == ["g/x/1", "g/x/2"]
    assert found.revision == store.revision()
    with pytest.raises(GuardFailed):
        store.get_prefix("g/x/", guard=Compare.equals("g/id", {"id": "b"}))
    with pytest.raises(GuardFailed):
        store.get_prefix("g/x/", guard=Compare.equals("g/missing", {"id": "a"}))


def test_values_round_trip_as_json(backend: Backend) -> None:
    store = backend.store
    value = {"host": "hôst-1", "token": 12, "ratio": 0.25, "ok": True, "none": None,
             "list": [1, "two", {"three": 3}], "nested": {"a": {"b": []}}}
    store.txn([], [Put("json/v", value)])
    kv = store.get("json/v")
    assert kv is not None and kv.value == value


def test_a_lease_expiry_deletes_its_keys_in_one_revision(backend: Backend) -> None:
    store, ttl = backend.store, backend.ttl
    lease = store.grant(ttl)
    other = store.grant(ttl * 10)
    store.txn([], [Put("exp/a", {}, lease), Put("exp/b", {}, lease), Put("exp/keep", {}, other)])
    before = store.revision()
    backend.advance(ttl / 2)
    assert store.get("exp/a") is not None
    assert store.keepalive(lease)  # restarts the full TTL
    backend.advance(ttl * 0.65)  # past the first expiry, before the renewed one
    assert store.get("exp/a") is not None and store.get("exp/b") is not None
    assert backend.eventually(lambda: store.get("exp/a") is None,
                              ttl * 0.35 + backend.expiry_slack)
    assert store.get("exp/b") is None
    assert store.get("exp/keep") is not None
    assert store.revision() == before + 1  # both keys went in one revision
    assert not store.keepalive(lease)  # gone: its keys are gone
    assert store.time_to_live(lease) is None
    store.revoke(lease)  # revoking a gone lease is not an error
    store.revoke(other)


def test_a_lease_without_keys_expires_without_a_revision(backend: Backend) -> None:
    store, ttl = backend.store, backend.ttl
    lease = store.grant(ttl)
    before = store.revision()
    assert backend.eventually(lambda: store.time_to_live(lease) is None,
                              ttl + backend.expiry_slack)
    assert not store.keepalive(lease)
    assert store.revision() == before


def test_time_to_live_counts_down_and_keepalive_restarts_it(backend: Backend) -> None:
    store, ttl = backend.store, backend.ttl
    lease = store.grant(ttl)
    first = store.time_to_live(lease)
    assert first is not None and 0 <= first <= ttl
    backend.advance(1.1)
    later = store.time_to_live(lease)
    assert later is not None and later < first
    assert store.keepalive(lease)
    renewed = store.time_to_live(lease)
    assert renewed is not None and renewed > later
    assert store.time_to_live(lease + 1) is None  # an unknown lease
    assert not store.keepalive(lease + 1)
    store.revoke(lease)


def test_revoke_deletes_the_keys_in_one_revision(backend: Backend) -> None:
    store = backend.store
    lease = store.grant(backend.ttl * 10)
    moved = store.grant(backend.ttl * 10)
    store.txn([], [Put("rev/a", {}, lease), Put("rev/b", {}, lease), Put("rev/m", {}, lease)])
    store.txn([], [Put("rev/m", {"moved": True}, moved)])  # a Put re-attaches the key
    before = store.revision()
    store.revoke(lease)
    assert store.revision() == before + 1
    assert store.get("rev/a") is None and store.get("rev/b") is None
    m = store.get("rev/m")
    assert m is not None and m.lease == moved
    assert not store.keepalive(lease) and store.time_to_live(lease) is None
    store.revoke(lease)
    empty = store.grant(backend.ttl)
    store.revoke(empty)  # a lease without keys: no revision
    assert store.revision() == before + 1
    store.revoke(moved)
    assert store.get("rev/m") is None


# ----------------------------------------------------------------------------- SQLite only


def test_sqlite_lease_time_is_exact_on_the_stores_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    with SqliteStore(str(tmp_path / "s.db"), clock=clock) as store:
        lease = store.grant(6.0)
        store.txn([], [Put("k", {}, lease)])
        clock.advance(5.999)
        assert store.time_to_live(lease) == pytest.approx(0.001)
        assert store.get("k") is not None
        clock.advance(0.001)
        assert store.get("k") is None and store.time_to_live(lease) is None


def test_sqlite_clock_going_back_restarts_leases_at_their_full_ttl(tmp_path: Path) -> None:
    clock = FakeClock(50_000.0)
    with SqliteStore(str(tmp_path / "s.db"), clock=clock) as store:
        lease = store.grant(6.0)
        store.txn([], [Put("k", {}, lease)])
    clock.now = 12.0  # CLOCK_MONOTONIC after a reboot
    with SqliteStore(str(tmp_path / "s.db"), clock=clock) as store:
        assert store.time_to_live(lease) == pytest.approx(6.0)  # not 50,000 s
        clock.advance(6.0)
        assert store.get("k") is None


def test_sqlite_schema_is_versioned_and_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(str(path)) as store:
        assert store.revision() == 1
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()[0] == 1
        raw.execute("UPDATE meta SET value = 99 WHERE name = 'schema'")
        raw.commit()
    with SqliteStore(str(path)) as store, pytest.raises(StoreUnavailable, match="schema"):
        store.revision()


def test_sqlite_failures_raise_store_unavailable_never_sqlite_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        SqliteStore(str(tmp_path / "missing-dir" / "s.db")).revision()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable, match="not a database"):
        SqliteStore(str(garbage)).get("k")


def test_sqlite_locked_file_raises_store_unavailable_within_the_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(str(path), busy_timeout=0.2) as store:
        store.txn([], [Put("k", {"v": 1})])
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="locked"):
                store.txn([], [Put("k", {"v": 2})])
            assert time.monotonic() - started < 1.5
            kv = store.get("k")  # WAL: readers do not wait for the writer
            assert kv is not None and kv.value == {"v": 1}
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert store.txn([], [Put("k", {"v": 3})]).succeeded


class _Outage:
    """Make a store unable to serve anybody for a while, the way each engine loses it: the
    simulated etcd loses its quorum; a SQLite file is locked by another process (or its disk
    is full). Calls made meanwhile raise StoreUnavailable."""

    def __init__(self, backend: Backend, path: Path | None) -> None:
        self.backend = backend
        self.path = path
        self.holder: sqlite3.Connection | None = None

    def begin(self) -> None:
        if self.backend.name == "sim":
            sim = cast(SimStoreClient, self.backend.store).store
            sim.quorum_changed(self.backend_now(), None)
        else:
            assert self.path is not None
            self.holder = sqlite3.connect(self.path, isolation_level=None)
            self.holder.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self.backend.name == "sim":
            sim = cast(SimStoreClient, self.backend.store).store
            sim.quorum_changed(self.backend_now(), "h1")
            self.backend.advance(sim.election_time)
        else:
            assert self.holder is not None
            self.holder.execute("ROLLBACK")
            self.holder.close()

    def backend_now(self) -> float:
        return cast(Any, self.backend.store).world.now if self.backend.name == "sim" else 0.0


@pytest.fixture(params=["sim", "sqlite"])
def stallable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Backend, _Outage]]:
    clock = FakeClock()
    if request.param == "sim":
        world = cast(Any, _SimWorld(clock))
        backend = Backend("sim", SimStoreClient(world, SimStore(election_time=1.0), "h1"),
                          clock.advance, False)
        yield backend, _Outage(backend, None)
    else:
        path = tmp_path / "store.db"
        with SqliteStore(str(path), clock=clock, busy_timeout=0.05) as store:
            backend = Backend("sqlite", store, clock.advance, False)
            yield backend, _Outage(backend, path)


def test_a_store_outage_longer_than_the_ttl_keeps_every_lease(
    stallable: tuple[Backend, _Outage],
) -> None:
    """The Store protocol's lease rule (etcd's): a lease does not expire while the store can
    serve nobody; when it serves again, every lease that was alive at the outage has at least
    its full TTL left. (etcd: see test_etcd_three_members_lose_and_regain_quorum.) Without it,
    a 12 s lock on the SQLite file made every host find its own lease gone and self-fence."""
    backend, outage = stallable
    store = backend.store
    lease = store.grant(6.0)
    store.txn([], [Put("q/held", {"by": "h1"}, lease)])
    backend.advance(2.0)
    outage.begin()
    for _ in range(12):  # every host keeps trying to renew, and fails, for 12 s
        backend.advance(1.0)
        with pytest.raises(StoreUnavailable):
            store.keepalive(lease)
    outage.end()
    held = store.get("q/held")
    assert held is not None and held.lease == lease, "the lease died with the outage"
    remaining = store.time_to_live(lease)
    assert remaining is not None and remaining >= 6.0 - 1.0 - 1e-9
    assert store.keepalive(lease)
    backend.advance(7.0)  # and it still expires once the store counts again
    assert store.get("q/held") is None


def test_a_lease_that_expired_before_an_outage_stays_expired(
    stallable: tuple[Backend, _Outage],
) -> None:
    backend, outage = stallable
    store = backend.store
    lease = store.grant(2.0)
    store.txn([], [Put("q/held", {"by": "h1"}, lease)])
    other = store.grant(30.0)  # keeps the store busy with something else meanwhile
    store.txn([], [Put("q/other", {"v": 1}, other)])
    backend.advance(5.0)  # `lease` is past its TTL (no call has reaped it yet)
    outage.begin()
    backend.advance(10.0)
    with pytest.raises(StoreUnavailable):
        store.keepalive(other)
    outage.end()
    assert store.get("q/held") is None
    assert not store.keepalive(lease)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_sqlite_a_full_disk_for_20s_keeps_every_lease(tmp_path: Path) -> None:
    """A full disk: reads work, every write fails. The lease outlives it, as with a lock."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        clock = FakeClock()
        with SqliteStore(str(mount / "store.db"), clock=clock, busy_timeout=0.05) as store:
            lease = store.grant(6.0)
            store.txn([], [Put("q/held", {"by": "h1"}, lease)])
            filler = mount / "filler"
            # Fill the disk to the last block.
            with open(filler, "wb") as handle, contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            failed = 0
            for step in range(20):
                clock.advance(1.0)
                try:
                    store.txn([], [Put(f"q/n{step}", {"pad": "x" * 4000})])
                    store.keepalive(lease)
                except StoreUnavailable:
                    failed += 1
            assert failed >= 18, "the disk was not full"
            filler.unlink()
            held = store.get("q/held")
            assert held is not None and held.lease == lease
            assert store.keepalive(lease)
            remaining = store.time_to_live(lease)
            assert remaining is not None and remaining >= 5.0
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_sqlite_threads_share_one_store(tmp_path: Path) -> None:
    with SqliteStore(str(tmp_path / "s.db")) as store:
        store.txn([], [Put("n", {"n": 0})])
        errors: list[BaseException] = []

        def work() -> None:
            try:
                cas_increments(store, "n", 25)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        kv = store.get("n")
        assert kv is not None and kv.value == {"n": 100}


def cas_increments(store: Store, key: str, count: int) -> list[int]:
    """Increment a counter `count` times by compare-and-set; return the winning revisions."""
    tokens = []
    while len(tokens) < count:
        kv = store.get(key)
        assert kv is not None
        result = store.txn([Compare.unchanged(key, kv.mod_revision)],
                           [Put(key, {"n": kv.value["n"] + 1})])
        if result.succeeded:
            tokens.append(result.revision)
    return tokens


def _process_worker(path: str, name: str, count: int, start: Any, out: Any) -> None:
    """Runs in a child process: wait for the start signal, then race the other process."""
    store = SqliteStore(path, busy_timeout=5.0)
    start.wait(10)
    tokens = cas_increments(store, "counter", count)
    store.txn([], [Put(f"done/{name}", {"tokens": len(tokens)})])
    seen = store.get_prefix("done/")
    out.put((name, tokens, [kv.key for kv in seen.items]))
    store.close()


def test_sqlite_two_processes_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    with SqliteStore(path) as store:
        store.txn([], [Put("counter", {"n": 0})])
        context = multiprocessing.get_context("spawn")
        start, out = context.Event(), context.Queue()
        workers = [context.Process(target=_process_worker, args=(path, name, 40, start, out))
                   for name in ("a", "b")]
        for worker in workers:
            worker.start()
        start.set()
        results = [out.get(timeout=30) for _ in workers]
        for worker in workers:
            worker.join(10)
            assert worker.exitcode == 0
        counter = store.get("counter")
        assert counter is not None and counter.value == {"n": 80}  # no lost update
        tokens = [token for _, got, _ in results for token in got]
        assert len(set(tokens)) == 80  # every win a distinct fencing token
        last = max(results, key=lambda r: len(r[2]))
        assert last[2] == ["done/a", "done/b"]  # the later one saw the other's write
        assert store.revision() == 1 + 1 + 80 + 2


# ----------------------------------------------------------------------------- etcd only


class _Blackhole:
    """A TCP port that accepts connections and never answers: a hung etcd member."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


@needs_etcd
def test_etcd_a_refused_endpoint_fails_over_for_every_call(etcd_single: Cluster) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with EtcdStore([dead, *etcd_single.endpoints], timeout=1.0) as store:
        try:
            assert store.txn([Compare.absent("fo/k")], [Put("fo/k", {})]).succeeded
            assert store.get("fo/k") is not None
        finally:
            etcd_cleanup(etcd_single.endpoints[0])


@needs_etcd
def test_etcd_a_transaction_whose_fate_is_unknown_is_not_resent(etcd_single: Cluster) -> None:
    hung = _Blackhole()
    try:
        with EtcdStore([hung.endpoint, *etcd_single.endpoints], timeout=0.3) as store:
            with pytest.raises(StoreUnavailable, match="may have been applied"):
                store.txn([Compare.absent("amb/k")], [Put("amb/k", {})])
            assert store.get("amb/k") is None  # a read fails over to the next endpoint
            assert store.txn([Compare.absent("amb/k")], [Put("amb/k", {})]).succeeded
    finally:
        hung.close()
        etcd_cleanup(etcd_single.endpoints[0])


@needs_etcd
def test_etcd_unreachable_store_raises_store_unavailable(tmp_path: Path) -> None:
    with EtcdStore([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"],
                   timeout=0.5) as store:
        for call in (store.revision, lambda: store.get("k"), lambda: store.grant(5),
                     lambda: store.txn([], [Put("k", {})]), lambda: store.keepalive(1)):
            with pytest.raises(StoreUnavailable, match="no endpoint answered"):
                call()


@needs_etcd
def test_etcd_three_members_lose_and_regain_quorum(tmp_path: Path) -> None:
    """Kill members: one lost is absorbed by failover; two lost is StoreUnavailable on every
    call within a bounded time; leases do not expire without a quorum, however long the
    outage; when a member returns the store answers again and the leases are still there,
    refreshed by the new leader — as `SimStore.quorum_changed` models it."""
    cluster = make_cluster(tmp_path, 3)
    cluster.start()
    try:
        store = EtcdStore(cluster.endpoints, timeout=1.0)
        cluster.wait_ready(store)
        ttl = 2
        lease = store.grant(ttl)
        store.txn([], [Put("q/held", {"by": "h1"}, lease), Put("q/plain", {"v": 1})])
        retry = Retry(None, deadline=10.0, delay=0.05, backoff=1.5, max_delay=0.5)

        # One member down (the first endpoint): failover, at most a re-election.
        cluster.members[0].kill()
        assert retry(store.keepalive, lease)
        assert retry(store.get, "q/plain") is not None

        # Two members down: no quorum. Every call raises StoreUnavailable, quickly.
        cluster.members[1].kill()
        lost_at = time.monotonic()
        unavailable_after = None
        while time.monotonic() - lost_at < 10:
            try:
                store.get("q/plain")
            except StoreUnavailable:
                unavailable_after = time.monotonic() - lost_at
                break
            time.sleep(0.05)
        assert unavailable_after is not None, "a minority member kept answering"
        assert unavailable_after < 5.0
        slowest = 0.0
        for call in (store.revision, lambda: store.get_prefix("q/"), lambda: store.grant(5),
                     lambda: store.keepalive(lease), lambda: store.time_to_live(lease),
                     lambda: store.txn([], [Put("q/plain", {"v": 2})])):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                call()
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 3 * 1.0 + 0.5  # at most endpoints x timeout
        time.sleep(max(0.0, ttl + 1.0 - (time.monotonic() - lost_at)))  # outage > TTL

        # One member back: quorum again, after an election.
        cluster.start(cluster.members[1])
        back_at = time.monotonic()
        held = retry(store.get, "q/held")
        recovered_after = time.monotonic() - back_at
        assert held is not None and held.lease == lease  # the lease outlived the outage
        remaining = store.time_to_live(lease)
        assert remaining is not None and remaining >= 1  # refreshed by the new leader
        assert store.keepalive(lease)
        plain = store.get("q/plain")
        assert plain is not None and plain.value == {"v": 1}  # the failed write was not applied
        assert store.txn([Compare.unchanged("q/plain", plain.mod_revision)],
                         [Put("q/plain", {"v": 3})]).succeeded
        assert recovered_after < 10.0
        print(f"quorum loss seen after {unavailable_after:.2f} s, then every call raised "
              f"within {slowest:.2f} s; the store answered {recovered_after:.2f} s after a "
              "member returned")
        # And a lease still expires once a leader counts again.
        store.revoke(lease)
        assert store.get("q/held") is None
        store.close()
    finally:
        cluster.stop()


# ----------------------------------------------------------------------------- identity

ATL = StoreIdentity("atl", "0123456789abcdef", 1)


def _joined(raw: Store) -> IdentifiedStore:
    raw.txn([Compare.absent(IDENTITY_KEY)], [Put(IDENTITY_KEY, ATL.value())])
    raw.txn([], [Put("vms/app/owner", {"host": "hv1"})])
    return IdentifiedStore(raw, IdentityRef(ATL, raw.revision()))


def _refuses_everything(store: IdentifiedStore) -> None:
    for call in (store.revision, lambda: store.get_prefix("vms/"),
                 lambda: store.txn([], [Put("vms/app/owner", {"host": "hv2"})])):
        with pytest.raises(StoreUnavailable):
            call()


def test_sqlite_a_deleted_store_file_is_never_replaced_by_an_empty_one(tmp_path: Path) -> None:
    """Issue 9, case 1, at the store: the file deleted under a running agent, and an empty one
    created at the same path. The running store refuses (one store or none); a restarted host
    that remembers the identity refuses the new file; nothing is written into it."""
    path = tmp_path / "store.db"
    running = _joined(SqliteStore(str(path)))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreUnavailable, match="deleted"):
        running.get_prefix("vms/")
    with SqliteStore(str(path)) as fresh:  # someone creates an empty store at the path
        assert fresh.revision() == 1
    _refuses_everything(running)
    restarted = IdentifiedStore(SqliteStore(str(path), create=False), IdentityRef(ATL, 3))
    with pytest.raises(StoreForeign, match="no cluster identity"):
        restarted.get_prefix("vms/")
    _refuses_everything(restarted)
    with SqliteStore(str(path)) as fresh:
        assert fresh.get_prefix("").items == (), "something was written into the empty store"


@needs_etcd
def test_etcd_a_wiped_cluster_at_the_same_address_is_refused(tmp_path: Path) -> None:
    """The etcd member's data lost and a new, empty cluster started at the same address."""
    cluster = make_cluster(tmp_path, 1)
    cluster.start()
    try:
        raw = EtcdStore(cluster.endpoints, timeout=1.0)
        cluster.wait_ready(raw)
        lease = raw.grant(30)
        joined = _joined(raw)
        joined.txn([], [Put("hosts/hv1/lease", {"host": "hv1"}, lease)])
        member = cluster.members[0]
        member.kill()
        shutil.rmtree(member.data_dir)
        cluster.start(member)
        cluster.wait_ready(raw)
        with pytest.raises(StoreForeign, match="no cluster identity"):
            joined.get_prefix("vms/")
        with pytest.raises(StoreForeign):
            joined.keepalive(lease)  # "my lease is gone" is not concluded in another store
        _refuses_everything(joined)
        assert raw.get_prefix("").items == (), "something was written into the new cluster"
        raw.close()
    finally:
        cluster.stop()


# ----------------------------------------------------------------------------- TLS and auth


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=ringfence-test-ca", cwd=directory)
    for name, subject, extensions in (
        ("server", "/CN=ringfence-server",
         "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"),
        # No Common Name: with authentication on, etcd 3.4's gateway refuses client
        # certificates that have one ("CommonName ... will be ignored").
        ("client", "/O=ringfence-client", "extendedKeyUsage=clientAuth\n"),
    ):
        (directory / f"{name}.ext").write_text(extensions)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subject, cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                 "-extfile", f"{name}.ext", cwd=directory)


@needs_etcd
def test_etcd_with_tls_client_certificates_and_authentication(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing: it makes the test certificates")
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    tls = {"ca_file": str(certs / "ca.crt"), "cert_file": str(certs / "client.crt"),
           "key_file": str(certs / "client.key")}
    cluster = make_cluster(tmp_path, 1, scheme="https", extra=[
        "--cert-file", str(certs / "server.crt"), "--key-file", str(certs / "server.key"),
        "--trusted-ca-file", str(certs / "ca.crt"), "--client-cert-auth",
        "--auth-token-ttl", "1",
    ])
    cluster.start()
    try:
        store = EtcdStore(cluster.endpoints, timeout=2.0, **tls)
        cluster.wait_ready(store)
        assert store.txn([], [Put("tls/k", {"v": 1})]).succeeded

        with EtcdStore(cluster.endpoints, timeout=1.0, ca_file=tls["ca_file"]) as no_cert, \
                pytest.raises(StoreUnavailable, match="cannot connect"):
            no_cert.get("tls/k")  # the member demands a client certificate

        # Turn authentication on (through the gateway, as etcdctl would).
        member = cluster.members[0]
        admin = etcd3gw.client(host="127.0.0.1", port=member.client_port, protocol="https",
                               ca_cert=tls["ca_file"], cert_cert=tls["cert_file"],
                               cert_key=tls["key_file"], timeout=5, api_path="/v3/")
        admin.session.trust_env = False  # REQUESTS_CA_BUNDLE would override ca_cert
        for path, body in (("auth/role/add", {"name": "root"}),
                           ("auth/user/add", {"name": "root", "password": "s3cret"}),
                           ("auth/user/grant", {"user": "root", "role": "root"}),
                           ("auth/enable", {})):
            admin.post(admin.get_url(path), json=body)
        admin.session.close()

        with pytest.raises(StoreUnavailable, match=r"permission denied: .*user name is empty"):
            store.get("tls/k")  # no credentials
        with EtcdStore(cluster.endpoints, timeout=2.0, username="root", password="wrong",
                       **tls) as wrong, pytest.raises(StoreUnavailable, match="as 'root' failed"):
            wrong.get("tls/k")
        with EtcdStore(cluster.endpoints, timeout=2.0, username="root", password="s3cret",
                       **tls) as authed:
            kv = authed.get("tls/k")
            assert kv is not None and kv.value == {"v": 1}
            lease = authed.grant(5)
            assert authed.txn([], [Put("tls/l", {}, lease)]).succeeded
            time.sleep(2.5)  # the token (TTL 1 s) expires; the store logs in again
            assert authed.keepalive(lease)
            authed.revoke(lease)
            assert authed.get("tls/l") is None
        store.close()
    finally:
        cluster.stop()


# ----------------------------------------------------------------------------- retry


def test_retry_backs_off_until_the_deadline_in_virtual_time() -> None:
    clock = FakeClock(0.0)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise StoreUnavailable("no quorum")
        return "ok"

    retry = Retry(None, deadline=10.0, delay=0.1, backoff=2.0, max_delay=0.3, max_jitter=0.0,
                  sleep=sleep, clock=clock)
    assert retry(flaky) == "ok" and sleeps == pytest.approx([0.1, 0.2, 0.3])

    def down() -> None:
        raise StoreUnavailable("no quorum")

    clock.now, sleeps[:] = 0.0, []
    with pytest.raises(RetryFailed, match="for 1 s") as failed:
        Retry(None, deadline=1.0, delay=0.25, backoff=1.0, max_jitter=0.0,
                               sleep=sleep, clock=clock)(down)
    assert isinstance(failed.value, StoreUnavailable)
    assert isinstance(failed.value.__cause__, StoreUnavailable)
    assert clock.now <= 1.0 and failed.value.attempts == 5

    with pytest.raises(RetryFailed, match="after 2 tries"):
        Retry(2, sleep=sleep, clock=clock)(down)

    def lost() -> bool:
        raise ValueError("not retried")

    with pytest.raises(ValueError):
        retry(lost)
    copy = retry.copy()
    assert copy is not retry and vars(copy) == vars(retry)


# ----------------------------------------------------------------------------- factory


def cluster_config(store: dict[str, Any]) -> ClusterConfig:
    return ClusterConfig.model_validate({
        "networks": [{"name": "ring0", "role": "heartbeat"}],
        "hosts": [{"name": "h1", "cpus": 4, "memory": "8GiB"},
                  {"name": "etcd2", "cpus": 4, "memory": "8GiB"}],
        "store": store,
    })


def test_factory_chooses_the_engine_and_names_missing_fields(tmp_path: Path) -> None:
    sqlite_store = open_store(cluster_config({"path": str(tmp_path / "s.db")}), host="h1")
    assert isinstance(sqlite_store, SqliteStore)
    with pytest.raises(StoreUnavailable, match="no such file"):
        sqlite_store.revision()  # only a host that may bootstrap creates the file
    created = open_store(cluster_config({"path": str(tmp_path / "s.db")}), host="h1",
                         create=True)
    assert created.revision() == 1
    assert sqlite_store.revision() == 1
    explicit = open_store(cluster_config({"kind": "sqlite", "path": str(tmp_path / "t.db")}),
                          host=None)
    assert isinstance(explicit, SqliteStore)

    etcd_store = open_store(cluster_config(
        {"endpoints": ["http://etcd1:2379", "etcd2:2379"]}), host="etcd2")
    assert isinstance(etcd_store, EtcdStore)
    assert [str(e) for e in etcd_store.endpoints] == ["http://etcd2:2379", "http://etcd1:2379"]
    assert etcd_store.timeout == pytest.approx(0.75)  # store_timeout 1.5 s / 2 endpoints

    def problem(store: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as raised:
            open_store(cluster_config(store), host="h1")
        return str(raised.value)

    assert problem({"kind": "etcd"}) == (
        "store.endpoints: etcd needs at least one endpoint, such as https://etcd1.example:2379")
    assert problem({}).startswith("store.path: the sqlite store needs path")
    assert problem({"kind": "sqlite", "endpoints": ["e:1"]}).startswith("store.endpoints:")
    # The schema refuses such an endpoint already (tests/unit/test_bounds.py); the factory's
    # own check holds for a configuration built without the schema's checks.
    good = cluster_config({"endpoints": ["a:2379"]})
    ftp = good.model_copy(update={"store": good.store.model_copy(
        update={"endpoints": ["a:2379", "ftp://b"]})})
    with pytest.raises(ConfigError, match=r"store\.endpoints\[1\]:"):
        open_store(ftp, host="h1")
    assert "does not exist" in problem({"path": str(tmp_path / "no" / "s.db")})
    missing_ca = problem({"endpoints": ["a:2379"], "tls": {"ca_file": str(tmp_path / "ca")}})
    assert missing_ca.startswith("store.tls.ca_file: file not found")
    (tmp_path / "c.crt").write_text("x")
    half = problem({"endpoints": ["a"], "tls": {"cert_file": str(tmp_path / "c.crt")}})
    assert half.startswith("store.tls.key_file: a client certificate needs both")
    assert "uses http" in problem({"endpoints": ["http://a:2379"],
                                   "tls": {"ca_file": str(tmp_path / "c.crt")}})


def test_json_compare_encoding_is_canonical() -> None:
    """Both real engines store canonical JSON, so a VALUE compare does not depend on the order
    in which a writer built its dict."""
    from ringfence.store.sqlite import canonical_json

    assert canonical_json({"b": 1, "a": "é"}) == canonical_json({"a": "é", "b": 1})
    assert json.loads(canonical_json({"a": [1, 2]})) == {"a": [1, 2]}


def test_etcd_credentials_come_from_the_cluster_file(tmp_path: Path) -> None:
    from ringfence.store.factory import _etcd_credentials

    secret = tmp_path / "etcd-password"
    secret.write_text("s3cret\n")
    base = {"networks": [{"name": "ring0", "role": "heartbeat"}],
            "hosts": [{"name": "h1", "cpus": 1, "memory": "1GiB"}]}
    config = ClusterConfig.model_validate({**base, "store": {
        "kind": "etcd", "endpoints": ["http://127.0.0.1:2379"], "username": "ringfence",
        "password_file": str(secret)}})
    assert _etcd_credentials(config) == ("ringfence", "s3cret")
    half = ClusterConfig.model_validate({**base, "store": {
        "kind": "etcd", "endpoints": ["http://127.0.0.1:2379"], "username": "ringfence"}})
    with pytest.raises(ConfigError, match="password_file"):
        _etcd_credentials(half)
