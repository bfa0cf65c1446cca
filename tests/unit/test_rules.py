"""The pure lease, fencing and membership rules."""

from __future__ import annotations

import numpy as np

from ringfence.config import Timing
from ringfence.core import leases
from ringfence.core.manager import fast_fence_allowed
from ringfence.core.membership import Membership, PeerState
from ringfence.core.ports import HeartbeatBatch
from ringfence.core.topology import Topology

TIMING = Timing()  # 200 ms heartbeats, 6 s lease, 4 s watchdog, 1 s safety, 0.5 s clock


def test_a_host_stops_before_the_store_could_drop_its_lease() -> None:
    assert leases.lease_is_fresh(4.99, TIMING)
    assert not leases.lease_is_fresh(5.0, TIMING)
    assert leases.renewal_interval(TIMING) == 2.0


def test_the_watchdog_rule_waits_watchdog_timeout_plus_clock_margin() -> None:
    assert not leases.proven_by_expiry(4.49, TIMING)
    assert leases.proven_by_expiry(4.5, TIMING)


def test_fast_fence_needs_a_second_opinion_or_a_missed_renewal() -> None:
    common = {"renewal_interval": 2.0, "heartbeat_interval": 0.2}
    assert fast_fence_allowed(suspect_for=0.0, renewed_since=False, others_heard=1, **common)
    assert not fast_fence_allowed(suspect_for=0.0, renewed_since=False, others_heard=0, **common)
    assert fast_fence_allowed(suspect_for=2.4, renewed_since=False, others_heard=0, **common)
    assert not fast_fence_allowed(suspect_for=9.0, renewed_since=True, others_heard=3, **common)


def _batch(heard_at: np.ndarray, n: int) -> HeartbeatBatch:
    return HeartbeatBatch(heard_at, np.zeros((n, n), dtype=np.bool_), np.zeros(n, dtype=np.bool_),
                          np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
                          np.zeros(n, dtype=np.int64))


def test_one_link_lost_is_jeopardy_all_links_lost_is_lost() -> None:
    topology = Topology(("a", "b"), ("ring0", "ring1"), np.ones((2, 2), dtype=np.bool_))
    membership = Membership(topology, "a", heartbeat_timeout=0.8)
    both = np.array([[-np.inf, -np.inf], [0.0, 0.0]])
    changes = membership.observe(0.0, _batch(both, 2))
    assert [(c.peer, c.new) for c in changes] == [("b", PeerState.UP)]
    one = np.array([[-np.inf, -np.inf], [1.0, -np.inf]])
    changes = membership.observe(1.0, _batch(one, 2))
    assert [(c.peer, c.new, c.dead_links) for c in changes] == [
        ("b", PeerState.JEOPARDY, ("ring1",))]
    assert membership.in_jeopardy()
    none = np.full((2, 2), -np.inf)
    changes = membership.observe(2.0, _batch(none, 2))
    assert [(c.peer, c.new) for c in changes] == [("b", PeerState.LOST)]
    assert not membership.hears("b")
