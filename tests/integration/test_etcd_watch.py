"""The store watch (`store.etcd_watch.EtcdWatch`) against a real etcd member: its revision
follows every write, a change to a key the decision cycle reads wakes it and one to the
journal's copy does not, and a member that goes away makes it say so (None) and then follow
the member again when it is back. Waits are bounded; no speed is asserted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ringfence.etcd_local import ETCD, Cluster, running_cluster
from ringfence.store.base import Put
from ringfence.store.etcd import EtcdStore
from ringfence.store.etcd_watch import EtcdWatch

WAIT = 20.0


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:g} s: {what}")
        time.sleep(0.02)


@pytest.fixture
def member(tmp_path: Path) -> Iterator[Cluster]:
    if ETCD is None:
        pytest.skip("the etcd binary is missing: install Debian's etcd-server")
    (tmp_path / "etcd").mkdir()
    with running_cluster(tmp_path / "etcd", 1) as cluster:
        yield cluster


def test_the_watch_follows_the_revision_and_wakes_only_for_watched_keys(
        member: Cluster) -> None:
    woken = threading.Event()
    store = EtcdStore(member.endpoints, timeout=1.0)
    watch = EtcdWatch(store, woken.set, idle=1.0).start()
    try:
        until(lambda: watch.seen() is not None, "the stream to open")
        assert watch.seen() == store.revision()
        mirror = store.txn([], [Put("journal/host1/0001", {"kind": "x"})])
        until(lambda: (watch.seen() or 0) >= mirror.revision, "the journal write to be seen")
        time.sleep(0.2)
        assert not woken.is_set(), "a write to the journal's copy woke the decision cycle"
        record = store.txn([], [Put("vms/vm1/owner", {"host": "host1"})])
        until(woken.is_set, "a VM record to wake the decision cycle")
        until(lambda: (watch.seen() or 0) >= record.revision, "the VM record to be seen")
        opened = watch.streams
        until(lambda: watch.streams > opened, "an idle stream to be opened again")
        until(lambda: watch.seen() is not None, "the reopened stream to follow")
    finally:
        watch.close()
        store.close()
    assert watch.seen() is None


def test_a_member_that_goes_away_is_not_followed_until_it_is_back(member: Cluster) -> None:
    store = EtcdStore(member.endpoints, timeout=1.0)
    watch = EtcdWatch(store, lambda: None, idle=1.0).start()
    try:
        until(lambda: watch.seen() is not None, "the stream to open")
        member.stop()
        until(lambda: watch.seen() is None, "the watch to say it follows nothing")
        member.start()
        member.wait_ready(store)
        written = store.txn([], [Put("hosts/host1/info", {"incarnation": 1})])
        until(lambda: (watch.seen() or 0) >= written.revision, "the watch to follow again")
    finally:
        watch.close()
        store.close()
