"""Store identity: who may join, bootstrap or must refuse a store (`core.identity.judge`), and
a store that proves on every call that it is the store a host joined (`IdentifiedStore`)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from ringfence.core.identity import Remembered, judge
from ringfence.sim.store import SimStore, SimStoreClient
from ringfence.store.base import Compare, Put
from ringfence.store.identity import (
    IDENTITY_KEY,
    IdentifiedStore,
    IdentityRef,
    StoreForeign,
    StoreIdentity,
)

ATL = StoreIdentity("atl", "a1b2c3d4e5", 1)
NOTHING = Remembered(None)
OTHER = StoreIdentity("atl", "ffff0000ee", 2)


def verdict(found: StoreIdentity | None = None, *, raw: bool | None = None, revision: int = 50,
            joined: bool = False, remembered: Remembered = NOTHING,
            flag: bool = False, named: str | None = None, host: str = "hv1") -> tuple[str, str]:
    v = judge(cluster="atl", found=found, found_raw=found is not None if raw is None else raw,
              store_revision=revision, hosts_joined=joined, remembered=remembered,
              bootstrap_flag=flag, named_bootstrap=named, host=host, new_id="new-id")
    return v.action, v.reason


def test_an_empty_store_is_bootstrapped_only_by_a_host_allowed_to() -> None:
    assert verdict()[0] == "wait"
    assert "waiting for hv2 to bootstrap" in verdict(named="hv2")[1]
    assert verdict(named="hv1")[0] == "bootstrap"
    assert verdict(flag=True)[0] == "bootstrap"
    # The cluster file's permission holds only while no host ever joined this store...
    assert verdict(named="hv1", joined=True)[0] == "wait"
    # ...the operator's explicit --bootstrap also adopts a store of an older ringfence.
    assert verdict(flag=True, joined=True)[0] == "bootstrap"


def test_a_host_that_remembers_a_store_refuses_an_empty_or_other_one() -> None:
    mine = Remembered(ATL, revision=40)
    action, reason = verdict(None, remembered=mine, flag=True, named="hv1")
    assert action == "refuse" and "wiped or replaced" in reason
    action, reason = verdict(OTHER, remembered=mine)
    assert action == "refuse" and "another store answers at the same place" in reason
    action, reason = verdict(StoreIdentity("sfo", "x", 1))
    assert action == "refuse" and "cluster 'sfo'" in reason
    action, reason = verdict(ATL, remembered=mine, revision=12)
    assert action == "refuse" and "older backup" in reason
    assert verdict(ATL, remembered=mine, revision=40)[0] == "join"
    assert verdict(ATL)[0] == "join"  # a new host joins the cluster's store
    assert verdict(None, raw=True)[0] == "refuse"  # the key holds garbage


def test_a_re_bootstrap_counts_up_the_generation() -> None:
    forgot = Remembered(None, 0, generation_seen=3)
    v = judge(cluster="atl", found=None, found_raw=False, store_revision=1, hosts_joined=False,
              remembered=forgot, bootstrap_flag=True, named_bootstrap=None, host="hv1",
              new_id="n")
    assert v.identity == StoreIdentity("atl", "n", 4)


class _World:
    now = 0.0

    def store_reachable(self, host: str) -> bool:
        return True


def joined_store() -> tuple[SimStore, IdentifiedStore, list[str]]:
    engine = SimStore(election_time=0.0)
    raw = SimStoreClient(cast(Any, _World()), engine, "hv1")
    raw.txn([], [Put(IDENTITY_KEY, ATL.value()), Put("vms/app/owner", {"host": "hv1"})])
    told: list[str] = []
    guarded = IdentifiedStore(raw, IdentityRef(ATL, raw.revision()), on_foreign=told.append)
    return engine, guarded, told


def test_every_call_of_a_joined_host_proves_the_identity() -> None:
    engine, store, _ = joined_store()
    lease = store.grant(6)
    assert store.txn([], [Put("hosts/hv1/lease", {"host": "hv1"}, lease)]).succeeded
    assert store.get("vms/app/owner") is not None
    engine.wipe()  # an empty store answers at the same place
    for call in (store.revision, lambda: store.get_prefix("vms/"),
                 lambda: store.get("vms/app/owner"),
                 lambda: store.txn([], [Put("vms/app/owner", {"host": "hv2"})]),
                 lambda: store.keepalive(lease)):
        with pytest.raises(StoreForeign, match="not this cluster's store"):
            call()
    assert engine.kv == {}, "nothing may be written into a foreign store"


def test_a_store_whose_revision_goes_back_is_foreign() -> None:
    engine, store, told = joined_store()
    store.txn([], [Put("vms/app/owner", {"host": "hv1", "n": 1})])
    engine.rev -= 2  # a backup restored under a running cluster: same identity, older history
    with pytest.raises(StoreForeign, match="revision went back"):
        store.revision()
    assert told and "revision went back" in told[-1]


def test_a_tool_learns_the_identity_only_if_it_is_this_clusters() -> None:
    engine = SimStore(election_time=0.0)
    raw = SimStoreClient(cast(Any, _World()), engine, "tool")
    tool = IdentifiedStore(raw, IdentityRef(), strict=True, learn_cluster="atl")
    with pytest.raises(StoreForeign, match="never bootstrapped"):
        tool.get("vms/app/owner")
    raw.txn([Compare.absent(IDENTITY_KEY)], [Put(IDENTITY_KEY, StoreIdentity(
        "sfo", "x", 1).value())])
    with pytest.raises(StoreForeign, match="cluster 'sfo'"):
        tool.get("vms/app/owner")


def test_a_strict_store_of_a_host_that_has_not_joined_writes_nothing() -> None:
    engine = SimStore(election_time=0.0)
    raw = SimStoreClient(cast(Any, _World()), engine, "hv1")
    mirror = IdentifiedStore(raw, IdentityRef(), strict=True)
    with pytest.raises(Exception, match="not yet joined"):
        mirror.txn([], [Put("journal/hv1/1", {"kind": "x"})])
    assert engine.kv == {}


class _Overtaken:
    """An inner store whose read is answered at the current revision, and then, before its
    answer is handed back, another connection of the same host writes and reads (a later
    revision) — the order in which two threads' answers arrive is not the store's order."""

    def __init__(self, inner: SimStoreClient, meanwhile: Any) -> None:
        self.inner = inner
        self.meanwhile = meanwhile

    def get_prefix(self, prefix: str, guard: Compare | None = None) -> Any:
        answer = self.inner.get_prefix(prefix, guard)
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_two_connections_answers_crossing_is_not_a_store_going_back() -> None:
    # Found under the demo (issue 13's helper): the decision cycle's read was answered at
    # revision N, the lease cycle's write at N+1 landed first in the shared reference, and
    # the host refused its own store as "restored from an older backup".
    engine = SimStore(election_time=0.0)
    raw = SimStoreClient(cast(Any, _World()), engine, "hv1")
    raw.txn([], [Put(IDENTITY_KEY, ATL.value()), Put("vms/app/owner", {"host": "hv1"})])
    ref = IdentityRef(ATL, raw.revision())
    told: list[str] = []
    other = IdentifiedStore(raw, ref, on_foreign=told.append)

    def other_connection_writes() -> None:
        other.txn([], [Put("vms/app/owner", {"host": "hv1", "n": 2})])

    slow = IdentifiedStore(cast(Any, _Overtaken(raw, other_connection_writes)), ref,
                           on_foreign=told.append)
    assert slow.get("vms/app/owner") is not None
    assert not told
    assert ref.max_revision == engine.rev
    # A revision below what was seen *before the call was made* is still a store gone back.
    engine.rev -= 3
    with pytest.raises(StoreForeign, match="revision went back"):
        slow.revision()
