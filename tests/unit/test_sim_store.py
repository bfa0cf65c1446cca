"""The simulated etcd: leases, revisions as fencing tokens, quorum loss and regain."""

from __future__ import annotations

from ringfence.sim.store import SimStore
from ringfence.store.base import Compare, Delete, Put


def test_every_write_bumps_the_revision_and_tokens_are_monotonic() -> None:
    store = SimStore(election_time=1.0)
    first = store.txn([], [Put("vms/a/owner", {"host": "h1"})], None)
    second = store.txn([], [Put("vms/a/owner", {"host": "h2"})], None)
    assert second.revision > first.revision
    kv = store.get("vms/a/owner")
    assert kv is not None and kv.mod_revision == second.revision
    assert kv.create_revision == first.revision


def test_compare_and_set_loses_on_a_stale_revision() -> None:
    store = SimStore(election_time=1.0)
    store.txn([], [Put("k", {"v": 1})], None)
    kv = store.get("k")
    assert kv is not None
    store.txn([], [Put("k", {"v": 2})], None)
    lost = store.txn([Compare.unchanged("k", kv.mod_revision)], [Put("k", {"v": 3})], None)
    assert not lost.succeeded
    got = store.get("k")
    assert got is not None and got.value == {"v": 2}
    assert store.txn([Compare.absent("gone")], [Delete("k")], None).succeeded
    assert store.get("k") is None


def test_lease_expiry_deletes_its_keys_in_one_revision() -> None:
    store = SimStore(election_time=1.0)
    lease = store.grant(0.0, 6.0)
    store.txn([], [Put("a", {}, lease), Put("b", {}, lease)], None)
    before = store.rev
    store.expire(5.9)
    assert store.get("a") is not None
    assert store.keepalive(5.0, lease)  # renewed at 5.0: now expires at 11.0
    store.expire(10.9)
    assert store.get("a") is not None
    store.expire(11.0)
    assert store.get("a") is None and store.get("b") is None
    assert store.rev == before + 1
    assert not store.keepalive(11.5, lease)


def test_leases_do_not_expire_without_quorum_and_restart_on_a_new_leader() -> None:
    store = SimStore(election_time=1.0)
    store.quorum_changed(0.0, "m1")
    store.ready_at = 0.0
    lease = store.grant(0.0, 6.0)
    store.txn([], [Put("a", {}, lease)], None)
    store.quorum_changed(2.0, None)  # quorum lost at 2 s
    store.expire(100.0)
    assert store.get("a") is not None
    store.quorum_changed(100.0, "m2")  # regained at 100 s: election until 101 s
    assert not store.available(100.5)
    assert store.time_to_live(101.0, lease) == 6.0
    store.expire(106.9)
    assert store.get("a") is not None
    store.expire(107.0)
    assert store.get("a") is None
